"""The trainer: exact epochs, DDP equivalence, resume after SIGKILL, bad input, the loss falls."""
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import data
import train
from train import EpochStream, TrainConfig, lr_at

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run_train(*args, timeout=300):
    return subprocess.run([sys.executable, os.path.join(REPO, "train.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=ENV, cwd=REPO)


def small_flags(data, out, **kw):
    flags = dict(dataset=data, out_dir=out, model="tiny-120k", train_tokens=8192, seq_len=32,
                 batch_size=8, epochs=3, lr=3e-3, wd=0.5, evals=3)
    flags.update(kw)
    return [f"--{k}={v}" for k, v in flags.items()]


# ---------------------------------------------------------------------------- data order

def test_every_epoch_visits_each_sequence_exactly_once_and_ranks_are_disjoint():
    n, B, world, accum = 40, 8, 2, 2
    stream = EpochStream(n, data_seed=5)
    seen = []
    for step in range(3 * n // B):          # three epochs
        per_rank = [stream.micro_indices(step, B, r, world, accum) for r in range(world)]
        flat = [np.concatenate(p) for p in per_rank]
        assert not set(flat[0]) & set(flat[1])                       # disjoint shards within a step
        assert sorted(np.concatenate(flat)) == sorted(stream.indices(step * B, B))
        seen.append(np.concatenate(flat))
    seen = np.concatenate(seen).reshape(3, n)
    for epoch in seen:
        assert sorted(epoch) == list(range(n))                       # each sequence exactly once
    assert not np.array_equal(stream.perm(0), stream.perm(1))        # a fresh order every epoch
    assert np.array_equal(EpochStream(n, 5).perm(1), stream.perm(1))  # reproducible from (seed, epoch)
    assert not np.array_equal(EpochStream(n, 6).perm(1), stream.perm(1))


def test_lr_warms_up_then_decays_to_zero():
    steps, warm, peak = 100, 5, 1e-3
    lrs = [lr_at(s, steps, warm, peak) for s in range(steps)]
    assert lrs[0] == pytest.approx(peak / warm) and lrs[warm - 1] == pytest.approx(peak)
    assert all(a >= b for a, b in zip(lrs[warm:], lrs[warm + 1:]))
    assert lrs[-1] < 1e-3 * peak


# ---------------------------------------------------------------------------- training

def test_loss_falls_on_the_synthetic_source(tiny_data, tmp_path):
    s = train.train(TrainConfig(dataset=tiny_data,
                                out_dir=str(tmp_path / "r"), model="tiny-120k", train_tokens=16384,
                                seq_len=32, batch_size=16, epochs=4, lr=1e-2, wd=0.1, evals=4), quiet=True)
    hist = [h["val_loss"] for h in s["history"]]
    assert hist[-1] < hist[0] and s["val_loss"] < math.log(65) - 1.0
    assert s["limits"]["entropy"] < s["limits"]["bayes"] < s["val_loss"]     # nothing beats Bayes
    for key in ("recipe", "tokenizer", "vocab", "N", "N_nonembed", "D", "epochs", "lr", "wd", "batch_size",
                "seq_len", "seed", "data_seed", "steps", "val_loss", "train_loss", "wall_s", "hardware"):
        assert key in s
    assert json.load(open(tmp_path / "r" / "summary.json"))["val_loss"] == s["val_loss"]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path):
    calls = {"n": 0}

    def poisoned(model, x, y):
        calls["n"] += 1
        loss = model(x, y)[1]
        return loss * float("nan") if calls["n"] > 6 else loss

    cfg = TrainConfig(dataset=tiny_data, out_dir=str(tmp_path / "r"), model="tiny-120k", train_tokens=8192,
                      seq_len=32, batch_size=8, epochs=1, ckpt_every=3, log_every=1)
    with pytest.raises(FloatingPointError, match="last good checkpoint"):
        train.train(cfg, loss_fn=poisoned, quiet=True)
    ckpt = torch.load(tmp_path / "r" / "ckpt.pt", weights_only=True)
    assert ckpt["step"] == 6 and all(torch.isfinite(t).all() for t in ckpt["model"].values())


def test_resume_after_sigkill_ends_with_the_same_weights(tiny_data, tmp_path):
    flags = small_flags(tiny_data, tmp_path / "full", epochs=6)
    assert run_train(*flags).returncode == 0
    killed = small_flags(tiny_data, tmp_path / "killed", epochs=6) + ["--ckpt_every=2", "--log_every=1"]
    p = subprocess.Popen([sys.executable, "train.py", *killed], cwd=REPO, env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / "killed" / "log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 7):
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (tmp_path / "killed" / "summary.json").exists()          # it really died mid-run
    r = run_train(*killed, "--resume")
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stdout
    a = torch.load(tmp_path / "full" / "ckpt.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "killed" / "ckpt.pt", weights_only=True)["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert steps == sorted(set(steps))          # lines logged after the checkpoint were redone, not repeated


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("compiled", [False, True])
def test_two_process_ddp_reaches_the_same_loss_as_one_process(tiny_data, tmp_path, compiled):
    # micro-batch 2: each rank accumulates 2 micro-steps, syncing gradients only on the last. Compiled:
    # DDP wrapped first, then compiled (aot_eager: the same graphs as inductor, traced quickly)
    one = run_train(*small_flags(tiny_data, tmp_path / "one", micro_batch=2))
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          f"--master_port={free_port()}", "train.py",
                          *small_flags(tiny_data, tmp_path / "two", micro_batch=2), "--device=cpu",
                          f"--compile={str(compiled).lower()}"],
                         capture_output=True, text=True, timeout=300, cwd=REPO,
                         env={**ENV, "ICGPT_COMPILE_BACKEND": "aot_eager"})
    assert two.returncode == 0, two.stderr[-2000:]
    s1 = json.load(open(tmp_path / "one" / "summary.json"))
    s2 = json.load(open(tmp_path / "two" / "summary.json"))
    assert s2["world"] == 2 and s1["world"] == 1 and s2["compile"] is compiled
    assert s1["val_loss"] == pytest.approx(s2["val_loss"], abs=1e-4)
    assert s1["train_loss"] == pytest.approx(s2["train_loss"], abs=1e-4)
    a = torch.load(tmp_path / "one" / "ckpt.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "two" / "ckpt.pt", weights_only=True)["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)


# ---------------------------------------------------------------------------- bad input

def assert_one_line_error(r, *words):
    assert r.returncode == 2, (r.returncode, r.stderr[-500:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    for w in words:
        assert w in lines[0], lines[0]


@pytest.mark.parametrize("flags,words", [
    (["--dataset=no_such_dataset"], ["no_such_dataset"]),
    (["--no_such_flag=1"], ["--no_such_flag"]),
    (["--wd", "-1"], ["--wd"]),
    (["--epochs=0"], ["--epochs"]),
    (["--model=huge"], ["--model"]),
    (["--device=cuda:7"] if not torch.cuda.is_available() else ["--device=tpu"], ["--device"]),
])
def test_bad_flags_give_one_line_errors(tmp_path, flags, words):
    assert_one_line_error(run_train(*flags, f"--out_dir={tmp_path / 'x'}"), *words)
    assert not (tmp_path / "x" / "ckpt.pt").exists()


def test_mix_data_needs_distills_batch_source(tiny_data, tmp_path):
    # the teacher mix lives in distill.py (MixedBatches); train.py alone refuses it in one line
    r = run_train(*small_flags(tiny_data, tmp_path / "x"), f"--mix_data={tiny_data}", "--mix_weight=0.5")
    assert_one_line_error(r, "--mix_data", "distill.py")
    assert not (tmp_path / "x").exists()


def test_help_shows_each_flags_meaning_default_and_range():
    out = subprocess.run([sys.executable, "train.py", "-h"], capture_output=True, text=True, cwd=REPO).stdout
    flat = " ".join(out.split())
    assert "--lr LR peak learning rate (warmup, then cosine to 0) (range > 0) (default: 0.003)" in flat
    assert "--beta2 BETA2 AdamW beta2 (range [0, 1)) (default: 0.95)" in flat
    for f in train.dataclasses.fields(TrainConfig):        # every field is a flag with its own help line
        assert f"--{f.name}" in out and f.metadata["help"].split()[0] in flat


def test_data_budget_larger_than_the_data_is_refused(tiny_data, tmp_path):
    assert_one_line_error(run_train(*small_flags(tiny_data, tmp_path / "x", train_tokens=10**8)),
                          "--train_tokens")


def test_an_existing_run_is_not_overwritten_and_a_corrupt_checkpoint_is_refused(tiny_data, tmp_path):
    out = tmp_path / "r"
    os.makedirs(out)
    (out / "ckpt.pt").write_bytes(b"not a checkpoint")
    assert_one_line_error(run_train(*small_flags(tiny_data, out)), "--resume")
    assert_one_line_error(run_train(*small_flags(tiny_data, out), "--resume"), "unreadable")
    assert (out / "ckpt.pt").read_bytes() == b"not a checkpoint"


def test_a_corrupt_shard_is_refused(tmp_path):
    from data import shards
    shards.write_shard(str(tmp_path / "fw_train_000.bin"), np.arange(5000, dtype=np.uint16))
    shards.write_shard(str(tmp_path / "fw_val_000.bin"), np.arange(5000, dtype=np.uint16))
    raw = bytearray((tmp_path / "fw_val_000.bin").read_bytes())
    raw[0] = 0                                           # break the magic number
    (tmp_path / "fw_val_000.bin").write_bytes(bytes(raw))
    assert_one_line_error(run_train(f"--dataset={tmp_path}", f"--out_dir={tmp_path / 'x'}"), "fw_val_000.bin")


def test_a_finished_run_without_its_checkpoint_is_not_overwritten(tiny_data, tmp_path):
    out = tmp_path / "r"
    assert run_train(*small_flags(tiny_data, out)).returncode == 0
    os.remove(out / "ckpt.pt")                      # users delete checkpoints to save disk
    before = (out / "summary.json").read_bytes()
    assert_one_line_error(run_train(*small_flags(tiny_data, out, epochs=2)), "already holds a run")
    assert_one_line_error(run_train(*small_flags(tiny_data, out, epochs=2), "--resume"), "finished run")
    assert (out / "summary.json").read_bytes() == before


# ---------------------------------------------------------------------------- dtype and compile on a CPU

def test_cpu_auto_dtype_is_bf16_only_with_native_support_and_compile_only_for_long_runs(monkeypatch):
    cfg = TrainConfig(device="cpu")
    monkeypatch.setattr(train, "cpu_has_native_bf16", lambda: False)
    assert train.resolve_device(cfg)[1] == torch.float32          # emulated bf16 is 6-14x slower
    monkeypatch.setattr(train, "cpu_has_native_bf16", lambda: True)
    assert train.resolve_device(cfg)[1] == torch.bfloat16
    assert train.resolve_device(TrainConfig(device="cpu", dtype="float32"))[1] == torch.float32
    short, long = train.CPU_COMPILE_MIN_FLOPS / 10, train.CPU_COMPILE_MIN_FLOPS
    assert train.resolve_device(cfg)[2] is False                    # unknown length: eager
    assert train.resolve_device(cfg, run_flops=short)[2] is False
    assert train.resolve_device(cfg, run_flops=long)[2] is True
    assert train.resolve_device(TrainConfig(device="cpu", compile="false"), run_flops=long)[2] is False


def test_a_run_records_dtype_compile_torch_and_commit_and_resume_refuses_another_dtype(tiny_data, tmp_path):
    out = str(tmp_path / "run")
    r = run_train(*small_flags(tiny_data, out, epochs=1, dtype="auto"))
    assert r.returncode == 0, r.stderr
    with open(os.path.join(out, "summary.json")) as f:
        s = json.load(f)
    with open(os.path.join(out, "config.json")) as f:
        c = json.load(f)
    here = str(train.resolve_device(TrainConfig(device="cpu"))[1]).replace("torch.", "")
    other = "bfloat16" if here == "float32" else "float32"
    assert (s["dtype"], s["compile"], s["torch"]) == (here, False, torch.__version__)
    assert s["git"] == c["git"] and s["git"] != "" and c["resolved_dtype"] == here
    assert s["data_fingerprint"] == data.meta_fingerprint(data.load_dataset(tiny_data).meta)   # what it read
    # the same flags on a machine where --dtype auto resolves otherwise
    os.remove(os.path.join(out, "summary.json"))                    # killed before the end
    ckpt = torch.load(os.path.join(out, "ckpt.pt"), weights_only=True)
    ckpt["step"], ckpt["dtype"] = 1, other
    torch.save(ckpt, os.path.join(out, "ckpt.pt"))
    r = run_train(*small_flags(tiny_data, out, epochs=1, dtype="auto"), "--resume")
    assert r.returncode == 2 and f"was trained in {other}" in r.stderr and f"--dtype {other}" in r.stderr


# ---------------------------------------------------------------------------- micro-batch

def test_a_run_at_micro_batch_2_equals_one_at_micro_batch_8(tiny_data, tmp_path):
    runs = {}
    for micro in (2, "auto"):      # auto on a CPU: the whole batch of 8
        cfg = TrainConfig(dataset=tiny_data, out_dir=str(tmp_path / str(micro)), model="tiny-120k",
                          train_tokens=4096, seq_len=32, batch_size=8, micro_batch=micro, epochs=1, evals=1)
        runs[micro] = train.train(cfg, quiet=True)
        with open(tmp_path / str(micro) / "config.json") as f:
            c = json.load(f)
        assert (c["micro_batch"], c["grad_accum"]) == ((2, 4) if micro == 2 else (8, 1))   # recorded
    assert runs[2]["val_loss"] == pytest.approx(runs["auto"]["val_loss"], abs=1e-5)
    a = torch.load(tmp_path / "2" / "ckpt.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "auto" / "ckpt.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=0, msg=k)


def test_micro_batch_auto_halves_on_out_of_memory_and_stops_with_one_line_when_nothing_fits(capsys):
    tried = []

    def probe(m):                  # a device where 3 sequences fit
        tried.append(m)
        if m > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (mocked)")
        return None

    assert train.choose_micro_batch([1, 2, 3, 4, 6, 12], probe)[0] == 3 and tried == [12, 6, 3]
    m, why = train.choose_micro_batch([1, 2, 4, 8], lambda m: None if m <= 2 else f"needs {m} GiB")
    assert m == 2 and "8: needs 8 GiB" in why and "2 fits" in why

    def nothing_fits(m):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (mocked)")

    with pytest.raises(SystemExit) as e:
        train.run_cli(lambda: train.choose_micro_batch([1, 2, 4], nothing_fits))
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "not even a micro-batch of 1 sequence fits" in err[0]


def test_micro_batch_flag_takes_auto_or_a_number(tmp_path):
    assert_one_line_error(run_train("--micro_batch=lots", f"--out_dir={tmp_path / 'x'}"), "--micro_batch")
    assert train.fixed_micro_batch("auto") is None and train.fixed_micro_batch(0) is None
    assert train.fixed_micro_batch("4") == 4 == train.fixed_micro_batch(4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the memory probe runs on CUDA only")
def test_micro_batch_auto_probes_the_gpu_and_records_its_choice(tiny_data, tmp_path):
    cfg = TrainConfig(dataset=tiny_data, out_dir=str(tmp_path / "r"), model="tiny-120k", train_tokens=4096,
                      seq_len=32, batch_size=8, epochs=1, evals=1, device="cuda", compile="false")
    train.train(cfg, quiet=True)
    with open(tmp_path / "r" / "config.json") as f:
        c = json.load(f)
    assert c["micro_batch"] == 8 and "fits" in c["micro_batch_why"]       # 8 tiny sequences fit any GPU
