"""Distillation: the corpus comes from the teacher, the mixture is honored, the KD loss, an end-to-end
run from a 2-member ensemble, mismatched teachers refused, resumable sampling."""
import copy
import json
import math
import os
import shutil
from dataclasses import asdict

import numpy as np
import pytest
import torch

import data
import distill
import train
from model import GPT, config_from_preset
from train import ConfigError, TrainConfig

V, EOT = 65, 64   # the tiny_data fixture: symbols 0..63, end-of-document 64


pytestmark = pytest.mark.usefixtures("one_thread")   # see conftest.py


def save_teacher(run_dir, model, dataset, seq_len):
    """A finished-looking run folder (ckpt.pt, config.json, summary.json) holding `model`."""
    os.makedirs(run_dir, exist_ok=True)
    cfg = asdict(TrainConfig(dataset=dataset, seq_len=seq_len, model="tiny-120k", train_tokens=8192))
    torch.save({"model": model.state_dict(), "model_config": asdict(model.cfg), "config": cfg},
               os.path.join(run_dir, "ckpt.pt"))
    json.dump(cfg, open(os.path.join(run_dir, "config.json"), "w"))
    json.dump({}, open(os.path.join(run_dir, "summary.json"), "w"))
    return str(run_dir)


def pattern_teacher(step, T):
    """A GPT that always predicts (prev + step) % 64, and 0 / step-1 after the eot, with a logit margin
    of 800: blocks silenced, embedding one-hot, the output head a shifted identity."""
    m = GPT(config_from_preset("tiny-120k", V, T))
    with torch.no_grad():
        for b in m.blocks:
            b.attn.o.weight.zero_()
            b.mlp.down.weight.zero_()
        m.embed.weight.zero_()
        m.lm_head.weight.zero_()
        for t in range(64):
            m.embed.weight[t, t] = 1.0                 # rmsnorm makes it 8 e_t (n_embd 64)
            m.lm_head.weight[(t + step) % 64, t] = 100.0
        m.embed.weight[EOT, 63] = 1.0                  # the eot reads as symbol 63
    return m


def random_teacher(seed, T):
    torch.manual_seed(seed)
    return GPT(config_from_preset("tiny-120k", V, T))


def corpus_rows(path, T):
    return np.asarray(data.load_dataset(path).train, dtype=np.int64).reshape(-1, T + 1)


@pytest.fixture(scope="module")
def pattern_corpus(tiny_data, tmp_path_factory):
    T = 32
    tmp = tmp_path_factory.mktemp("pattern")
    paths = [save_teacher(tmp / "plus1", pattern_teacher(1, T), tiny_data, T)]
    models, ds = distill.load_teachers(paths, "cpu")
    out = distill.generate_corpus(models, paths, ds, str(tmp / "corpus"), n_tokens=40 * T, seq_len=T,
                                  batch=16, quiet=True)
    return out, T


# ---------------------------------------------------------------------------- sequence-level

def test_synthetic_corpus_follows_a_deterministic_teacher(pattern_corpus, tiny_data):
    out, T = pattern_corpus
    rows = corpus_rows(out, T)
    expected = np.concatenate([[EOT], np.arange(T) % 64])               # eot, 0, 1, 2, ...
    assert rows.shape == (40, T + 1) and (rows == expected).all()
    meta = data.load_dataset(out).meta
    assert meta["teacher"]["temperature"] == 1.0 and meta["teacher"]["sampled_tokens"] == 40 * T
    assert meta["vocab_size"] == V and meta["sequence_tokens"] == T + 1
    assert np.array_equal(data.load_dataset(out).val, data.load_dataset(tiny_data).val)   # the real val split


