"""Ensembles: the two combining rules, the streaming k = 1..K evaluation, training members (one process
and torchrun), resuming an interrupted ensemble, refusing members that do not fit together."""
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import data  # noqa: E402
import ensemble  # noqa: E402
import train  # noqa: E402
from data import synthetic  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# an order-1 Markov source: 64 contexts x 8 symbols, easy to learn and, from 2K tokens, easy to overfit
SYN = dict(V=64, k=1, s=8, alpha=0.5, n_train=60_000, n_val=8192, seed=1234)
# tiny members on D = 2K tokens with wd 0: the best single model here trains ~16 epochs (val 2.24;
# 8 epochs 2.56, 32 epochs 3.05), so 32 epochs is past it, as the paper's members are (2x epochs)
OVERFIT = ["--model", "tiny-120k", "--seq_len", "32", "--train_tokens", "2048", "--batch_size", "16",
           "--lr", "3e-3", "--wd", "0", "--epochs", "32", "--evals", "4"]
QUICK = ["--model", "tiny-120k", "--seq_len", "32", "--train_tokens", "2048", "--batch_size", "16",
         "--epochs", "2", "--evals", "1"]   # 7 steps: for bookkeeping tests


pytestmark = pytest.mark.usefixtures("one_thread")   # see conftest.py


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    return synthetic.generate(str(tmp_path_factory.mktemp("ens") / "syn"), **SYN)


@pytest.fixture(scope="module")
def overfit(syn, tmp_path_factory):
    """An ensemble of 3 overfit members trained through the CLI, evaluated with both rules."""
    out = str(tmp_path_factory.mktemp("ens") / "overfit")
    ensemble.main(["--k", "3", "--out_dir", out, "--dataset", syn, "--combine", "both", *OVERFIT])
    with open(os.path.join(out, "ensemble.json")) as f:
        return out, json.load(f)


def member_summary(path):
    with open(os.path.join(path, "summary.json")) as f:
        return json.load(f)


def random_models(K, vocab=24, scale=30.0):
    """Untrained models whose output head is scaled up, so their predictions are sharp and disagree
    (at the default init every model predicts ~uniform and every rule would tie)."""
    models = []
    for i in range(K):
        torch.manual_seed(100 + i)
        m = GPT(GPTConfig(vocab_size=vocab, block_size=16, n_layer=1, n_head=2, n_kv_head=2, n_embd=16, ffn=32))
        with torch.no_grad():
            m.lm_head.weight.mul_(scale)
        models.append(m.eval())
    return models


# ----------------------------------------------------------------------------
# the combining rules

def test_k1_is_the_members_own_val_loss_and_k_copies_of_a_model_equal_it(overfit, syn):
    out, ens = overfit
    model, ckpt = train.load_model(os.path.join(out, "member_0"))
    ds = data.load_dataset(syn)
    windows = data.val_windows(ds.val, 32)                                        # (n, 33)
    ref = train.evaluate(model, windows, 16, torch.device("cpu"), torch.float32)
    assert ens["losses_first"]["1"] == ref == ens["member_losses"][0]            # exactly, not approx
    assert ens["losses"]["1"] == pytest.approx(ens["member_mean"], rel=1e-12)   # the mean over 1-subsets
    assert member_summary(os.path.join(out, "member_0"))["val_loss"] == ref
    copies = ensemble.ensemble_losses([model] * 3, ds.val, 32, len(windows), 16, torch.device("cpu"),
                                      torch.float32, rules=("logits", "probs"))
    assert copies["logits"] == pytest.approx([ref] * 3, rel=1e-6)
    assert copies["probs"] == pytest.approx([ref] * 3, rel=1e-6)


def test_both_rules_match_their_definitions_and_never_exceed_the_mean_member_loss():
    K, T = 4, 16
    models = random_models(K)
    tokens = np.random.default_rng(0).integers(0, 24, 40 * T + 1)
    n = (len(tokens) - 1) // T
    res = ensemble.ensemble_losses(models, tokens, T, n, 7, torch.device("cpu"), torch.float32, skip=2,
                                   rules=("logits", "probs"))
    # Jensen: for every k, both rules score at most the mean of those k members (here clearly below)
    for k in range(1, K + 1):
        mean_k = sum(res["member"][:k]) / k
        for rule in ("logits", "probs"):
            assert res[rule][k - 1] <= mean_k + 1e-9
            if k > 1:
                assert res[rule][k - 1] < mean_k - 0.1
    # decisions.md: logit rule = log_softmax(mean logits); probability rule = log(mean p), brute force
    w = torch.from_numpy(data.Windows(tokens, n, T).get(np.arange(n)))
    x, y = w[:, :-1], w[:, 1:, None][:, 2:]                                      # skip 2 targets
    with torch.no_grad():
        logits = torch.stack([m(x)[0][:, 2:] for m in models])                   # (K, n, T-2, V)
    lp_logits = F.log_softmax(logits.mean(0), -1)
    lp_probs = F.softmax(logits, -1).mean(0).log()
    assert res["logits"][-1] == pytest.approx(-lp_logits.gather(-1, y).mean().item(), rel=1e-5)
    assert res["probs"][-1] == pytest.approx(-lp_probs.gather(-1, y).mean().item(), rel=1e-5)


