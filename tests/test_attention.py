"""Attention kernels and masks: FlexAttention computes what SDPA computes for the same mask, and the
document mask keeps packed documents apart (a token never sees an earlier document)."""
import dataclasses

import pytest
import torch

from model import GPT, GPTConfig

# FlexAttention without torch.compile (the CPU path) warns that it is the slow unfused version
pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")

V, EOT = 50, 49     # the last token id of the vocabulary ends a document


def tiny(attn="sdpa", doc_mask=False, device="cpu"):
    """The same weights whatever the attention options (they add no parameters)."""
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=V, block_size=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, ffn=64,
                    attn=attn, doc_mask=doc_mask, eot_token=EOT)        # n_kv_head < n_head: GQA too
    return GPT(cfg).to(device).eval()


def tokens(B, T, seed=0):
    """Random tokens that are never the EOT."""
    return torch.randint(0, EOT, (B, T), generator=torch.Generator().manual_seed(seed))


def packed(seed=0):
    """Two rows of three documents each, closed by EOTs at different places: (2, 40)."""
    x = tokens(2, 40, seed)
    x[0, [9, 25]] = EOT
    x[1, [3, 30, 39]] = EOT
    return x


def logits(model, x):
    with torch.no_grad():
        return model(x)[0]


def test_flex_equals_sdpa_with_the_causal_mask():
    x = tokens(2, 40)
    assert torch.allclose(logits(tiny("flex"), x), logits(tiny("sdpa"), x), atol=1e-5)


@pytest.mark.parametrize("attn", ["sdpa", "flex"])
def test_document_mask_changes_nothing_without_an_eot(attn):
    x = tokens(2, 40)
    assert torch.allclose(logits(tiny(attn, doc_mask=True), x), logits(tiny(attn), x), atol=1e-5)


def test_sdpa_and_flex_agree_on_the_document_mask():
    x = packed()
    a, b = logits(tiny("sdpa", doc_mask=True), x), logits(tiny("flex", doc_mask=True), x)
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a, logits(tiny("sdpa"), x), atol=1e-3)    # and the mask did something


@pytest.mark.parametrize("attn", ["sdpa", "flex"])
def test_a_token_never_sees_the_previous_document(attn):
    x = tokens(2, 24)                  # [doc1: 0..9] [EOT: 10] [doc2: 11..23]
    x[:, 10] = EOT
    y = x.clone()
    y[:, :10] = tokens(2, 10, seed=1)  # another first document
    m = tiny(attn, doc_mask=True)
    assert torch.allclose(logits(m, x)[:, 11:], logits(m, y)[:, 11:], atol=1e-6, rtol=0)
    plain = tiny(attn)
    assert not torch.allclose(logits(plain, x)[:, 11:], logits(plain, y)[:, 11:], atol=1e-3)


@pytest.mark.parametrize("attn", ["sdpa", "flex"])
def test_the_eot_token_still_sees_its_own_document(attn):
    x = tokens(2, 24)
    x[:, 10] = EOT
    m, plain = tiny(attn, doc_mask=True), tiny(attn)
    # up to and including the EOT there is one document: the mask is plain causal there
    assert torch.allclose(logits(m, x)[:, :11], logits(plain, x)[:, :11], atol=1e-5)
    y = x.clone()
    y[:, 3] = (x[:, 3] + 1) % EOT      # a token of the first document changes...
    assert not torch.allclose(logits(m, x)[:, 10], logits(m, y)[:, 10], atol=1e-3)   # ...the EOT sees it


def test_a_packed_document_is_computed_as_if_it_were_alone():
    # rotary positions are relative, so doc2 at offset 11 gives what doc2 alone at offset 0 gives
    x = tokens(1, 24)
    x[:, 10] = EOT
    m = tiny("sdpa", doc_mask=True)
    assert torch.allclose(logits(m, x)[:, 11:], logits(m, x[:, 11:]), atol=1e-4)


def test_kv_cache_steps_equal_the_full_forward_with_the_document_mask():
    # generation keeps each cached key's document, so feeding an EOT mid-way starts a new document
    x = packed()
    m = tiny("sdpa", doc_mask=True)
    full = logits(m, x)
    cache = [{} for _ in m.blocks]
    with torch.no_grad():
        first = m(x[:, :6], kv_cache=cache)[0]                       # a prompt, then one token at a time
        steps = [m(x[:, t:t + 1], kv_cache=cache, pos=t)[0] for t in range(6, x.size(1))]
    assert torch.allclose(torch.cat([first, *steps], 1), full, atol=1e-5)


def test_generation_with_the_document_mask_equals_recomputing_the_prefix():
    m = tiny("flex", doc_mask=True)    # generation runs SDPA with the cache; the recompute runs flex
    x = packed()[:, :12]               # a prompt holding EOTs
    fast = m.generate(x, 10, temperature=0)
    slow = x
    for _ in range(10):
        slow = torch.cat([slow, logits(m, slow)[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(fast, slow)


def test_old_model_configs_default_to_causal_sdpa():
    old = {f.name: getattr(GPTConfig(), f.name) for f in dataclasses.fields(GPTConfig)
           if f.name not in ("attn", "doc_mask", "eot_token")}            # a checkpoint from before
    cfg = GPTConfig(**old)
    assert (cfg.attn, cfg.doc_mask) == ("sdpa", False)


def test_unknown_attention_and_a_document_mask_without_eot_are_refused():
    with pytest.raises(ValueError, match="attn"):
        GPT(GPTConfig(attn="flash"))
    with pytest.raises(ValueError, match="eot_token"):
        GPT(GPTConfig(doc_mask=True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="compiled FlexAttention and its backward need CUDA")
def test_compiled_flex_trains_like_sdpa_on_cuda():
    x = packed().cuda()
    grads = {}
    for attn in ("sdpa", "flex"):
        m = tiny(attn, doc_mask=True, device="cuda").train()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = m(x[:, :-1], x[:, 1:])[1]
        loss.backward()
        grads[attn] = (loss.item(), m.blocks[0].attn.q.weight.grad.clone())
    assert abs(grads["sdpa"][0] - grads["flex"][0]) < 2e-2
    assert torch.allclose(grads["sdpa"][1], grads["flex"][1], atol=2e-3, rtol=5e-2)
