"""The chunked output head (model.chunked_logits): the chunked loss and its gradients equal the full
one, evaluation and ensemble scoring agree with it, and no (B, T, V) fp32 tensor is made or kept for
backward (measured with FakeTensorMode and torch's memory tracker at the paper's 150m shape)."""
import pytest
import torch
import torch.nn.functional as F

import model as M
from model import GPT, GPTConfig, config_from_preset

pytestmark = pytest.mark.usefixtures("one_thread")   # see conftest.py


def tiny(vocab=97, kv=2):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=vocab, block_size=32, n_layer=2, n_head=4, n_kv_head=kv, n_embd=32, ffn=64))


def full_loss(m, x, y, skip=0):
    logits = m(x)[0][:, skip:]                                                   # (B, T - skip, V) unchunked
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y[:, skip:].reshape(-1))


def grads(m):
    return {n: p.grad.clone() for n, p in m.named_parameters()}


@pytest.mark.parametrize("skip", [0, 3])
def test_chunked_loss_and_its_gradients_equal_the_full_one(monkeypatch, skip):
    m = tiny()
    x, y = torch.randint(0, 97, (3, 24)), torch.randint(0, 97, (3, 24))
    ref = full_loss(m, x, y, skip)
    ref.backward()
    g_ref = grads(m)
    m.zero_grad()
    # 3 rows x 5 positions x 97 < 2000: chunks of 5 positions, the last one shorter
    monkeypatch.setattr(M, "LOGIT_CHUNK_ELEMENTS", 2000)
    assert len(M.logit_chunks(24, 3, 97, skip)) > 3
    loss = m(x, y, skip=skip)[1]
    loss.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=1e-6)
    for n, g in grads(m).items():
        torch.testing.assert_close(g, g_ref[n], rtol=1e-5, atol=1e-7, msg=n)
    # reduction="sum" with padded rows masked out (-100): what train.evaluate adds up
    y_pad = y.clone()
    y_pad[2] = -100
    with torch.no_grad():
        s = m(x, y_pad, reduction="sum", skip=skip)[1]
        logits = m(x)[0][:2, skip:]
    assert s.item() == pytest.approx(F.cross_entropy(logits.reshape(-1, 97), y[:2, skip:].reshape(-1),
                                                     reduction="sum").item(), rel=1e-6)


def test_one_chunk_is_exactly_the_unchunked_head():
    # the tiny presets on CPU are one chunk: the default path computes what it always did, bit for bit
    m = tiny()
    x, y = torch.randint(0, 97, (4, 32)), torch.randint(0, 97, (4, 32))
    assert len(M.logit_chunks(32, 4, 97)) == 1
    assert torch.equal(m(x, y)[1], full_loss(m, x, y))
    assert m(x, y)[0] is None                                     # training gets no logits back


def test_evaluation_and_ensemble_scoring_agree_when_chunked(monkeypatch):
    import numpy as np
    import ensemble
    import train
    models = [tiny(), tiny(kv=4)]
    tokens = np.random.default_rng(0).integers(0, 97, 12 * 16 + 1)
    windows = np.stack([tokens[i * 16:(i + 1) * 16 + 1] for i in range(12)])     # (12, 17)
    cpu = torch.device("cpu")
    one = train.evaluate(models[0], windows, 5, cpu, torch.float32, skip=2)
    ens = ensemble.ensemble_losses(models, tokens, 16, 12, 5, cpu, torch.float32, skip=2, rules=("logits", "probs"))
    monkeypatch.setattr(M, "LOGIT_CHUNK_ELEMENTS", 5 * 97 * 3)                    # a few positions per chunk
    chunked = ensemble.ensemble_losses(models, tokens, 16, 12, 5, cpu, torch.float32, skip=2,
                                       rules=("logits", "probs"))
    assert train.evaluate(models[0], windows, 5, cpu, torch.float32, skip=2) == pytest.approx(one, rel=1e-6)
    assert ens["member"][0] == pytest.approx(one, rel=1e-6)
    for rule in ("member", "logits", "probs"):
        assert chunked[rule] == pytest.approx(ens[rule], rel=1e-6)
    # padding the last batch (5 + 5 + 2 windows -> 3 batches of 5) changes nothing
    assert train.evaluate(models[0], windows, 5, cpu, torch.float32, skip=2, pad=True) == pytest.approx(one, rel=1e-6)


def test_logit_distillation_loss_is_the_same_chunked(monkeypatch):
    import distill
    student, teachers = tiny(), [tiny(kv=4), tiny(kv=1)]
    for t in teachers:
        t.requires_grad_(False)
    x, y = torch.randint(0, 97, (3, 20)), torch.randint(0, 97, (3, 20))
    loss_fn = distill.kd_loss(teachers, alpha=0.5, temperature=2.0, combine="probs")
    # the definition, on whole sequences: (1 - a) CE + a T^2 KL(teacher || student)
    t_logp = distill.teacher_log_probs(teachers, x, 2.0, "probs")
    s_logp = F.log_softmax(student(x)[0] / 2.0, -1)
    ref = 0.5 * full_loss(student, x, y) + 0.5 * 4 * F.kl_div(s_logp.flatten(0, 1), t_logp.flatten(0, 1),
                                                              reduction="batchmean", log_target=True)
    ref.backward()
    g_ref = grads(student)
    student.zero_grad()
    monkeypatch.setattr(M, "LOGIT_CHUNK_ELEMENTS", 3 * 97 * 4 * 4)               # 4 positions per chunk
    loss = loss_fn(student, x, y)
    loss.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)
    for n, g in grads(student).items():
        torch.testing.assert_close(g, g_ref[n], rtol=1e-4, atol=1e-6, msg=n)


def peak_gib(chunk_elements, monkeypatch):
    """Peak memory (GiB) of one forward + backward of 150m on one 4096-token sequence at V = 128,256,
    tracked on fake tensors (no real memory or compute)."""
    mem_tracker = pytest.importorskip("torch.distributed._tools.mem_tracker")
    from torch._subclasses.fake_tensor import FakeTensorMode
    monkeypatch.setattr(M, "LOGIT_CHUNK_ELEMENTS", chunk_elements)
    with FakeTensorMode():
        m = GPT(config_from_preset("150m", 128_256, 4096))
        x = torch.randint(0, 128_256, (1, 4096))
        tracker = mem_tracker.MemTracker()
        tracker.track_external(m)
        with tracker:
            m(x, x)[1].backward()
        return tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"] / 2**30


def test_chunked_head_saves_gigabytes_at_the_papers_shape(monkeypatch):
    # one 4096 x 128,256 fp32 logits tensor is 1.96 GiB; unchunked, the forward makes it, its
    # log-softmax and the backward's gradient of it
    default = M.LOGIT_CHUNK_ELEMENTS
    full = peak_gib(2**62, monkeypatch)                      # one chunk: the whole (1, 4096, V) at once
    chunked = peak_gib(default, monkeypatch)
    logits_gib = 4096 * 128_256 * 4 / 2**30
    assert full - chunked > 2 * logits_gib, (full, chunked)
    assert chunked < 3.0, chunked
