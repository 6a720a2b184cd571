"""
Where train.py --init_from's weights come from: a run folder, its ckpt.pt, or a Hugging Face Llama
folder (one export.py wrote, or any Llama-architecture model on disk), read as a model.GPT with the
source's shape and weights. Continued pre-training starts here: the optimizer, schedule and data order
are the new run's own (that is train.py's part).

An HF folder is read (load_source) only for exactly the Llama variants
model.GPT computes; the others are refused in one line naming the field: rope scaling (llama3, yarn,
linear, dynamic...), partial rotary, attention or MLP biases, another activation, a head_dim that is not
hidden_size / heads. Tied embeddings are supported: the output head starts as a copy of the input
embedding (training then unties them). Only safetensors weights are read (one file or an index of shards).

The parameter-name map below is shared with export.py, which writes the other direction (its docstring
says why no tensor needs rearranging either way).
"""
import json
import os

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
    (A data.DataError, not train.ConfigError: this module imports no train, and under `python train.py`
    an imported `train` would be a second copy of __main__, whose run_cli would not catch its ConfigError.)"""


def read_checkpoint(path, device="cpu", mmap=False):
    try:
        return torch.load(path, map_location=device, weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise SourceError(f"--init_from {path}: no such checkpoint; point to a run folder, its ckpt.pt "
                          f"or a Hugging Face Llama folder") from None
    except Exception as e:
        raise SourceError(f"--init_from {path} is unreadable ({type(e).__name__}); use another source") from None


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


# ----------------------------------------------------------------------------
# An HF folder or a run -> GPT

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
