"""Hugging Face interop: an exported run is the same function in transformers (logits, greedy text),
and train.py --init_from continues from a run or an HF folder starting exactly where the source is."""
import json
import os
import subprocess
import sys
from dataclasses import asdict

import numpy as np
import pytest
import torch

import export
import init_from
import train
from model import GPT, GPTConfig
from train import TrainConfig

try:    # test-only dependency (requirements-test.txt): the tests that compare against it skip without it
    import safetensors  # noqa: F401
    import transformers
except ImportError:
    transformers = None
needs_hf = pytest.mark.skipif(transformers is None, reason="needs transformers and safetensors (requirements-test.txt)")
pytestmark = pytest.mark.usefixtures("one_thread")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PLAIN = GPTConfig(vocab_size=97, block_size=64, n_layer=2, n_head=4, n_kv_head=4, n_embd=64, ffn=160, eot_token=96)
# grouped-query, and a non-default eps and rotary theta, so both must be carried over
GQA = GPTConfig(vocab_size=97, block_size=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=64, ffn=176,
                norm_eps=1e-6, rope_theta=20000.0, eot_token=96)


def random_gpt(cfg, seed=0):
    """A GPT with weights far from init (large, and norm weights away from 1), so logits are peaked and
    a layout mistake anywhere shows up."""
    torch.manual_seed(seed)
    model = GPT(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(1 + 0.5 * torch.randn_like(p) if "norm" in name else 0.15 * torch.randn_like(p))
    return model.eval()


def fake_run(tmp_path, cfg, tokenizer="byte", name="run"):
    """A run folder as train.py leaves it (ckpt.pt + config.json), holding random_gpt(cfg)."""
    out = tmp_path / name
    os.makedirs(out)
    model = random_gpt(cfg)
    tc = TrainConfig(out_dir=str(out), seq_len=cfg.block_size)
    torch.save({"model": model.state_dict(), "model_config": asdict(cfg), "config": asdict(tc), "step": 0},
               out / "ckpt.pt")
    (out / "config.json").write_text(json.dumps({**asdict(tc), "tokenizer": tokenizer}))
    return out, model


@needs_hf
@pytest.mark.parametrize("cfg", [PLAIN, GQA], ids=["plain", "gqa"])
def test_exported_run_loads_in_transformers_with_the_same_logits_and_greedy_text(tmp_path, cfg):
    run, ours = fake_run(tmp_path, cfg)
    assert export.main([str(run), "--out", str(tmp_path / "hf")]) is None
    hf = transformers.LlamaForCausalLM.from_pretrained(str(tmp_path / "hf"), dtype=torch.float32).eval()
    assert hf.config.num_key_value_heads == cfg.n_kv_head and hf.config.rms_norm_eps == cfg.norm_eps
    assert not hf.config.tie_word_embeddings
    g = torch.Generator().manual_seed(1)
    for _ in range(3):                                             # random batches
        x = torch.randint(0, cfg.vocab_size, (3, 48), generator=g)
        with torch.no_grad():
            a, b = ours(x)[0], hf(x).logits
        assert a.abs().max() > 1.0                                 # peaked logits: a real comparison
        assert (a - b).abs().max().item() < 1e-4
    prompt = torch.randint(0, cfg.vocab_size, (2, 8), generator=g)
    mine = ours.generate(prompt, 32, temperature=0)
    theirs = hf.generate(prompt, max_new_tokens=32, do_sample=False, eos_token_id=None,
                         attention_mask=torch.ones_like(prompt))
    assert mine.shape == (2, 40) and torch.equal(mine, theirs)
    readme = (tmp_path / "hf" / "README.md").read_text()
    assert "Byte-level" in readme and "list(text.encode('utf-8'))" in readme
    gen = json.loads((tmp_path / "hf" / "generation_config.json").read_text())
    assert gen["bos_token_id"] == gen["eos_token_id"] == cfg.vocab_size - 1


@needs_hf
def test_an_ensemble_folder_exports_each_member(tmp_path):
    ens = tmp_path / "ens"
    os.makedirs(ens)
    fake_run(ens, PLAIN, name="member_0")
    fake_run(ens, GQA, tokenizer="r50k_base", name="member_1")
    export.main([str(ens), "--out", str(tmp_path / "hf")])
    assert sorted(os.listdir(tmp_path / "hf")) == ["member_0", "member_1"]
    assert json.loads((tmp_path / "hf" / "member_1" / "config.json").read_text())["num_key_value_heads"] == 2
    assert "openai-community/gpt2" in (tmp_path / "hf" / "member_1" / "README.md").read_text()


@needs_hf
def test_export_refuses_to_overwrite(tmp_path):
    run, _ = fake_run(tmp_path, PLAIN)
    os.makedirs(tmp_path / "hf")
    r = subprocess.run([sys.executable, "export.py", str(run), "--out", str(tmp_path / "hf")], cwd=REPO,
                       capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--out" in r.stderr, r.stderr


# ---------------------------------------------------------------------------- --init_from

def small(data, out, **kw):
    return TrainConfig(**{**dict(dataset=data, out_dir=str(out), model="tiny-120k", train_tokens=8192,
                                 seq_len=32, batch_size=8, epochs=2, lr=3e-3, wd=0.5, evals=2), **kw})


def test_init_from_a_run_and_evaluating_before_any_step_reproduces_its_val_loss(tiny_data, tmp_path):
    base = train.train(small(tiny_data, tmp_path / "base"), quiet=True)
    for src in (tmp_path / "base", tmp_path / "base" / "ckpt.pt"):
        s = train.train(small(tiny_data, tmp_path / f"ev_{src.name}", init_from=str(src), eval_only=True,
                              model=TrainConfig.model), quiet=True)   # --model left at its default
        assert s["val_loss"] == base["val_loss"] and s["steps"] == 0
        assert s["init_from"] == str(src) and s["model"] == "tiny-120k" and s["N"] == base["N"]
    assert json.load(open(tmp_path / "ev_base" / "config.json"))["init_from"] == str(tmp_path / "base")
    # continued pre-training: a fresh schedule from the base weights, which it starts from
    c = train.train(small(tiny_data, tmp_path / "cpt", init_from=str(tmp_path / "base"), epochs=1, data_seed=4),
                    quiet=True)
    assert c["steps"] > 0 and c["val_loss"] < base["val_loss"] + 0.05
    assert c["history"][0]["val_loss"] < base["history"][0]["val_loss"]   # not a fresh random init
    with pytest.raises(init_from.SourceError, match="leave --model out"):
        train.train(small(tiny_data, tmp_path / "x", init_from=str(tmp_path / "base"), model="tiny-240k"))


def tiny_llama(tmp_path, vocab=65, **kw):
    cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=48, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
                                   max_position_embeddings=64, **kw)
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            p.copy_(1 + 0.5 * torch.randn_like(p) if "norm" in name else 0.15 * torch.randn_like(p))
    hf.save_pretrained(str(tmp_path / "hf"))
    return hf


@needs_hf
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_init_from_an_hf_folder_matches_that_models_logits_and_loss(tiny_data, tmp_path, tied):
    hf = tiny_llama(tmp_path, tie_word_embeddings=tied)
    meta = json.load(open(os.path.join(tiny_data, "meta.json")))
    cfg = small(tiny_data, tmp_path / "ev", init_from=str(tmp_path / "hf"), eval_only=True, model=TrainConfig.model)
    ours = train.build_model(cfg, meta, torch.device("cpu")).eval()
    x = torch.randint(0, 65, (3, 32), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a, b = ours(x)[0], hf(x).logits
    assert a.abs().max() > 1.0 and (a - b).abs().max().item() < 1e-4
    # end to end: train.py's eval-only val loss is the HF model's loss on the same windows
    s = train.train(cfg, quiet=True)
    _, _, val, skip = train.load_data(cfg)
    w = torch.from_numpy(val)
    with torch.no_grad():
        logits = hf(w[:, :-1]).logits
    ref = torch.nn.functional.cross_entropy(logits[:, skip:].reshape(-1, 65), w[:, 1 + skip:].reshape(-1))
    assert s["model"] == "custom" and s["val_loss"] == pytest.approx(ref.item(), abs=1e-5)


@needs_hf
@pytest.mark.parametrize("kw,word", [
    (dict(rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                        "original_max_position_embeddings": 32}), "llama3"),
    (dict(attention_bias=True), "attention_bias"),
    (dict(mlp_bias=True), "mlp_bias"),
])
def test_hf_variants_the_model_does_not_compute_are_refused(tiny_data, tmp_path, kw, word):
    tiny_llama(tmp_path, **kw)
    with pytest.raises(init_from.SourceError, match=word):
        train.train(small(tiny_data, tmp_path / "x", init_from=str(tmp_path / "hf"), eval_only=True,
                          model=TrainConfig.model))
    assert not (tmp_path / "x").exists()


@needs_hf
def test_a_source_with_another_vocabulary_is_refused_in_one_line(tiny_data, tmp_path):
    tiny_llama(tmp_path, vocab=80)
    r = subprocess.run([sys.executable, "train.py", f"--dataset={tiny_data}", f"--out_dir={tmp_path / 'x'}",
                        f"--init_from={tmp_path / 'hf'}", "--seq_len=32", "--train_tokens=8192", "--eval_only"], cwd=REPO,
                       capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "vocab 80" in lines[0] and "65" in lines[0], r.stderr
