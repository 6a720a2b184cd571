"""Ensembles trained as one stacked model (ensemble.py --batched, batched.py): K=2 batched members equal
two separate train.py runs, gradient clipping per member included; their folders are ordinary runs
(evaluate_ensemble, load_model, a rerun skips them); an interrupted batched run resumes, batched or
member by member."""
import dataclasses
import json
import os
import platform

import pytest
import torch

import batched
import ensemble
import train
from members import find_members
from train import TrainConfig

# 160 sequences of 32 tokens, 8 per step in 2 micro-batches of 4: 20 steps, evaluated (and saved) at 10 and 20
SMALL = dict(model="tiny-120k", seq_len=32, batch_size=8, micro_batch=4, train_tokens=5121, epochs=1.0,
             val_tokens=2048, evals=2, recipe="member")
# member gradient norms on SMALL run about 0.95-1.33: at 1.05 some steps clip one member and not the other,
# at 0.5 every step clips both, each by its own factor
CLIPS = (1.05, 0.5)


pytestmark = pytest.mark.usefixtures("one_thread")   # see conftest.py


def config(tiny_data, out_dir, **kw):
    return TrainConfig(dataset=tiny_data, out_dir=str(out_dir), **{**SMALL, **kw})


@pytest.fixture(scope="module")
def separate(tiny_data, tmp_path_factory):
    """Members 0 and 1 as two separate train.train runs (ensemble.py without --batched)."""
    runs = {}

    def get(clip):
        if clip not in runs:
            cfg = config(tiny_data, tmp_path_factory.mktemp("separate"), grad_clip=clip)
            ensemble.train_members(cfg, 2)
            runs[clip] = cfg.out_dir
        return runs[clip]
    return get


def load(run_dir):
    ckpt = torch.load(os.path.join(run_dir, "ckpt.pt"), weights_only=True)
    with open(os.path.join(run_dir, "summary.json")) as f:
        return ckpt, json.load(f)


def assert_same_members(batched_dir, separate_dir, K=2, atol=1e-5, finished_plainly=()):
    for i in range(K):
        (a, sa), (b, sb) = load(os.path.join(batched_dir, f"member_{i}")), load(os.path.join(separate_dir, f"member_{i}"))
        assert a["model"].keys() == b["model"].keys()
        for k in b["model"]:
            torch.testing.assert_close(a["model"][k], b["model"][k], atol=atol, rtol=0, msg=f"member {i} {k}")
        # the optimizer state is the one a lone member's AdamW would have: `--resume` continues it as usual
        assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
        assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
        for j, st in b["optimizer"]["state"].items():
            for name, v in st.items():
                torch.testing.assert_close(a["optimizer"]["state"][j][name], v, atol=atol, rtol=0)
        assert a["step"] == b["step"] and a["model_config"] == b["model_config"]
        assert {**a["config"], "out_dir": ""} == {**b["config"], "out_dir": ""}
        for key in ("val_loss", "train_loss"):
            assert sa[key] == pytest.approx(sb[key], abs=atol), (i, key)
        assert [h["val_loss"] for h in sa["history"]] == pytest.approx([h["val_loss"] for h in sb["history"]], abs=atol)
        for key in ("seed", "data_seed", "steps", "D", "N", "epochs", "lr", "wd", "limits", "recipe"):
            assert sa[key] == sb[key], key
        if i not in finished_plainly:   # the same schema, plus "batched"
            assert set(sa) - set(sb) == {"batched"} and set(sb) <= set(sa) and sa["member"] == sb["member"] == i


