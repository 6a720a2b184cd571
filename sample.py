"""
Print text sampled from a trained run (or from an ensemble of runs: their averaged logits).

    python sample.py out/default
    python sample.py runs/members/m0 runs/members/m1 --prompt "ROMEO:" --tokens 300 --temperature 0.8
"""
import argparse
import sys

import torch

import data
from model import generate
from train import ConfigError, load_model


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run folders (or ckpt.pt files); several = an ensemble")
    p.add_argument("--prompt", default="", help="text to continue (default: start a new document)")
    p.add_argument("--tokens", type=int, default=200, help="new tokens per sample")
    p.add_argument("--samples", type=int, default=1)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top_k", type=int, default=None)
    p.add_argument("--combine", choices=["logits", "probs"], default="logits")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    try:
        models, metas = [], []
        for r in args.runs:
            m, ckpt = load_model(r, args.device)
            models.append(m)
            metas.append(data.load_dataset(ckpt["config"]["dataset"]).meta)
        if len({(mt["tokenizer"], mt["vocab_size"]) for mt in metas}) > 1:
            raise ConfigError("these runs use different tokenizers or vocabularies; sample them separately")
        tok = data.get_tokenizer(metas[0])
        ids = tok.encode(args.prompt) if args.prompt else [tok.eot]   # empty context = start of a document
        x = torch.tensor([ids] * args.samples, device=args.device)
        g = torch.Generator(device=args.device).manual_seed(args.seed)
        out = generate(models, x, args.tokens, args.temperature, args.top_k, g, args.combine)
        for row in out.tolist():
            print(tok.decode(row[len(ids):] if not args.prompt else row))
            print("-" * 40)
    except (ConfigError, data.DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
