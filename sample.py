"""
Print text sampled from a trained run (or from an ensemble of runs: their averaged logits).

    python sample.py out/default
    python sample.py runs/members/m0 runs/members/m1 --prompt "ROMEO:" --tokens 300 --temperature 0.8
"""
import sys

import torch

import data
from members import find_members
from model import generate
from train import ConfigError, OneLineParser, load_model


RANGES = dict(tokens=">= 1", samples=">= 1", temperature="> 0", top_k=">= 0", seed=">= 0")


def main(argv=None):
    p = OneLineParser(description=__doc__.strip().split("\n\n")[0], ranges=RANGES)
    p.add_argument("runs", nargs="+", help="run folders, an ensemble folder of member_*/, or ckpt.pt files")
    p.add_argument("--prompt", default="", help="text to continue (default: start a new document)")
    p.add_argument("--tokens", type=int, default=200, help="new tokens per sample")
    p.add_argument("--samples", type=int, default=1)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top_k", type=int, default=0, help="sample from the k most likely tokens (0 = all)")
    p.add_argument("--combine", choices=["logits", "probs"], default="logits")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    try:
        runs = [r for r in args.runs if r.endswith(".pt")]
        folders = [r for r in args.runs if not r.endswith(".pt")]
        if folders:    # a folder: a run, or an ensemble's member_* runs
            runs += find_members(folders, flag="run")
        if torch.device(args.device).type == "cuda":
            torch.set_float32_matmul_precision("high")   # TF32 for this fp32 path, as train.resolve_device sets
        models, metas = [], []
        for r in runs:
            m, ckpt = load_model(r, args.device)
            models.append(m)
            metas.append(data.load_dataset(ckpt["config"]["dataset"]).meta)
        if len({(mt["tokenizer"], mt["vocab_size"]) for mt in metas}) > 1:
            raise ConfigError("these runs use different tokenizers or vocabularies; sample them separately")
        tok = data.get_tokenizer(metas[0])
        try:
            ids = tok.encode(args.prompt) if args.prompt else [tok.eot]   # empty context = start of a document
        except ValueError as e:
            raise ConfigError(f"--prompt cannot be encoded by the {metas[0]['tokenizer']} tokenizer ({e})")
        x = torch.tensor([ids] * args.samples, device=args.device)
        g = torch.Generator(device=args.device).manual_seed(args.seed)
        out = generate(models, x, args.tokens, args.temperature, args.top_k or None, g, args.combine)
        for row in out.tolist():
            print(tok.decode(row[len(ids):] if not args.prompt else row))
            print("-" * 40)
    except (ConfigError, data.DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