@pytest.mark.parametrize("clip", CLIPS)
def test_batched_members_equal_separate_runs(tiny_data, separate, tmp_path, monkeypatch, clip):
    norms = []
    clip_grad_norm_ = batched.StackedGPT.clip_grad_norm_

    def spy(self, max_norm):
        n = clip_grad_norm_(self, max_norm)
        norms.append(n.tolist())
        return n
    monkeypatch.setattr(batched.StackedGPT, "clip_grad_norm_", spy)
    cfg = config(tiny_data, tmp_path / "ens", grad_clip=clip)
    ensemble.train_members(cfg, 2, batched=True, quiet=True)
    assert len(norms) == 20
    clipped = [[n > clip for n in step] for step in norms]
    if clip == 0.5:   # clipped by different factors: one global norm would scale both alike
        assert all(all(c) for c in clipped) and any(abs(a - b) > 0.05 for a, b in norms)
    else:             # some steps clip exactly one member
        assert any(a != b for a, b in clipped)
    assert_same_members(cfg.out_dir, separate(clip))
    for i in range(2):   # one log line per log step, as train.py writes
        with open(os.path.join(cfg.out_dir, f"member_{i}", "log.jsonl")) as f, \
                open(os.path.join(separate(clip), f"member_{i}", "log.jsonl")) as g:
            assert [json.loads(l)["step"] for l in f] == [json.loads(l)["step"] for l in g]


def test_clip_grad_norm_is_torchs_per_member():
    torch.manual_seed(0)
    from model import GPT, GPTConfig
    models = [GPT(GPTConfig(vocab_size=16, block_size=8, n_layer=1, n_head=2, n_kv_head=2, n_embd=8, ffn=16))
              for _ in range(3)]
    stacked = batched.StackedGPT(models)
    for m, scale in zip(models, (10.0, 0.01, 0.4)):      # member 0 is clipped, 1 and 2 are not
        for p in m.parameters():
            p.grad = torch.randn_like(p) * scale
    for name, q in stacked.params.items():
        q.grad = torch.stack([m.get_parameter(name).grad for m in models])
    norms = stacked.clip_grad_norm_(1.5)
    for k, m in enumerate(models):
        expected = torch.nn.utils.clip_grad_norm_(m.parameters(), 1.5)
        assert norms[k].item() == pytest.approx(expected.item(), rel=1e-5)
        for p, q in zip(m.parameters(), stacked.params.values()):
            torch.testing.assert_close(q.grad[k], p.grad, rtol=1e-5, atol=1e-7)


def test_batched_folders_are_ordinary_runs(tiny_data, tmp_path, capsys):
    out = str(tmp_path / "cli")
    flags = ["--dataset", tiny_data, *[f"--{k}={v}" for k, v in SMALL.items() if k != "recipe"]]
    ensemble.main(["--k", "2", "--batched", "--out_dir", out, *flags])
    with open(os.path.join(out, "ensemble.json")) as f:
        ens = json.load(f)
    assert ens["K"] == 2 and ens["recipe"] == "member" and ens["seeds"] == [0, 1] and ens["data_seeds"] == [0, 1]
    for i in range(2):
        model, ckpt = train.load_model(os.path.join(out, f"member_{i}"))
        with open(os.path.join(out, f"member_{i}", "summary.json")) as f:
            s = json.load(f)
        # k = 1 of the ensemble is the member's own val loss, scored by train.evaluate as in every run
        assert ens["member_losses"][i] == pytest.approx(s["val_loss"], abs=1e-6)
        assert ckpt["step"] == s["steps"] == 20 and s["batched"] == 2 and s["member"] == i
    assert find_members([out]) == [os.path.join(out, "member_0"), os.path.join(out, "member_1")]
    # a rerun finds both finished and trains nothing; --k 3 would add member_2 alone
    mtime = os.path.getmtime(os.path.join(out, "member_0", "ckpt.pt"))
    capsys.readouterr()
    ensemble.main(["--k", "2", "--batched", "--out_dir", out, *flags])
    assert capsys.readouterr().out.count("finished already, skipped") == 2
    assert os.path.getmtime(os.path.join(out, "member_0", "ckpt.pt")) == mtime
    # what --batched cannot do is refused in one line
    with pytest.raises(SystemExit) as e:
        ensemble.main(["--k", "2", "--batched", "--out_dir", str(tmp_path / "mix"), *flags,
                       "--mix_data", tiny_data, "--mix_weight", "0.25"])
    assert e.value.code == 2 and "--mix_data" in capsys.readouterr().err