def test_subset_curve_is_the_mean_over_every_k_subset_scored_by_hand():
    K, T = 4, 16
    models = random_models(K)
    tokens = np.random.default_rng(1).integers(0, 24, 30 * T + 1)
    n = (len(tokens) - 1) // T
    res = ensemble.ensemble_losses(models, tokens, T, n, 8, torch.device("cpu"), torch.float32,
                                   rules=("logits",))
    subsets = res["logits_subsets"]
    assert len(subsets) == 2 ** K - 1                                            # every non-empty subset
    w = torch.from_numpy(data.Windows(tokens, n, T).get(np.arange(n)))
    with torch.no_grad():
        logits = torch.stack([m(w[:, :-1])[0] for m in models])                  # (K, n, T, V)
    y = w[:, 1:, None]
    for S in [(1, 3), (0, 2, 3)]:                                                # not a prefix
        by_hand = -F.log_softmax(logits[list(S)].mean(0), -1).gather(-1, y).mean().item()
        assert subsets[S] == pytest.approx(by_hand, rel=1e-5)
    curve = ensemble.subset_curve(subsets, K)
    assert curve[0] == pytest.approx(np.mean(res["member"]))
    assert curve[1] == pytest.approx(np.mean([subsets[S] for S in subsets if len(S) == 2]))
    assert curve[-1] == res["logits"][-1]                                        # one K-subset: all members
    assert curve[1] != res["logits"][1]                                          # not the first-2 ensemble
    # many members: a fixed random sample of subsets per k, the same on every call
    big = ensemble.member_subsets(12, max_per_k=20)
    assert len(big[6]) == 20 and len(set(big[6])) == 20 and big[6] == ensemble.member_subsets(12, 20)[6]
    assert len(big[1]) == 12 and len(big[12]) == 1


# ----------------------------------------------------------------------------
# real members

def test_ensemble_of_overfit_members_beats_its_best_member(overfit):
    out, ens = overfit
    assert ens["K"] == 3 and ens["kind"] == "ensemble" and ens["recipe"] == "member"
    assert ens["members"] == ["member_0", "member_1", "member_2"]
    for i in range(3):   # the premise: every member is past its best epoch (val rose since)
        s = member_summary(os.path.join(out, f"member_{i}"))
        assert (s["seed"], s["data_seed"]) == (i, i)
        assert s["val_loss"] > min(h["val_loss"] for h in s["history"]) + 0.2
    losses = [ens["losses"][str(k)] for k in (1, 2, 3)]
    assert losses[0] > losses[1] > losses[2]
    # decisions.md: beating the mean member is guaranteed by convexity; the evidence is beating the best
    assert ens["losses"]["3"] < ens["member_best"] - 0.1
    assert ens["losses_probs"]["3"] < ens["member_best"] - 0.1
    assert ens["member_best"] == min(ens["member_losses"])


def test_torchrun_trains_members_one_per_rank_and_gets_the_same_ensemble(overfit, syn, tmp_path):
    out = str(tmp_path / "ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "ensemble.py", "--k", "3", "--out_dir", out, "--dataset", syn, "--combine", "both",
                        *OVERFIT], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "member_1 (rank 1)" in r.stdout and "member_2 (rank 0)" in r.stdout   # member i on rank i % P
    with open(os.path.join(out, "ensemble.json")) as f:
        ddp = json.load(f)
    one = overfit[1]
    for key in ("losses", "losses_probs", "losses_first"):
        assert list(ddp[key].values()) == pytest.approx(list(one[key].values()), rel=1e-5)


# ----------------------------------------------------------------------------
# bookkeeping: resume, refusals, CLI

class Killed(Exception):
    pass


