"""sample.py prints text from a run and from an ensemble of runs."""
import os
import subprocess
import sys

import train
from train import TrainConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_sample_prints_tokens_from_one_run_and_from_an_ensemble(tiny_data, tmp_path):
    runs = []
    for seed in (0, 1):
        cfg = TrainConfig(dataset=tiny_data, out_dir=str(tmp_path / f"r{seed}"), model="tiny-120k",
                          train_tokens=4096, seq_len=32, batch_size=8, epochs=1, seed=seed, evals=1)
        train.train(cfg, quiet=True)
        runs.append(cfg.out_dir)
    for args in (runs[:1], runs + ["--combine", "probs"]):
        r = subprocess.run([sys.executable, "sample.py", *args, "--tokens", "20", "--samples", "2"],
                           capture_output=True, text=True, cwd=REPO, timeout=120,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert r.returncode == 0, r.stderr
        texts = [t for t in r.stdout.split("-" * 40) if t.strip()]
        assert len(texts) == 2
        # the synthetic tokenizer prints space-separated symbol ids below the vocab size
        ids = [int(w) for w in texts[0].split() if w.isdigit()]
        assert len(ids) >= 15 and max(ids) < 65


def test_sample_refuses_a_missing_run(tmp_path):
    r = subprocess.run([sys.executable, "sample.py", str(tmp_path / "nope")], capture_output=True, text=True,
                       cwd=REPO, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("error:") and len(r.stderr.strip().splitlines()) == 1
