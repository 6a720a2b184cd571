"""
Hugging Face interop: export a run as a transformers Llama folder (init_from.py reads one back as a GPT).

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
"""
import json
import os
import shutil

import train
from init_from import hf_names, run_info
from members import find_members

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
    model, ckpt = train.load_model(run_dir, "cpu")
    tokenizer, eot = run_info(run_dir, ckpt)
    export_model(model, out, tokenizer, eot, source=run_dir)
    return out


# ----------------------------------------------------------------------------

def main(argv=None):
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