def test_mix_weight_sets_the_share_of_teacher_sequences_in_every_batch(pattern_corpus, tiny_data, tmp_path):
    out, T = pattern_corpus
    expected = torch.tensor(np.concatenate([[EOT], np.arange(T) % 64]))
    seen = []

    def recording(model, x, y):
        syn = x[:, 0] == EOT                      # teacher samples start at the eot; real windows never hold it
        assert (torch.cat([x[syn], y[syn][:, -1:]], 1) == expected).all()   # whole, aligned samples
        assert not (x[~syn] == EOT).any()
        seen.append((int(syn.sum()), int((~syn).sum())))
        return train.default_loss(model, x, y)

    cfg = TrainConfig(dataset=tiny_data, out_dir=str(tmp_path / "s"), model="tiny-120k", train_tokens=2048,
                      seq_len=T, batch_size=8, epochs=2, evals=1, mix_data=out, mix_weight=0.75)
    s = train.train(cfg, loss_fn=recording, batches=distill.MixedBatches, quiet=True)
    n_real = (2048 - 1) // T
    assert seen == [(6, 2)] * (2 * n_real // 2)           # round(0.75 * 8) = 6 synthetic, steps from real epochs
    assert s["mix"]["synthetic_per_step"] == 6 and s["mix"]["synthetic_passes"] == pytest.approx(len(seen) * 6 / 40)


def test_pooled_sampling_takes_each_sequence_from_one_member_while_averaged_mixes_them(tiny_data, tmp_path):
    T = 24
    paths = [save_teacher(tmp_path / f"m{s}", pattern_teacher(s, T), tiny_data, T) for s in (1, 2)]
    models, ds = distill.load_teachers(paths, "cpu")
    steps = {}
    for sampling in ("pooled", "averaged"):
        out = distill.generate_corpus(models, paths, ds, str(tmp_path / sampling), n_tokens=8 * T, seq_len=T,
                                      sampling=sampling, batch=3, quiet=True)
        steps[sampling] = np.diff(corpus_rows(out, T)[:, 1:], axis=1) % 64      # (8, T-1) step sizes
    assert (steps["pooled"][0::2] == 1).all() and (steps["pooled"][1::2] == 2).all()   # row r from member r % 2
    assert np.isin(steps["averaged"], [1, 2]).all()
    assert all(set(row) == {1, 2} for row in steps["averaged"])                    # both members inside a row


def test_interrupted_sampling_resumes_to_the_same_corpus(tiny_data, tmp_path):
    T = 16
    paths = [save_teacher(tmp_path / "t", random_teacher(0, T), tiny_data, T)]
    models, ds = distill.load_teachers(paths, "cpu")
    gen = lambda out, **kw: distill.generate_corpus(models, paths, ds, str(tmp_path / out), n_tokens=10 * T,
                                                    seq_len=T, batch=4, quiet=True, **{"seed": 7, **kw})
    full = corpus_rows(gen("full"), T)                                            # 3 chunks: 4 + 4 + 2 rows
    assert full.shape == (10, T + 1) and not np.array_equal(full[:4], full[4:8])  # each chunk its own seed
    assert not np.array_equal(full, corpus_rows(gen("other", seed=8), T))          # the seed matters

    assert gen("cut", max_chunks=1) is None                                       # "killed" after one chunk
    assert not os.path.exists(tmp_path / "cut") and len(os.listdir(tmp_path / "cut.partial")) == 2   # spec + 1 chunk
    with pytest.raises(ConfigError, match="other settings"):
        gen("cut", temperature=0.5)                                               # a different corpus: refused
    assert np.array_equal(corpus_rows(gen("cut"), T), full)
    assert not os.path.exists(tmp_path / "cut.partial")

    # the stored chunk is reused, not resampled: a marked chunk 0 shows up in the result
    assert gen("marked", max_chunks=2) is None
    np.save(tmp_path / "marked.partial" / "chunk_000000.npy", np.full((4, T + 1), 5, dtype=np.uint16))
    marked = corpus_rows(gen("marked"), T)
    assert (marked[:4] == 5).all() and np.array_equal(marked[4:], full[4:])


def test_a_corpus_is_matched_on_its_teachers_content_not_their_paths(tiny_data, tmp_path):
    T = 16
    first = save_teacher(tmp_path / "t", random_teacher(0, T), tiny_data, T)
    models, ds = distill.load_teachers([first], "cpu")
    gen = lambda paths: distill.generate_corpus(models, paths, ds, str(tmp_path / "corpus"), n_tokens=4 * T,  # noqa: E731
                                                seq_len=T, batch=4, quiet=True)
    rows = corpus_rows(gen([first]), T)
    moved = str(tmp_path / "moved")
    shutil.copytree(first, moved)                       # the same teacher in another folder: reused as it is
    assert np.array_equal(corpus_rows(gen([moved]), T), rows)
    other = save_teacher(tmp_path / "t2", random_teacher(1, T), tiny_data, T)
    with pytest.raises(ConfigError, match="other settings"):
        gen([other])                                    # another teacher's weights: refused


# ---------------------------------------------------------------------------- logit distillation

def test_kl_term_is_zero_for_the_teacher_itself_and_alpha_zero_is_plain_cross_entropy():
    T = 16
    teacher = random_teacher(0, T).eval()
    same, other = copy.deepcopy(teacher), random_teacher(1, T)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, 64, (4, T), generator=g), torch.randint(0, 64, (4, T), generator=g)
    for temp in (1.0, 2.0):
        kd = distill.kd_loss([teacher], alpha=1.0, temperature=temp)
        assert abs(kd(same, x, y).item()) < 1e-6
        assert kd(other, x, y).item() > 1e-4
    ce = train.default_loss(other, x, y)
    assert distill.kd_loss([teacher], alpha=0.0)(other, x, y).item() == ce.item()
    half = distill.kd_loss([teacher], alpha=0.5)(same, x, y)
    assert half.item() == pytest.approx(0.5 * train.default_loss(same, x, y).item(), abs=1e-6)
    for rule in ("logits", "probs"):          # an ensemble of one model twice is that model
        assert torch.allclose(distill.teacher_log_probs([teacher, teacher], x, 1.5, rule),
                              distill.teacher_log_probs([teacher], x, 1.5, rule), atol=1e-5)


