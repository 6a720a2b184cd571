"""sweep.py's cpt preset end to end at a toy size: base, continued runs from it, the ensemble, the report."""
import json
import os

import pytest

import sweep
import train

pytestmark = pytest.mark.usefixtures("one_thread")

TOY = dict(
    dataset="data_toy_domain", prepare=None,
    source=dict(V=32, k=1, s=4, alpha=0.5, n_train=10_000, n_val=2_048, seed=7, shift=0.5, shift_seed=11),
    base_source=dict(V=32, k=1, s=4, alpha=0.5, n_train=12_000, n_val=2_048, seed=7),
    base=dict(model="tiny-67k", D=4_096, epochs=1, lr=1e-2, wd=0.1),
    D=2_048, data_budgets=[4_096, 8_192], seq_len=32, batch_size=8, val_tokens=1_024,   # fit.py reads D < 1000 as billions
    models=["tiny-67k"], epochs=[1, 2], lr=[1e-2], wd=[0.1, 0.8],
    reg_start=dict(epochs=2, lr=1e-2, wd=0.8), K=2, max_moves=1, cpt=True)


def test_cpt_preset_continues_from_one_base_and_reports_a_multiplier(tmp_path, monkeypatch):
    monkeypatch.setitem(sweep.PRESETS, "cpt_toy", TOY)
    runs, out = tmp_path / "runs", tmp_path / "report"
    sweep.main(["--preset", "cpt_toy", "--runs_dir", str(runs), "--out", str(out)])
    points = [json.loads(line) for line in open(out / "points.jsonl")]
    by = {}
    for p in points:
        by.setdefault(p["recipe"], []).append(p)
    base = [d for d in os.listdir(runs) if d.startswith("base_")]
    assert len(base) == 1 and json.load(open(runs / base[0] / "summary.json"))["dataset"].endswith("data_cpt_base")
    assert len(by["standard"]) == 3 and all(any(sweep.at_budget(p["D"], B, 32) for p in by["standard"])
                                            for B in (2_048, 4_096, 8_192))         # one pass at every budget
    assert all(p["epochs"] == 1 and p["wd"] == 0.1 for p in by["standard"])
    # every continued run starts from the base and is trained on the domain source
    continued = [json.load(open(runs / "continued" / d / "summary.json")) for d in os.listdir(runs / "continued")
                 if (runs / "continued" / d / "summary.json").exists()]
    assert continued and all(s["init_from"] == str(runs / base[0]) for s in continued)
    assert all(s["dataset"].endswith("data_toy_domain") for s in continued)
    assert by["base before CPT"][0]["steps"] == 0
    ens = by["cpt ensemble K=2"][0]
    assert ens["val_loss"] < sum(ens["member_losses"]) / 2                        # averaging helps
    assert by["standard"][0]["val_loss"] < by["base before CPT"][0]["val_loss"]   # continuing helps
    fits = json.load(open(out / "fits.json"))
    assert fits["data_laws"] and {e["recipe"].split(" [")[0] for e in fits["efficiency"]} >= {"cpt tuned", "cpt ensemble K=2"}


def test_cpt_dry_run_plans_without_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sweep.PRESETS, "cpt_toy", TOY)
    sweep.main(["--preset", "cpt_toy", "--runs_dir", str(tmp_path / "runs"), "--dry_run"])
    text = capsys.readouterr().out
    assert "runs to train" in text and not (tmp_path / "runs" / "continued").exists()


def test_a_changed_generated_source_is_refused_not_silently_reused(tmp_path):
    path = str(tmp_path / "runs" / "data_src")
    params = dict(V=16, k=1, s=4, alpha=0.5, n_train=2_000, n_val=512, seed=3)
    assert sweep.generate_once(path, params) == sweep.generate_once(path, params) == path   # made, then reused
    with pytest.raises(train.ConfigError, match="other parameters"):
        sweep.generate_once(path, {**params, "shift": 0.5, "shift_seed": 1})    # the preset changed: refused
