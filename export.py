"""
Hugging Face interop: export a run as a transformers Llama folder, and read one back as a GPT.

    python export.py out/run --out hf/run         # config.json, model.safetensors, generation_config.json, README.md
    python export.py out/ens --out hf/ens         # an ensemble folder: one HF folder per member (hf/ens/member_i)
    python train.py --init_from hf/run ...        # continued pre-training from an HF Llama folder (or a run)

The exported folder loads with no code of ours:
    transformers.LlamaForCausalLM.from_pretrained("hf/run")
and gives the same logits as model.GPT (tests/test_export.py checks it to 1e-4 in fp32, and that greedy
generation agrees token for token). Why no tensor needs rearranging: model.py is laid out the way
transformers' Llama is (checked against transformers 5.24's modeling_llama.py):
  - rotary: both rotate (first half, second half) pairs of each head (HF's rotate_half, and
    cos/sin = cat(freqs, freqs)), with inv_freq = theta^(-2i/head_dim): q and k are copied as they are
    (Meta's original checkpoints pair interleaved dimensions; HF's converter permutes those, we need not);
  - RMSNorm: x * rsqrt(mean(x^2) + eps) in fp32, then times a weight initialised to 1 (not 1 + w);
    eps is written as rms_norm_eps;
  - MLP: down(silu(gate(x)) * up(x)): our gate/up/down are HF's gate_proj/up_proj/down_proj;
  - attention: no biases, softmax scale head_dim^-0.5, grouped-query heads repeated in order
    (query head h reads kv head h // (n_head / n_kv_head)) like HF's repeat_kv;
  - untied input embedding and output head (tie_word_embeddings false), no biases anywhere.

Reading an HF folder (load_source, used by train.py --init_from) accepts exactly the Llama variants
model.GPT computes; the others are refused in one line naming the field: rope scaling (llama3, yarn,
linear, dynamic...), partial rotary, attention or MLP biases, another activation, a head_dim that is not
hidden_size / heads. Tied embeddings are supported: the output head starts as a copy of the input
embedding (training then unties them). Only safetensors weights are read (one file or an index of shards).
"""
import json
import os
import shutil

import torch

import data
from model import GPT, GPTConfig, PRESETS

# our parameter names -> Hugging Face Llama's, per layer ({i}) and global
LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn.q.weight": "self_attn.q_proj.weight",
    "attn.k.weight": "self_attn.k_proj.weight",
    "attn.v.weight": "self_attn.v_proj.weight",
    "attn.o.weight": "self_attn.o_proj.weight",
    "mlp_norm.weight": "post_attention_layernorm.weight",
    "mlp.gate.weight": "mlp.gate_proj.weight",
    "mlp.up.weight": "mlp.up_proj.weight",
    "mlp.down.weight": "mlp.down_proj.weight",
}
GLOBAL_NAMES = {"embed.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
                "lm_head.weight": "lm_head.weight"}


def hf_names(n_layer):
    """{our name: HF name} for every parameter of an n_layer model."""
    names = dict(GLOBAL_NAMES)
    for i in range(n_layer):
        names.update({f"blocks.{i}.{k}": f"model.layers.{i}.{v}" for k, v in LAYER_NAMES.items()})
    return names


class SourceError(data.DataError):
    """A source that cannot be loaded or does not fit the run: one line and exit 2 from train.run_cli.
    (A data.DataError, not train.ConfigError: under `python train.py` the module `train` imported here
    is a second copy of __main__, whose run_cli would not catch this copy's ConfigError.)"""


def read_checkpoint(path, device="cpu", mmap=False):
    try:
        return torch.load(path, map_location=device, weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise SourceError(f"--init_from {path}: no such checkpoint; point to a run folder, its ckpt.pt "
                          f"or a Hugging Face Llama folder") from None
    except Exception as e:
        raise SourceError(f"--init_from {path} is unreadable ({type(e).__name__}); use another source") from None


# ----------------------------------------------------------------------------
# GPT -> HF folder

def hf_config(cfg, eot):
    """A LlamaConfig dict for a GPTConfig. rope_theta is written both the transformers 4 way (top
    level, rope_scaling null) and the transformers 5 way (rope_parameters), so either version reads it."""
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.n_embd, "intermediate_size": cfg.ffn,
        "num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.n_kv_head, "head_dim": cfg.n_embd // cfg.n_head,
        "hidden_act": "silu", "max_position_embeddings": cfg.block_size, "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta, "rope_scaling": None,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False, "attention_dropout": 0.0,
        "initializer_range": 0.02, "pretraining_tp": 1, "use_cache": True, "torch_dtype": "float32",
        # the end-of-document token is also where sampling starts (sample.py's empty context)
        "bos_token_id": eot, "eos_token_id": eot, "pad_token_id": eot,
    }