def test_alpha_zero_trains_exactly_like_the_default_loss(tiny_data, tmp_path):
    teacher = random_teacher(0, 32).eval()
    cfg = dict(dataset=tiny_data, model="tiny-120k", train_tokens=2048, seq_len=32, batch_size=8, epochs=1, evals=1)
    a = train.train(TrainConfig(out_dir=str(tmp_path / "a"), **cfg), quiet=True)
    b = train.train(TrainConfig(out_dir=str(tmp_path / "b"), **cfg), quiet=True,
                    loss_fn=distill.kd_loss([teacher], alpha=0.0))
    assert a["val_loss"] == b["val_loss"]


# ---------------------------------------------------------------------------- end to end, refusals

@pytest.fixture(scope="module")
def ensemble_teacher(tiny_data, tmp_path_factory):
    ens = tmp_path_factory.mktemp("ens")
    for i in range(2):
        train.train(TrainConfig(dataset=tiny_data, out_dir=str(ens / f"member_{i}"), model="tiny-120k",
                                train_tokens=8192, seq_len=32, batch_size=8, epochs=2, lr=1e-2, evals=1,
                                seed=i, data_seed=i), quiet=True)
    return str(ens)


def test_sequence_level_student_from_a_two_member_ensemble(ensemble_teacher, tmp_path, capsys):
    out = str(tmp_path / "student")
    distill.main(["--teacher", ensemble_teacher, "--out_dir", out, "--model", "tiny-120k", "--epochs", "2",
                  "--batch_size", "8", "--lr", "1e-2", "--evals", "1", "--corpus_tokens", "8192"])
    assert "tok/s" in capsys.readouterr().out                                      # sampling progress
    for f in ("corpus/meta.json", "corpus/train.bin", "corpus/val.bin", "summary.json", "ckpt.pt"):
        assert os.path.exists(os.path.join(out, f))
    assert not os.path.exists(os.path.join(out, "corpus.partial"))
    s = json.load(open(os.path.join(out, "summary.json")))
    assert s["recipe"] == "distill" and len(s["teacher"]) == 2 and s["seq_len"] == 32 and s["D"] == 255 * 32
    assert s["distill"]["sampling"] == "averaged" and s["distill"]["combine"] == "logits"
    assert s["mix"]["weight"] == 0.75 and s["mix"]["synthetic_per_step"] == 6 and s["mix"]["synthetic_passes"] > 0
    assert math.isfinite(s["val_loss"]) and s["val_loss"] < math.log(V)


def test_logit_student_from_one_teacher_is_labelled_self_distill(ensemble_teacher, tmp_path):
    out = str(tmp_path / "kd")
    distill.main(["--mode", "logit", "--teacher", os.path.join(ensemble_teacher, "member_0"), "--out_dir", out,
                  "--model", "tiny-120k", "--epochs", "1", "--batch_size", "8", "--evals", "1", "--kd_temp", "2"])
    s = json.load(open(os.path.join(out, "summary.json")))
    assert s["recipe"] == "logit-self-distill" and s["distill"]["alpha"] == 0.5 and "mix" not in s
    assert math.isfinite(s["val_loss"]) and s["val_loss"] < math.log(V)
    assert not os.path.exists(os.path.join(out, "corpus"))


@pytest.mark.parametrize("other, says", [(dict(V=32), "tokenizer"), (dict(V=64, seed=9), "trained on")])
def test_teacher_over_other_tokens_is_refused(tiny_data, tmp_path, capsys, other, says):
    from data import synthetic
    params = dict(V=64, k=1, s=8, alpha=0.5, n_train=4096, n_val=1024, seed=3)
    student_data = synthetic.generate(str(tmp_path / "other"), **{**params, **other})
    teacher = save_teacher(tmp_path / "t", random_teacher(0, 16), tiny_data, 16)
    with pytest.raises(SystemExit) as e:
        distill.main(["--teacher", teacher, "--dataset", student_data, "--out_dir", str(tmp_path / "s"),
                      "--model", "tiny-120k", "--train_tokens", "2048"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1 and says in err
    assert not os.path.exists(tmp_path / "s")


@pytest.mark.parametrize("flags, says", [(["--mode", "sequence"], "--mode"), (["--combine", "max"], "--combine"),
                                          (["--teacher_sampling", "each"], "--teacher_sampling")])
def test_a_bad_choice_is_one_line_and_trains_nothing(tiny_data, tmp_path, capsys, flags, says):
    teacher = save_teacher(tmp_path / "t", random_teacher(0, 16), tiny_data, 16)
    with pytest.raises(SystemExit) as e:
        distill.main(["--teacher", teacher, "--out_dir", str(tmp_path / "s"), *flags])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1 and says in err
    assert not os.path.exists(tmp_path / "s")