def test_bfloat16_members_finish_with_their_summaries(tiny_data, tmp_path):
    """A member's checkpoint records its dtype, as train.py's do: train.train, resuming the final checkpoint
    for the summary, refuses one whose dtype is not the run's (bf16 is every CUDA run's default)."""
    cfg = config(tiny_data, tmp_path / "bf16", dtype="bfloat16", train_tokens=2561, evals=1)   # 10 steps
    ensemble.train_members(cfg, 2, batched=True, quiet=True)
    for i in range(2):
        ckpt, s = load(os.path.join(cfg.out_dir, f"member_{i}"))
        assert ckpt["dtype"] == s["dtype"] == "bfloat16" and ckpt["step"] == s["steps"] == 10 and s["batched"] == 2


def test_a_member_another_process_holds_is_refused_and_nothing_trains(tiny_data, tmp_path):
    cfg = config(tiny_data, tmp_path / "ens")
    held = tmp_path / "ens" / "member_1"
    held.mkdir(parents=True)
    (held / "lock").write_text(json.dumps({"pid": os.getpid(), "host": platform.node()}))   # a live holder
    with pytest.raises(train.RunLocked, match="member_1 is in use"):
        ensemble.train_members(cfg, 2, batched=True, quiet=True)
    assert not (tmp_path / "ens" / "member_0" / "ckpt.pt").exists() and (held / "lock").exists()
    assert not (tmp_path / "ens" / "member_0" / "lock").exists()          # its own locks were released


def interrupt_at(monkeypatch, n_steps):
    """Make the batched loop die after n_steps optimizer steps (as a killed job would)."""
    calls = {"n": 0}
    step = train.train_step

    def dying(*a, **kw):
        if calls["n"] == n_steps:
            raise KeyboardInterrupt
        calls["n"] += 1
        return step(*a, **kw)
    monkeypatch.setattr(train, "train_step", dying)


def test_interrupted_batched_run_resumes(tiny_data, separate, tmp_path, monkeypatch):
    clip = CLIPS[0]
    runs = {}
    for name in ("batched", "one_by_one", "refused"):
        runs[name] = config(tiny_data, tmp_path / name, grad_clip=clip)
        with monkeypatch.context() as m:
            interrupt_at(m, 15)                   # checkpoints at step 10, killed at 15
            with pytest.raises(KeyboardInterrupt):
                ensemble.train_members(runs[name], 2, batched=True, quiet=True)
        for i in range(2):
            member = os.path.join(runs[name].out_dir, f"member_{i}")
            assert torch.load(os.path.join(member, "ckpt.pt"), weights_only=True)["step"] == 10
            assert not os.path.exists(os.path.join(member, "summary.json"))
    # both members continue from step 10 as one batched model (the optimizer states stacked again)
    ensemble.train_members(runs["batched"], 2, batched=True, quiet=True)
    assert_same_members(runs["batched"].out_dir, separate(clip))
    # a member's checkpoint is an ordinary one: train.py --resume finishes member 0 on its own, then
    # --batched skips it and finishes member 1 alone
    train.train(ensemble.member_config(runs["one_by_one"], 0), quiet=True)
    ensemble.train_members(runs["one_by_one"], 2, batched=True, quiet=True)
    assert_same_members(runs["one_by_one"].out_dir, separate(clip), finished_plainly=(0,))
    # members at different steps cannot step together
    os.remove(os.path.join(runs["refused"].out_dir, "member_1", "ckpt.pt"))
    with pytest.raises(train.ConfigError, match="stand at steps"):
        ensemble.train_members(runs["refused"], 2, batched=True, quiet=True)
    # nor continue in another dtype (--dtype auto on a machine that resolves it to bf16): refused
    # before a bf16 step is taken on fp32 checkpoints
    monkeypatch.setattr(train, "resolve_device", lambda cfg, local_rank=0, run_flops=None:
                        (torch.device("cpu"), torch.bfloat16, False))
    with pytest.raises(train.ConfigError, match="trained in float32"):
        ensemble.train_members(runs["refused"], 2, batched=True, quiet=True)
    assert torch.load(os.path.join(runs["refused"].out_dir, "member_0", "ckpt.pt"), weights_only=True)["step"] == 10