def tokenizer_note(tokenizer, vocab, eot):
    """The README paragraph saying which token ids the weights expect."""
    if tokenizer == "byte":
        return (f"Byte-level: token ids 0..255 are the UTF-8 bytes of the text and {eot} is the end-of-document "
                f"token (vocab {vocab}). No tokenizer file is needed or included: "
                f"`ids = list(text.encode('utf-8'))`, and decode with `bytes(ids).decode('utf-8', 'replace')` "
                f"after dropping {eot}.")
    if tokenizer == "synthetic":
        return (f"A generated Markov source (data/synthetic.py): ids 0..{vocab - 2} are its symbols and {eot} is "
                f"the end-of-document token. There is no text tokenizer.")
    if tokenizer in ("r50k_base", "gpt2"):
        return (f"tiktoken's `r50k_base` (GPT-2's BPE, vocab {vocab}, `<|endoftext|>` = {eot}). The matching Hugging "
                f"Face tokenizer is GPT-2's: `AutoTokenizer.from_pretrained(\"openai-community/gpt2\")` gives the "
                f"same ids for ordinary text (one difference: it turns a literal `<|endoftext|>` in the text into "
                f"token {eot}, which our data pipeline never does).")
    if tokenizer:
        return (f"The tiktoken encoding `{tokenizer}`: `tiktoken.get_encoding(\"{tokenizer}\").encode_ordinary(text)`"
                f" (vocab {vocab}, end of document = {eot}). No Hugging Face tokenizer is bundled; use one only "
                f"if it gives the same ids.")
    return f"Unknown (the run folder does not record its tokenizer); vocab {vocab}, end of document = {eot}."


def run_info(run_dir, ckpt):
    """(tokenizer or None, end-of-document token) of a run: train.py records the tokenizer in the run's
    config.json and summary.json, and the dataset's eot_token in the model config."""
    folder = os.path.dirname(run_dir) if run_dir.endswith(".pt") else run_dir
    tokenizer = None
    for name in ("config.json", "summary.json"):
        if tokenizer is None and os.path.exists(os.path.join(folder, name)):
            with open(os.path.join(folder, name)) as f:
                tokenizer = json.load(f).get("tokenizer")
    mc = ckpt["model_config"]
    # every tokenizer here puts end-of-document last (byte 256, synthetic V, GPT-2 50256)
    return tokenizer, mc["eot_token"] if mc.get("eot_token", -1) >= 0 else mc["vocab_size"] - 1


