"""bench.py: its table shows eager fp32 beside the default, and the ensemble table does not inherit
paper-sized shapes from the main table."""
import sys

import pytest

import bench

pytestmark = pytest.mark.usefixtures("one_thread")   # see conftest.py


def run_bench(monkeypatch, capsys, *flags):
    monkeypatch.setattr(sys, "argv", ["bench.py", "--models", "tiny-67k", "--batch", "2", "--steps", "1",
                                      "--warmup", "1", "--no_sample", "--ensemble_k", "2", "--device", "cpu",
                                      "--compile", "false", *flags])
    monkeypatch.setattr(bench, "ENSEMBLE_SMALL", {"vocab": 65, "seq_len": 16, "batch": 2})   # small for the test
    bench.main()
    return capsys.readouterr().out


def test_bench_shows_eager_fp32_beside_the_default_and_keeps_the_ensemble_small(monkeypatch, capsys):
    out = run_bench(monkeypatch, capsys, "--vocab", "5000", "--seq_len", "16", "--dtype", "bfloat16",
                    "--ensemble", "tiny-67k")
    header = next(line for line in out.splitlines() if line.startswith("| model"))
    row = next(line for line in out.splitlines() if line.startswith("| tiny-67k"))
    assert header.split("|")[-3:-1] == [" eager fp32 train tok/s ", " default / eager fp32 "]
    assert row.split("|")[-2].strip().endswith("x")                     # a measured ratio, bf16 against fp32
    assert "ensemble table at its own small shape (vocab 65, T 16, batch 2)" in out
    assert "| ensemble K=2 |" in out


def test_bench_says_when_the_default_is_eager_fp32(monkeypatch, capsys):
    out = run_bench(monkeypatch, capsys, "--vocab", "65", "--seq_len", "16", "--dtype", "float32", "--ensemble", "")
    assert "1.00x (the default is eager fp32)" in out and "own small shape" not in out
