"""Reliability (issue 16): every bad number is refused in one line, a diverged run keeps a checkpoint its
printed advice restarts, one process per run folder, a clean log after a crash, SIGTERM saves."""
import dataclasses
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import train
from test_train import ENV, REPO, assert_one_line_error, free_port, run_train, small_flags
from train import ConfigError, TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def literally(command):
    """Run a printed 'python ...' / 'torchrun ...' command word for word (python = this interpreter)."""
    argv = shlex.split(command)
    if argv[0] == "python":
        argv[0] = sys.executable
    elif argv[0] == "torchrun":
        argv[:1] = [sys.executable, "-m", "torch.distributed.run", f"--master_port={free_port()}"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, env=ENV, cwd=REPO)


def wait_for_lines(path, n, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never reached {n} lines (exit {proc.poll()})")


def weights(run):
    return torch.load(os.path.join(run, "ckpt.pt"), weights_only=True)["model"]


# ---------------------------------------------------------------------------- 2. numbers

def test_every_numeric_train_flag_has_a_range_beside_its_default():
    numeric = {f.name for f in dataclasses.fields(TrainConfig) if f.type in (int, float)}
    assert numeric == set(train.RANGES)
    for name, bad in (("lr", math.nan), ("epochs", math.nan), ("wd", math.nan), ("beta2", 1.5),
                      ("ckpt_every", -3), ("warmup", 1.0), ("grad_clip", math.inf), ("mix_weight", 1.0)):
        with pytest.raises(ConfigError, match=f"--{name} must be"):        # the Python API refuses it too
            train.validate(TrainConfig(**{name: bad}))


@pytest.mark.parametrize("module,argv,flag", [
    ("train", ["--lr", "nan"], "--lr"),
    ("train", ["--epochs=nan"], "--epochs"),
    ("train", ["--beta2", "1.5"], "--beta2"),
    ("train", ["--ckpt_every", "-3"], "--ckpt_every"),
    ("train", ["--wd", "nan"], "--wd"),
    ("sample", ["run", "--temperature", "-1"], "--temperature"),
    ("sample", ["run", "--temperature", "nan"], "--temperature"),
    ("report", ["x.jsonl", "--n_boot", "-1"], "--n_boot"),
    ("distill", ["--teacher", "t", "--alpha", "nan"], "--alpha"),
    ("distill", ["--teacher", "t", "--lr", "inf"], "--lr"),
    ("ensemble", ["--k", "-1"], "--k"),
    ("ensemble", ["--k", "2", "--epochs", "nan"], "--epochs"),
    ("sweep", ["--tflops", "nan"], "--tflops"),
    ("data.prepare", ["x", "--val_fraction", "nan"], "--val_fraction"),
    ("data.synthetic", ["--alpha", "nan"], "--alpha"),
])
def test_a_number_out_of_range_is_one_line_naming_flag_range_and_value(capsys, module, argv, flag):
    import importlib
    with pytest.raises(SystemExit) as e:
        importlib.import_module(module).main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1, err
    assert err[0].startswith("error: " + flag + " must be") and "(got " in err[0], err[0]


# ---------------------------------------------------------------------------- 3. one line, not a traceback

def test_corrupt_meta_and_out_of_vocab_shards_and_bad_out_dirs_are_one_line(tiny_data, tmp_path):
    from data import shards
    bad = tmp_path / "bad"
    os.makedirs(bad)
    for f in ("train.bin", "val.bin"):
        (bad / f).write_bytes(open(os.path.join(tiny_data, f), "rb").read())
    (bad / "meta.json").write_text('{"name": "bad", "vocab_size": 65,')          # cut off
    assert_one_line_error(run_train(*small_flags(str(bad), tmp_path / "a")), "meta.json")
    sh = tmp_path / "sh"
    os.makedirs(sh)
    shards.write_shard(str(sh / "x_train_000.bin"), np.arange(3000) % 100)
    shards.write_shard(str(sh / "x_val_000.bin"), np.full(3000, 60000))          # >= GPT-2's 50,257
    assert_one_line_error(run_train(f"--dataset={sh}", f"--out_dir={tmp_path / 'b'}"), "x_val_000.bin", "60000")
    (tmp_path / "file").write_text("precious")
    assert_one_line_error(run_train(*small_flags(tiny_data, tmp_path / "file")), "is a file")
    assert (tmp_path / "file").read_text() == "precious"
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()     # refused runs leave nothing
    if os.geteuid() != 0:                                                       # root writes anywhere
        ro = tmp_path / "ro"
        os.makedirs(ro)
        os.chmod(ro, 0o555)
        assert_one_line_error(run_train(*small_flags(tiny_data, ro / "run")), "--out_dir")


def test_fit_bad_flag_and_malformed_jsonl_line_are_one_line(tmp_path, capsys):
    import report
    with pytest.raises(SystemExit) as e:
        report.main(["--no_such_flag"])
    assert e.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
    pts = tmp_path / "p.jsonl"
    pts.write_text('{"N": 1000, "val_loss": 3.0}\n{"N": 2000, "val_loss": 2.9}\n{"N": 3000, val_loss\n')
    assert report.main([str(pts), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "line 3" in err[0], err


def test_sweep_bad_dataset_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "sweep.py", "--preset", "smoke", "--dataset", "nosuch",
                        "--runs_dir", str(tmp_path / "runs")], capture_output=True, text=True, cwd=REPO, env=ENV,
                       timeout=300)
    assert_one_line_error(r, "nosuch")
    assert not (tmp_path / "runs").exists()                         # nothing left behind


def test_sweep_missing_corpus_is_one_line(tmp_path):
    # mini prepares Shakespeare from $ICGPT_SHARED when its dataset is missing: point both nowhere
    r = subprocess.run([sys.executable, "sweep.py", "--preset", "mini", "--dataset", str(tmp_path / "none"),
                        "--runs_dir", str(tmp_path / "runs")], capture_output=True, text=True, cwd=REPO,
                       env={**ENV, "ICGPT_SHARED": str(tmp_path / "nothing")}, timeout=300)
    assert_one_line_error(r, "Shakespeare")
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------- 1. divergence

def test_a_diverged_run_keeps_a_finite_checkpoint_and_its_printed_advice_finishes_it(tiny_data, tmp_path):
    calls = {"n": 0}

    def poisoned(model, x, y):        # a loss spike: NaN from step 8 on, after a healthy start
        calls["n"] += 1
        loss = model(x, y)[1]
        return loss * float("nan") if calls["n"] > 7 else loss

    out = tmp_path / "r"
    cfg = TrainConfig(dataset=tiny_data, out_dir=str(out), model="tiny-120k", train_tokens=8192, seq_len=32,
                      batch_size=8, epochs=1, ckpt_every=3, log_every=1)
    with pytest.raises(FloatingPointError) as e:
        train.train(cfg, loss_fn=poisoned, quiet=True)
    line = str(e.value)
    assert "last good checkpoint (step 6" in line and "restart from it with a lower learning rate: " in line, line
    kept = torch.load(out / "ckpt.pt", weights_only=True)
    assert kept["step"] == 6 and all(torch.isfinite(t).all() for t in kept["model"].values())
    advice = line.split("lower learning rate: ")[1]
    # only a lower lr is allowed, and nothing else may change
    assert_one_line_error(literally(advice + " --lr=0.01"), "lower --lr")
    assert_one_line_error(literally(advice + " --wd=0.3"), "wd")
    done = literally(advice)                                                       # word for word
    assert done.returncode == 0, done.stderr[-2000:]
    assert "restarting after divergence" in done.stdout
    s = json.load(open(out / "summary.json"))
    c = json.load(open(out / "config.json"))
    assert s["restarts"] == c["restarts"] == [{"step": 6, "lr_before": 3e-3, "lr": 1e-3, "diverged_at": 8}]
    assert not os.path.exists(out / "diverged.json") and s["val_loss"] < math.log(65)
    steps = [json.loads(x)["step"] for x in open(out / "log.jsonl")]
    assert steps == list(range(1, s["steps"] + 1))                                 # one line per logged step
    # the cosine continues from the checkpoint's step at the new peak: no second warmup
    lrs = {json.loads(x)["step"]: json.loads(x)["lr"] for x in open(out / "log.jsonl")}
    assert lrs[7] == pytest.approx(train.lr_at(6, s["steps"], c["warmup_steps"], 1e-3))
    # a plain config change of a run that did not diverge is still refused
    assert_one_line_error(literally(advice.replace("--lr 0.001", "--lr 0.0003")), "different lr")


@pytest.mark.parametrize("flags", [
    dict(lr=1e30, ckpt_every=1),                # weights of 1e30 after one step: the loss on them is not finite
    dict(lr=100, warmup=0.5, ckpt_every=2),     # finite checkpoints at losses of 100s, then NaN: none worth keeping
])
def test_a_blown_up_run_keeps_no_checkpoint_and_the_advice_reruns_it(tiny_data, tmp_path, flags):
    out = tmp_path / "r"
    r = run_train(*small_flags(tiny_data, out, epochs=2, **flags), "--log_every=1")
    assert r.returncode == 3, r.stderr[-2000:]
    line = r.stderr.strip().splitlines()[-1]
    assert "no checkpoint was written" in line and not (out / "ckpt.pt").exists(), line
    done = literally(line.split("lower learning rate: ")[1])
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.load(open(out / "summary.json"))["lr"] == 3e-3


def test_check_divergence_flags_blow_ups_but_not_honest_overfitting(tmp_path):
    log = tmp_path / "log.jsonl"

    def write(train_losses):
        log.write_text("".join(json.dumps({"step": i + 1, "train_loss": t}) + "\n" for i, t in enumerate(train_losses)))
    write([4.0, 3.0, 2.0])
    assert train.check_divergence(str(log), 5.0, 64) is not None                   # above log(64) = 4.16
    assert train.check_divergence(str(log), 3.0, 64) is None                       # overfitting: val up, train down
    write([4.0, 3.0, 4.5])
    assert "first log" in train.check_divergence(str(log), 3.0, 64)


def test_fit_shows_the_diverged_flag_and_keeps_the_point(tmp_path, capsys):
    import report
    pts = tmp_path / "p.jsonl"
    rows = [{"N": n, "val_loss": 3 + 100 / n, "recipe": "r", "D": 1e6, "run": f"run{n}"} for n in (1e3, 2e3, 4e3, 8e3)]
    rows[1]["diverged"] = True
    pts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert report.main([str(pts), "--out", str(tmp_path / "o"), "--n_boot", "0"]) == 0
    assert "flagged diverged" in capsys.readouterr().out
    js = json.load(open(tmp_path / "o" / "fits.json"))
    assert js["diverged"] == ["run2000.0"] and js["fits"][0]["n"] == 4                # shown, not removed


# ---------------------------------------------------------------------------- 4. the lock

def test_one_process_per_run_folder_and_a_stale_lock_is_taken_over(tiny_data, tmp_path):
    out = tmp_path / "r"
    release = train.lock_run_dir(str(out))
    with pytest.raises(train.RunLocked, match=f"PID {os.getpid()}"):
        train.lock_run_dir(str(out))
    release()
    assert not (out / "lock").exists()
    # a real second train.py on a folder a running one holds: refused in one line naming the holder
    first = subprocess.Popen([sys.executable, "train.py", *small_flags(tiny_data, out, epochs=20), "--log_every=1"],
                             cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_lines(out / "log.jsonl", 1, first)
        second = run_train(*small_flags(tiny_data, out, seed=1), "--resume")
        assert_one_line_error(second, f"PID {first.pid}")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    notes = []                                      # the holder is gone: its lock is stale, taken over
    release = train.lock_run_dir(str(out), say=notes.append)
    assert len(notes) == 1 and "took over the stale lock" in notes[0] and f"PID {first.pid}" in notes[0]
    assert json.load(open(out / "lock"))["pid"] == os.getpid()
    release()
    assert not (out / "lock").exists()


def test_a_sweep_refuses_a_run_folder_another_process_holds(tmp_path):
    runs = tmp_path / "runs"
    held = runs / "tiny-120k_D4096_ep1_lr0.01_wd0.1_s0"          # the smoke sweep's first run
    os.makedirs(held)
    (held / "lock").write_text(json.dumps({"pid": os.getpid(), "host": train.platform.node()}))
    r = subprocess.run([sys.executable, "sweep.py", "--preset", "smoke", "--runs_dir", str(runs)],
                       capture_output=True, text=True, cwd=REPO, env=ENV, timeout=300)
    assert_one_line_error(r, f"PID {os.getpid()}")
    assert not (held / "ckpt.pt").exists()


# ---------------------------------------------------------------------------- 5. logs after an early crash

def test_a_rerun_after_a_kill_before_the_first_checkpoint_does_not_append_to_the_old_log(tiny_data, tmp_path):
    out = tmp_path / "r"
    flags = small_flags(tiny_data, out, epochs=2, evals=1) + ["--log_every=1"]      # one checkpoint, at the end
    p = subprocess.Popen([sys.executable, "train.py", *flags], cwd=REPO, env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_lines(out / "log.jsonl", 5, p)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (out / "ckpt.pt").exists()
    with open(out / "log.jsonl", "a") as f:
        f.write('{"step": 9, "tra')                                                   # torn by the kill
    r = run_train(*flags, "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    steps = [json.loads(x)["step"] for x in open(out / "log.jsonl")]
    assert steps == list(range(1, json.load(open(out / "summary.json"))["steps"] + 1))


# ---------------------------------------------------------------------------- 6. SIGTERM and Ctrl-C

@pytest.fixture(scope="module")
def uninterrupted(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "r"
    r = run_train(*small_flags(tiny_data, out, epochs=4))
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def test_sigterm_saves_a_checkpoint_and_the_printed_resume_ends_bit_identical(tiny_data, tmp_path, uninterrupted):
    out = tmp_path / "r"
    flags = small_flags(tiny_data, out, epochs=4) + ["--log_every=1"]   # logs every step; checkpoints 3 times
    p = subprocess.Popen([sys.executable, "train.py", *flags], cwd=REPO, env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_lines(out / "log.jsonl", 5, p)
    p.send_signal(signal.SIGTERM)
    err = p.communicate(timeout=120)[1]
    assert p.returncode == 128 + signal.SIGTERM, err[-2000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith("stopped by SIGTERM") and "resume with: " in line, line
    stopped = torch.load(out / "ckpt.pt", weights_only=True)["step"]
    assert 5 <= stopped < json.load(open(uninterrupted / "summary.json"))["steps"]
    assert not (out / "lock").exists() and not (out / "summary.json").exists()
    with open(out / "log.jsonl", "a") as f:
        f.write('{"step": 99, "tr')                                                   # a torn last line
    r = literally(line.split("resume with: ")[1])
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = weights(uninterrupted), weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)                                  # bit-identical
    steps = [json.loads(x)["step"] for x in open(out / "log.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == json.load(open(out / "summary.json"))["steps"]


def test_ctrl_c_also_stops_at_a_checkpoint(tiny_data, tmp_path):
    out = tmp_path / "r"
    p = subprocess.Popen([sys.executable, "train.py", *small_flags(tiny_data, out, epochs=4), "--log_every=1"],
                         cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_lines(out / "log.jsonl", 3, p)
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=120)[1]
    assert p.returncode == 128 + signal.SIGINT and "stopped by SIGINT" in err, err[-2000:]
    assert torch.load(out / "ckpt.pt", weights_only=True)["step"] >= 3


def _children(pid):
    """(pid, LOCAL_RANK) of the worker processes under a torchrun process."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                if ppid == pid:
                    env = open(f"/proc/{d}/environ", "rb").read().split(b"\0")
                    rank = next((e.split(b"=")[1] for e in env if e.startswith(b"LOCAL_RANK=")), None)
                    if rank is not None:
                        out.append((int(d), int(rank)))
            except OSError:
                continue
    return out


def test_sigterm_to_one_ddp_rank_stops_every_rank_at_one_step_and_resumes(tiny_data, tmp_path, uninterrupted):
    out = tmp_path / "two"
    flags = small_flags(tiny_data, out, epochs=4, micro_batch=4) + ["--log_every=4", "--device=cpu"]
    p = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          f"--master_port={free_port()}", "train.py", *flags], cwd=REPO, env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_lines(out / "log.jsonl", 2, p)
    ranks = dict((r, pid) for pid, r in _children(p.pid))
    os.kill(ranks[1], signal.SIGTERM)                      # only rank 1 hears it: rank 0 must stop with it
    err = p.communicate(timeout=120)[1]
    assert p.returncode != 0
    line = next(x for x in err.splitlines() if x.startswith("stopped by SIGTERM"))
    stopped = torch.load(out / "ckpt.pt", weights_only=True)["step"]
    logged = [json.loads(x)["step"] for x in open(out / "log.jsonl")]
    assert f"after step {stopped}/" in line and logged[-1] == stopped             # both at one log step, saved
    assert not (out / "summary.json").exists()
    r = literally(line.split("resume with: ")[1])
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.load(open(out / "summary.json"))["world"] == 2
    a, b = weights(uninterrupted), weights(out)
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)                  # = the 1-process run