def export_model(model, out, tokenizer, eot, source=""):
    """Write model (a GPT) as an HF Llama folder at out: built in out.tmp, then renamed."""
    from safetensors.torch import save_file
    cfg = model.cfg
    names = hf_names(cfg.n_layer)
    sd = model.state_dict()
    tensors = {names[k]: v.detach().float().cpu().contiguous() for k, v in sd.items()}   # fp32 as trained
    tmp = out.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    save_file(tensors, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(hf_config(cfg, eot), f, indent=2)
    with open(os.path.join(tmp, "generation_config.json"), "w") as f:
        # plain sampling at temperature 1 from the full distribution, as sample.py does by default
        json.dump({"bos_token_id": eot, "eos_token_id": eot, "pad_token_id": eot, "do_sample": True,
                   "temperature": 1.0, "top_k": 0, "top_p": 1.0, "max_length": cfg.block_size}, f, indent=2)
    n = sum(v.numel() for v in tensors.values())
    with open(os.path.join(tmp, "README.md"), "w") as f:
        f.write(f"# {os.path.basename(os.path.normpath(out))}\n\n"
                f"A Llama-architecture causal LM exported by infinite-compute GPT's export.py"
                f"{f' from `{source}`' if source else ''}: {n:,} parameters, {cfg.n_layer} layers, d={cfg.n_embd}, "
                f"{cfg.n_head} heads ({cfg.n_kv_head} kv heads), SwiGLU {cfg.ffn}, trained on sequences of "
                f"{cfg.block_size} tokens, fp32 weights.\n\n"
                f"```python\nfrom transformers import LlamaForCausalLM\n"
                f"model = LlamaForCausalLM.from_pretrained(\"{out}\")\n```\n\n"
                f"## Tokenizer\n\n{tokenizer_note(tokenizer, cfg.vocab_size, eot)}\n\n"
                f"Sampling from an empty context starts from the end-of-document token {eot} "
                f"(bos_token_id); it is also eos_token_id.\n")
    os.replace(tmp, out)


def export_run(run_dir, out):
    """Export one run folder or ckpt.pt to out; returns out."""
    import train
    model, ckpt = train.load_model(run_dir, "cpu")
    tokenizer, eot = run_info(run_dir, ckpt)
    export_model(model, out, tokenizer, eot, source=run_dir)
    return out


# ----------------------------------------------------------------------------
# HF folder or run -> GPT (train.py --init_from)

def is_hf_folder(path):
    return os.path.isdir(path) and os.path.exists(os.path.join(path, "config.json")) \
        and not os.path.exists(os.path.join(path, "ckpt.pt"))


def gpt_config_from_hf(hf, path):
    """GPTConfig fields (the shape and numerics) for an HF config dict, or SourceError naming what
    model.GPT does not compute."""
    def refuse(what):
        raise SourceError(f"--init_from {path}: {what}, which model.GPT does not implement; "
                          f"use a plain Llama folder (or an export.py export)")
    if hf.get("model_type") != "llama" and "LlamaForCausalLM" not in (hf.get("architectures") or []):
        refuse(f"model_type {hf.get('model_type')!r} is not a Llama")
    if hf.get("hidden_act", "silu") not in ("silu", "swish"):
        refuse(f"hidden_act {hf['hidden_act']!r}")
    for key in ("attention_bias", "mlp_bias"):
        if hf.get(key):
            refuse(f"{key} is true")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        refuse(f"rope scaling {rope_type!r}")
    if rope.get("partial_rotary_factor", hf.get("partial_rotary_factor")) not in (None, 1, 1.0):
        refuse("partial rotary embeddings")
    C, H = hf["hidden_size"], hf["num_attention_heads"]
    Hkv = hf.get("num_key_value_heads") or H
    if C % H or H % Hkv:
        refuse(f"hidden_size {C} / {H} heads / {Hkv} kv heads do not divide")
    if hf.get("head_dim") not in (None, C // H):
        refuse(f"head_dim {hf['head_dim']} != hidden_size / heads = {C // H}")
    return dict(vocab_size=hf["vocab_size"], n_layer=hf["num_hidden_layers"], n_head=H, n_kv_head=Hkv,
                n_embd=C, ffn=hf["intermediate_size"], rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))),
                norm_eps=float(hf.get("rms_norm_eps", 1e-6)))


def read_hf_weights(path):
    """{HF name: tensor} from model.safetensors or a sharded model.safetensors.index.json."""
    from safetensors.torch import load_file
    single, index = os.path.join(path, "model.safetensors"), os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(single):
        return load_file(single)
    if os.path.exists(index):
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        return {k: v for s in shards for k, v in load_file(os.path.join(path, s)).items()}
    raise SourceError(f"--init_from {path} has no model.safetensors (nor an index of shards); "
                      f"save it with save_pretrained(safe_serialization=True)")


def hf_config_of(path):
    with open(os.path.join(path, "config.json")) as f:
        return json.load(f)


def load_source(path, device="cpu"):
    """(GPTConfig fields, our state dict, tokenizer or None) of a run folder, a ckpt.pt or an HF Llama
    folder; the state dict is fp32 and uses model.GPT's names."""
    if is_hf_folder(path):
        hf = hf_config_of(path)
        shape = gpt_config_from_hf(hf, path)
        w = read_hf_weights(path)
        names = hf_names(shape["n_layer"])
        if hf.get("tie_word_embeddings") and "lm_head.weight" not in w:
            w["lm_head.weight"] = w["model.embed_tokens.weight"]      # tied: the head starts as the embedding
        w = {k: v for k, v in w.items() if not k.endswith("rotary_emb.inv_freq")}   # old exports carry it
        missing = [v for v in names.values() if v not in w]
        extra = sorted(set(w) - set(names.values()))
        if missing or extra:
            raise SourceError(f"--init_from {path}: weights do not match its config "
                              f"(missing {missing[:3]}, unexpected {extra[:3]}); not a plain Llama checkpoint")
        sd = {ours: w[theirs].float().clone().to(device) for ours, theirs in names.items()}
        return shape, sd, None
    if not (path.endswith(".pt") or os.path.isdir(path)):
        raise SourceError(f"--init_from {path}: no such run folder, ckpt.pt or Hugging Face folder")
    ckpt = read_checkpoint(path if path.endswith(".pt") else os.path.join(path, "ckpt.pt"), device)
    shape = {k: ckpt["model_config"][k] for k in ("vocab_size", "n_layer", "n_head", "n_kv_head", "n_embd",
                                                  "ffn", "rope_theta", "norm_eps")}
    return shape, {k: v.float() for k, v in ckpt["model"].items()}, run_info(path, ckpt)[0]