def test_interrupted_ensemble_resumes_without_retraining_finished_members(syn, tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "ens")
    flags = ["--out_dir", out, "--dataset", syn, "--ckpt_every", "2", *QUICK]
    ensemble.main(["--k", "2", *flags])
    real_train, calls = train.train, []

    def killed_after_4_steps(cfg, **kw):   # the job dies mid-run, after the checkpoint at step 4
        calls.append(cfg.out_dir)
        n = [0]

        def loss_fn(model, x, y):
            n[0] += 1
            if n[0] > 4:
                raise Killed
            return train.default_loss(model, x, y)
        return real_train(cfg, loss_fn=loss_fn, **kw)
    monkeypatch.setattr(train, "train", killed_after_4_steps)
    with pytest.raises(Killed):
        ensemble.main(["--k", "3", *flags])
    m2 = os.path.join(out, "member_2")
    assert calls == [m2] and os.path.exists(os.path.join(m2, "ckpt.pt"))
    assert not os.path.exists(os.path.join(m2, "summary.json"))

    mtimes = [os.path.getmtime(os.path.join(out, f"member_{i}", "summary.json")) for i in (0, 1)]
    calls.clear()
    monkeypatch.setattr(train, "train", lambda cfg, **kw: calls.append(cfg) or real_train(cfg, **kw))
    capsys.readouterr()
    ensemble.main(["--k", "3", *flags])
    assert [c.out_dir for c in calls] == [m2] and calls[0].resume           # only member_2 trained
    printed = capsys.readouterr().out
    assert "resumed from" in printed and "at step 4/" in printed                # from its checkpoint
    assert [os.path.getmtime(os.path.join(out, f"member_{i}", "summary.json")) for i in (0, 1)] == mtimes
    s2 = member_summary(m2)
    assert (s2["seed"], s2["data_seed"], s2["member"]) == (2, 2, 2)
    with open(os.path.join(out, "ensemble.json")) as f:
        assert json.load(f)["K"] == 3

    # a rerun with different flags must not mix recipes in one ensemble
    with pytest.raises(SystemExit) as e:
        ensemble.main(["--k", "3", *flags, "--wd", "0.5"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "member_0" in err and "wd" in err


@pytest.fixture(scope="module")
def quick_member(syn, tmp_path_factory):
    cfg = train.TrainConfig(dataset=syn, model="tiny-120k", seq_len=32, train_tokens=2048, batch_size=16,
                            epochs=1, evals=1, out_dir=str(tmp_path_factory.mktemp("ens") / "base"))
    train.train(cfg, quiet=True)
    return cfg


@pytest.mark.parametrize("change,named", [({"seq_len": 16}, "seq_len"), ({"val_tokens": 4096}, "val windows"),
                                          ({"dataset": "other"}, "vocab")])
def test_members_that_do_not_fit_together_are_refused(quick_member, change, named, tmp_path, capsys):
    if change.get("dataset") == "other":   # another tokenizer vocabulary: V = 32
        change = {"dataset": synthetic.generate(str(tmp_path / "syn32"), **{**SYN, "V": 32, "n_train": 4096})}
    other = train.TrainConfig(**{**dataclasses.asdict(quick_member), **change, "seed": 1, "out_dir": str(tmp_path / "other")})
    train.train(other, quiet=True)
    with pytest.raises(SystemExit) as e:
        ensemble.main(["--eval", "--members", quick_member.out_dir, other.out_dir])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1 and named in err


@pytest.mark.parametrize("argv,named", [(["--eval", "--members", "/nonexistent/m*"], "matches nothing"),
                                        (["--k", "0"], "--k"),
                                        (["--eval", "--members", "x", "--lr", "0.1"], "--lr"),
                                        (["--k", "2", "--model", "nope"], "unknown --model"),
                                        (["--k", "2", "--vary", "seeds"], "--vary"),
                                        (["--eval", "--members", "x", "--combine", "max"], "--combine"),
                                        (["--eval", "--members", "x", "--eval_batch", "-1"], "--eval_batch")])
def test_cli_errors_are_one_line_and_exit_2(argv, named, capsys):
    with pytest.raises(SystemExit) as e:
        ensemble.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1 and named in err


def test_sample_draws_text_from_the_members_of_an_ensemble_folder(overfit, capsys):
    ensemble.main(["--sample", "--members", overfit[0], "--tokens", "8", "--samples", "2", "--combine", "probs"])
    assert capsys.readouterr().out.count("-" * 40) == 2


def test_evaluating_a_subset_never_replaces_the_full_ensembles_result(overfit, capsys):
    out, full = overfit
    before = open(os.path.join(out, "ensemble.json")).read()
    with pytest.raises(SystemExit) as e:
        ensemble.main(["--eval", "--members", os.path.join(out, "member_0"), os.path.join(out, "member_1")])
    assert e.value.code == 2 and "--out" in capsys.readouterr().err
    assert open(os.path.join(out, "ensemble.json")).read() == before


def test_eval_out_may_name_a_folder_that_does_not_exist_yet(overfit, tmp_path):
    out, _ = overfit
    dest = tmp_path / "new" / "deeper" / "pair.json"
    ensemble.main(["--eval", "--members", os.path.join(out, "member_0"), os.path.join(out, "member_1"),
                   "--out", str(dest)])
    with open(dest) as f:
        assert json.load(f)["K"] == 2
