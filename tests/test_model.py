"""Model behaviour: causality, preset sizes, the weight-decay set, KV-cache sampling."""
import pytest
import torch
import torch.nn as nn

from model import GPT, PRESETS, GPTConfig, config_from_preset, generate


def tiny(vocab=50, block=32, **kw):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=vocab, block_size=block, n_layer=2, n_head=4, n_kv_head=kw.get("kv", 2),
                         n_embd=32, ffn=64)).eval()


def test_future_tokens_never_change_past_logits():
    m = tiny()
    x = torch.randint(0, 50, (2, 16))
    y = x.clone()
    y[:, 9:] = torch.randint(0, 50, (2, 7))          # change tokens 9..15
    a, _ = m(x)
    b, _ = m(y)
    assert torch.allclose(a[:, :9], b[:, :9], atol=1e-6)
    assert not torch.allclose(a[:, 9:], b[:, 9:])     # and the change is visible downstream


@pytest.mark.parametrize("name,total", [("150m", 154_147_328), ("300m", 299_649_792), ("600m", 602_457_088),
                                        ("1.4b", 1_431_373_824)])
def test_paper_presets_match_the_papers_parameter_counts(name, total):
    with torch.device("meta"):
        m = GPT(config_from_preset(name, 128_256, 4096))
    assert m.num_params() == total


def parse_size(s):
    s = s.split("-")[-1]
    return float(s[:-1]) * {"k": 1e3, "m": 1e6, "b": 1e9}[s[-1]]


@pytest.mark.parametrize("name", [n for n in PRESETS if n.startswith("tiny")])
def test_tiny_preset_names_match_their_non_embedding_counts(name):
    m = GPT(config_from_preset(name, 257, 64))
    assert abs(m.num_params(non_embedding=True) / parse_size(name) - 1) < 0.06


def test_weight_decay_goes_on_every_linear_weight_and_nothing_else():
    m = tiny()
    decay, no_decay = m.optimizer_groups(0.5)
    names = {id(p): n for n, p in m.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    expected = {n for n, mod in m.named_modules() if isinstance(mod, nn.Linear) for n in [n + ".weight"]}
    assert decayed == expected and "lm_head.weight" in decayed
    assert {names[id(p)] for p in no_decay["params"]} == {n for n, _ in m.named_parameters()} - expected
    assert "embed.weight" not in decayed and not any("norm" in n for n in decayed)
    assert decay["weight_decay"] == 0.5 and no_decay["weight_decay"] == 0.0


def test_kv_cache_generation_equals_recomputing_the_whole_prefix():
    m = tiny(kv=2)   # grouped-query attention exercised too
    x = torch.randint(0, 50, (3, 5))
    fast = m.generate(x, 20, temperature=0)
    slow = x
    for _ in range(20):
        logits, _ = m(slow)
        slow = torch.cat([slow, logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(fast, slow)


def test_generation_runs_past_block_size():
    m = tiny(block=16)
    out = m.generate(torch.zeros(1, 1, dtype=torch.long), 40, temperature=1.0,
                     generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 41) and out.max() < 50


def test_ensemble_of_identical_models_samples_like_one_model():
    m = tiny()
    x = torch.randint(0, 50, (2, 4))
    one = generate([m], x, 10, temperature=0)
    assert torch.equal(generate([m, m, m], x, 10, temperature=0), one)
    assert torch.equal(generate([m, m], x, 10, temperature=0, combine="probs"), one)


def test_flops_per_token_counts_matmuls_and_causal_attention():
    m = tiny()
    n = m.num_params() - m.embed.weight.numel()
    assert m.flops_per_token(32) == 6 * n + 6 * 2 * 32 * 32