def source_shape(path):
    """The model shape of a source, read cheaply (config.json, or the checkpoint memory-mapped)."""
    if is_hf_folder(path):
        return gpt_config_from_hf(hf_config_of(path), path)
    if not (path.endswith(".pt") or os.path.isdir(path)):
        raise SourceError(f"--init_from {path}: no such run folder, ckpt.pt or Hugging Face folder")
    ckpt_path = path if path.endswith(".pt") else os.path.join(path, "ckpt.pt")
    if not os.path.exists(ckpt_path):
        raise SourceError(f"--init_from {path}: no ckpt.pt there (a run folder keeps its weights in ckpt.pt)")
    mc = read_checkpoint(ckpt_path, mmap=True)["model_config"]
    return {k: mc[k] for k in ("vocab_size", "n_layer", "n_head", "n_kv_head", "n_embd", "ffn", "rope_theta", "norm_eps")}


def preset_of(shape):
    """The model.PRESETS name with this shape, else "custom"."""
    key = (shape["n_embd"], shape["ffn"], shape["n_layer"], shape["n_head"], shape["n_kv_head"])
    return next((name for name, s in PRESETS.items() if s == key), "custom")


def init_model_name(cfg):
    """What a run with --init_from records as its model: the source's preset name (or "custom"). The
    shape comes from the source: --model may be left at its default, else it must name that shape."""
    name = preset_of(source_shape(cfg.init_from))
    if cfg.model not in (type(cfg).model, name):     # type(cfg).model: TrainConfig's default
        raise SourceError(f"--model {cfg.model} is not the shape of --init_from {cfg.init_from} (a {name}); "
                                f"leave --model out: with --init_from the shape comes from the source")
    return name


def init_model(cfg, meta, device):
    """train.py --init_from: a GPT with the source's shape and weights, the run's seq_len and
    attention options, and a check that the source speaks the dataset's vocabulary."""
    shape, sd, tokenizer = load_source(cfg.init_from, device)
    if shape["vocab_size"] != meta["vocab_size"] or (tokenizer and tokenizer != meta["tokenizer"]):
        raise SourceError(f"--init_from {cfg.init_from} has vocab {shape['vocab_size']}"
                                f"{f' ({tokenizer})' if tokenizer else ''}, the dataset {cfg.dataset} has "
                                f"{meta['vocab_size']} ({meta['tokenizer']}); continue on data with the source's tokenizer")
    model = GPT(GPTConfig(**shape, block_size=cfg.seq_len, attn=cfg.attn, doc_mask=cfg.doc_mask,
                          eot_token=meta["eot_token"])).to(device)
    model.load_state_dict(sd)
    return model


# ----------------------------------------------------------------------------

def main(argv=None):
    import train
    from members import find_members
    p = train.OneLineParser(description=__doc__.strip().split("\n\n")[0])
    p.add_argument("run", help="a run folder, a ckpt.pt, or an ensemble folder (each member_* is exported)")
    p.add_argument("--out", required=True, help="the HF folder to write (an ensemble: one subfolder per member)")
    args = p.parse_args(argv)

    def body():
        if os.path.exists(args.out):
            raise train.ConfigError(f"--out {args.out} exists already; remove it or choose another --out")
        runs = [args.run] if args.run.endswith(".pt") else find_members([args.run], flag="run")
        if len(runs) == 1 and os.path.normpath(runs[0]) == os.path.normpath(args.run):
            print(f"wrote {export_run(args.run, args.out)}")
            return
        os.makedirs(args.out)
        for r in runs:     # an ensemble: member_i -> out/member_i
            print(f"wrote {export_run(r, os.path.join(args.out, os.path.basename(r)))}")
    train.run_cli(body)


if __name__ == "__main__":
    main()
