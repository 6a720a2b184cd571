"""sweep.py runs the whole pipeline (standard, regularized, ensembles, data budgets, distillation, fits)
and never trains the same config twice."""
import json
import os
import re
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def sweep(*args):
    return subprocess.run([sys.executable, "sweep.py", "--preset", "smoke", *args], capture_output=True,
                          text=True, cwd=REPO, env=ENV, timeout=600)


def test_smoke_sweep_runs_end_to_end_then_resumes_without_retraining(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "report"
    r = sweep("--runs_dir", str(runs), "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    for f in ("fits.json", "points.jsonl", "loss_vs_N.png", "loss_vs_K.png", "learning_curves.png",
              "headline.png", "findings.md"):
        assert (out / f).exists(), f
    points = [json.loads(line) for line in open(out / "points.jsonl")]
    recipes = {p["recipe"] for p in points}
    assert {"standard", "regularized", "ensemble", "distill", "self-distill"} <= recipes
    assert {p["D"] for p in points if p["recipe"] == "standard"} == {2016, 3040, 4064}   # three data budgets
    assert all(p["wd"] == 0.1 for p in points if p["recipe"] == "standard")
    assert {p["D"] for p in points if p["recipe"] == "regularized"} == {2016, 3040, 4064}   # searched at each D too:
    assert {p["D"] for p in points if p["recipe"] == "regularized" and p["wd"] != 0.1} == {2016, 3040, 4064}
    fits = json.load(open(out / "fits.json"))
    assert any(f["axis"] == "K" for f in fits["fits"]) and fits["joint"] and fits["data_laws"]
    summary = (out / "summary.md").read_text()                      # the source's known limits, per D
    assert "Bayes-optimal loss given D" in summary and "| 4,064 |" in summary
    # in the data's own unit and in parameters, not "tokens" and "billions" for a generated source
    assert "D = 4,096 symbols of" in summary and "| N (parameters) |" in summary and "(billions)" not in summary
    # the ensemble column names its members' setting and the other setting's largest-K loss
    assert re.search(r"\(\d+ ep, wd [\d.]+; \d+ ep, wd [\d.]+: \d\.\d{3}\)", summary), summary
    # stages in order of findings per core-hour: the students as soon as their teacher (tiny-120k's
    # ensemble) is scored, then the other budgets, and the other sizes' ensembles last
    assert r.stdout.index("ensdistill: val") < r.stdout.index("_D2048_") < r.stdout.index("ensemble  tiny-240k")
    trained = sorted(p.name for p in runs.iterdir() if (p / "summary.json").exists())
    stamps = {n: os.path.getmtime(runs / n / "summary.json") for n in trained}
    again = sweep("--runs_dir", str(runs), "--out", str(out))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "val " not in again.stdout.split("standard")[0]            # no run line: nothing retrained
    assert {n: os.path.getmtime(runs / n / "summary.json") for n in trained} == stamps
    assert sorted(p.name for p in runs.iterdir() if (p / "summary.json").exists()) == trained
    assert [json.loads(line) for line in open(out / "points.jsonl")] == points
    # every finished run and ensemble evaluation was kept in the report folder as it landed: with the
    # run folders gone (a fresh clone of committed results) nothing is retrained either
    kept = sorted(p.name for p in (out / "runs").iterdir())
    assert len(kept) == len(trained) + len([p for p in points if p["recipe"] == "ensemble"])
    shutil.rmtree(runs)
    third = sweep("--runs_dir", str(runs), "--out", str(out))
    assert third.returncode == 0, third.stderr[-3000:]
    assert "retraining" not in third.stdout and not re.search(r"min\] \S+: val ", third.stdout)
    assert not [p for p in runs.iterdir() if (p / "summary.json").exists()]
    assert [json.loads(line) for line in open(out / "points.jsonl")] == points


def test_dry_run_prints_the_plan_and_trains_nothing(tmp_path):
    r = sweep("--runs_dir", str(tmp_path / "runs"), "--dry_run")
    assert r.returncode == 0, r.stderr
    assert "runs to train" in r.stdout and "FLOPs" in r.stdout
    assert not (tmp_path / "runs").exists()


def test_grid_neighbours_step_once_per_axis_and_stop_at_edges_and_off_grid():
    sys.path.insert(0, REPO)
    from sweep import grid_neighbours
    grids = {"epochs": [1, 2, 4], "wd": [0.1, 0.8]}
    assert list(grid_neighbours(grids, {"epochs": 2, "wd": 0.1})) == [
        {"epochs": 1, "wd": 0.1}, {"epochs": 4, "wd": 0.1}, {"epochs": 2, "wd": 0.8}]
    assert list(grid_neighbours(grids, {"epochs": 3, "wd": 0.8})) == [{"epochs": 3, "wd": 0.1}]   # 3 is off the grid


def test_findings_table_judges_each_row_by_its_stated_criterion():
    sys.path.insert(0, REPO)
    import report

    def rows(losses):   # regularized: seed 0 searched two configs; seeds 1-2 fresh at the chosen one
        out = []
        for N, (l0, fresh) in losses.items():
            out += [dict(recipe="regularized", D=1e-4, N=N, seed=0, loss=l0, config=("8", "0.003", "1.6")),
                    dict(recipe="regularized", D=1e-4, N=N, seed=0, loss=l0 + 0.05, config=("8", "0.003", "0.1"))]
            out += [dict(recipe="regularized", D=1e-4, N=N, seed=s, loss=l, config=("8", "0.003", "1.6"))
                    for s, l in enumerate(fresh, 1)]
        return out
    js = dict(sigma_seed=0.01, fits=[], joint=[], efficiency=[])
    good = report.findings(rows({1e-4: (2.00, [2.02, 2.02]), 2e-4: (1.90, [1.95, 1.95]),
                                 4e-4: (1.80, [1.85, 1.85])}), [], js)
    one = report.findings(rows({1e-4: (2.00, [2.02, 2.02])}), [], js)      # one size searched: no verdict
    assert [l for l in one.splitlines() if "weight decay" in l][0].endswith("| not measured yet |")
    for finding in ("ensemble asymptote", "joint limit", "| distilled student", "self-distilled", "data efficiency",
                    "constant data multiplier"):       # every finding has its row, measured or not
        assert [l for l in one.splitlines() if finding in l][0].endswith("| not measured yet |"), finding
    line = [l for l in good.splitlines() if "monotonically" in l][0]
    assert line.endswith("| shown |") and "2.020" in line                  # fresh seeds, not seed 0's 2.00
    assert [l for l in good.splitlines() if "weight decay" in l][0].endswith("| shown |")
    # the same seed-0 search, but fresh seeds show the gap is within 2 sigma: not shown
    bad = report.findings(rows({1e-4: (2.00, [2.02, 2.02]), 2e-4: (1.90, [2.01, 2.01])}), [], js)
    assert [l for l in bad.splitlines() if "monotonically" in l][0].endswith("| not shown |")
    assert "lower loss buys downstream accuracy" in good and "not measured yet" in good
    # the constant-multiplier row says what each multiplier was read from, and judges by its rule
    eff = lambda m1, m2: dict(js, efficiency=[   # noqa: E731
        dict(recipe="regularized", D=5e-5, multiplier=m1, infinite=False, of="best run", warning="w"),
        dict(recipe="regularized", D=1e-4, multiplier=m2, infinite=False, of="asymptote", warning=None)])
    const = lambda j: [l for l in report.findings(rows({1e-4: (2.00, [2.02, 2.02])}), [], j).splitlines()  # noqa: E731
                       if "constant data multiplier" in l][0]
    assert "1.20x at 50,000 (best run), 1.30x at 100,000 (asymptote)" in const(eff(1.2, 1.3))
    assert const(eff(1.2, 1.3)).endswith("| shown |") and const(eff(1.2, 1.9)).endswith("| not shown |")
    # the continued pre-training row reads the cpt preset's fits.json when it has run
    cpt = {"efficiency": [{"recipe": "base before CPT [d/t]", "multiplier": 0.7, "warning": None},
                          {"recipe": "cpt tuned [d/t]", "multiplier": 7.0, "warning": None}]}
    row = lambda text: [l for l in text.splitlines() if "continued pre-training" in l][0]   # noqa: E731
    assert row(good).endswith("| not measured yet |")
    with_cpt = row(report.findings(rows({1e-4: (2.00, [2.02, 2.02])}), [], js, cpt))
    assert "cpt tuned 7.00x" in with_cpt and "base" not in with_cpt.split("|")[3] and with_cpt.endswith("| shown |")
    # the downstream row reads evaluate.py's results: shown only when the lower-loss run errs less by > 2 se
    def ev(loss, acc):
        t = {k: {"acc": acc, "acc_stderr": 0.01, "chance": c} for k, c in (("piqa", 0.5), ("sciq", 0.25), ("arc_easy", 0.25))}
        return {"val_loss": loss, "avg_error": 1 - acc, "tasks": t}
    down = lambda evals: [l for l in report.findings(rows({1e-4: (2.00, [2.02, 2.02])}), [], js, None, evals)  # noqa: E731
                          .splitlines() if "downstream" in l][0]
    assert down([ev(2.4, 0.40), ev(1.9, 0.45)]).endswith("| shown |")
    assert "avg error 0.600 at loss 2.400 -> 0.550 at 1.900" in down([ev(2.4, 0.40), ev(1.9, 0.45)])
    assert down([ev(2.4, 0.40), ev(1.9, 0.41)]).endswith("| not shown |")        # 0.01 < 2 se (0.0118)
    assert down([ev(2.4, 0.40)]).endswith("| not measured yet |")


def test_report_keeps_scored_runs_and_draws_the_downstream_figure(tmp_path):
    sys.path.insert(0, REPO)
    import sweep as sw
    runs, out = tmp_path / "runs", tmp_path / "report"
    s = sw.Sweep(sw.PRESETS["smoke"], "smoke", str(runs), results_dir=str(out))
    task = lambda acc, chance: {"acc": acc, "acc_norm": acc, "chance": chance, "n": 100}
    for i, (loss, acc) in enumerate([(2.0, 0.30), (1.8, 0.34)]):
        (runs / f"r{i}").mkdir(parents=True)
        ev = {"kind": "run", "val_loss": loss, "avg_error": 1 - acc, "tasks": {
            "piqa": task(acc, 0.5), "sciq": task(acc, 0.25), "arc_easy": task(acc, 0.25)}}
        json.dump(ev, open(runs / f"r{i}" / "eval.json", "w"))
    os.makedirs(out)
    sw.downstream(s, str(out))
    assert (out / "downstream.png").stat().st_size > 1000
    assert sorted(p.name for p in (out / "runs" / "eval").iterdir()) == ["r0.json", "r1.json"]


def test_fit_figures_name_the_unit_their_tokenizer_counts_in():
    sys.path.insert(0, REPO)
    import report
    assert report.unit_of(["regularized [shakespeare_byte/byte]", "D=262K tokens: E not identified"]) == "byte"
    assert report.unit_of(["best loss per D", "cpt tuned [runs/cpt/data_cpt_domain/synthetic]: 7.09x"]) == "symbol"
    assert report.unit_of(["standard [dclm/r50k_base], D=200M tokens"]) == "token"
    assert report.unit_of(["a [x/byte]", "b [y/synthetic]"]) == "token"           # a mix: the general word


def test_member_shift_doubles_epochs_past_the_grid_and_shards_share_the_probes_verdicts(tmp_path):
    sys.path.insert(0, REPO)
    import sweep as sw
    p = dict(sw.PRESETS["smoke"], member_probe=["tiny-120k", "tiny-240k"], member_settings=["x1", "shift"])
    s = sw.Sweep(p, "smoke", str(tmp_path / "runs"), results_dir=str(tmp_path / "out"))
    pt = dict(epochs=2, lr=1e-2, wd=0.8)                  # 2 is the smoke grid's last epoch count
    assert s.member_settings(pt) == {"x1": pt, "shift": dict(epochs=4, lr=1e-2, wd=0.4)}
    called = []

    def ensemble(m, pt):   # a scored ensemble, kept as sweep.ensemble keeps it; shifted members win at 240k only
        called.append((m, pt["epochs"]))
        shift = pt["epochs"] == 4
        E = 1.80 + (0.05 if m == "tiny-120k" else -0.05) * shift
        res = {"losses": {str(k): E + 0.4 / k for k in (1, 2, 3)}, "member_losses": [E + 0.4] * 3}
        s.keep(f"ensemble_{os.path.basename(s.config(m, seed=0, **pt).out_dir)}", res)
        return res
    s.ensemble = ensemble
    s.stage_ensembles(["tiny-530k"], {"tiny-530k": pt})    # no probe size here and no verdicts: wait
    assert called == [] and not (tmp_path / "out" / "member_probe_tiny-120k.json").exists()
    s.stage_ensembles(["tiny-120k"], {"tiny-120k": pt})    # a shard with one probe size: its verdict only
    assert set(called) == {("tiny-120k", 2), ("tiny-120k", 4)}
    v = json.loads((tmp_path / "out" / "member_probe_tiny-120k.json").read_text())
    assert v["x1"] < v["shift"] and v["model"] == "tiny-120k"
    called.clear()
    s.stage_ensembles(["tiny-530k"], {"tiny-530k": pt})    # still waiting for tiny-240k's verdict
    assert called == []
    s.stage_ensembles(["tiny-240k"], {"tiny-240k": pt})    # the other probe shard: shifted wins there
    called.clear()
    best = s.stage_ensembles(["tiny-530k"], {"tiny-530k": pt})
    assert called == [("tiny-530k", 4)] and list(best) == ["tiny-530k"]   # shifted: not unshifted at every size
    for c in s.members("tiny-530k", pt):                  # the unshifted members exist (the regularized seeds):
        s.keep(os.path.basename(c.out_dir), {"val_loss": 2.0})    # their ensemble is scored too, eval only
    first = s.members("tiny-530k", s.member_settings(pt)["shift"])[0]
    point = dict(dataset=s.dataset, seq_len=first.seq_len, batch_size=first.batch_size, dtype="float32")
    s.keep(os.path.basename(first.out_dir), dict(point, val_loss=1.9))    # a promising first shifted member
    called.clear()
    best = s.stage_ensembles(["tiny-530k"], {"tiny-530k": pt})
    assert called == [("tiny-530k", 2), ("tiny-530k", 4)] and best["tiny-530k"][2]["epochs"] == 4
    # a hopeless one: 3.0 less twice the probe's member-to-K->inf gain (0.4) is above the unshifted
    # K -> inf loss here (1.8): the shifted members stop after it, and the unshifted ensemble stands
    s.keep(os.path.basename(first.out_dir), dict(point, val_loss=3.0))
    os.remove(s.point_path(s.ensemble_name("tiny-530k", s.member_settings(pt)["shift"])))
    called.clear()
    best = s.stage_ensembles(["tiny-530k"], {"tiny-530k": pt})
    assert called == [("tiny-530k", 2)] and best["tiny-530k"][2]["epochs"] == 2
    v240 = json.loads((tmp_path / "out" / "member_probe_tiny-240k.json").read_text())
    (tmp_path / "out" / "member_probe_tiny-240k.json").write_text(json.dumps(dict(v240, x1=1.7, shift=1.9)))
    called.clear()
    s.stage_ensembles(["tiny-530k"], {"tiny-530k": pt})    # unshifted better at every probe size: unshifted
    assert called == [("tiny-530k", 2)]                     # (the shifted members were never trained)
    # a verdict whose ensemble points are gone is stale: read as missing, so the shard waits again
    os.remove(s.point_path(v["ensembles"][1]))
    assert s.read_verdict("tiny-120k") is None
    called.clear()
    s.stage_ensembles(["tiny-530k"], {"tiny-530k": pt})
    assert called == []
    # a dry run plans without writing a verdict
    dry = sw.Sweep(p, "smoke", str(tmp_path / "runs2"), dry_run=True, results_dir=str(tmp_path / "out2"))
    dry.ensemble = lambda m, pt: {"losses": {"1": 2.0, "2": 1.9, "3": 1.85}}
    dry.stage_ensembles(["tiny-120k", "tiny-240k"], {"tiny-120k": pt, "tiny-240k": pt})
    assert not (tmp_path / "out2").exists()


def test_a_shifted_member_past_the_grid_is_no_regularized_point(tmp_path):
    sys.path.insert(0, REPO)
    import sweep as sw
    s = sw.Sweep(sw.PRESETS["smoke"], "smoke", str(tmp_path / "runs"), results_dir=str(tmp_path / "out"))
    base = dict(dataset=s.dataset, D=4064, lr=0.01, N=1, val_loss=2.0, seed=0, model="tiny-120k")
    s.keep("on", dict(base, epochs=2, wd=0.8))
    s.keep("member", dict(base, epochs=4, wd=0.4, val_loss=1.5))     # 4 epochs: past the grid [1, 2]
    rows = sw.collect_points(s)
    assert [(r["epochs"], r["recipe"]) for r in rows] == [(2, "regularized")]


def test_summary_numbers_print_a_dash_where_fit_py_has_none():
    sys.path.insert(0, REPO)
    import sweep as sw
    assert sw.interval([1.234, 1.5], ".3f") == "[1.234, 1.500]"
    assert sw.interval([None, None], ".3f") == "-" and sw.interval([float("nan"), 1.0], ".3g") == "-"
    assert sw.number(None, ".3g") == "-" and sw.number(1.2345, ".3g") == "1.23"


def test_downstream_evals_are_this_reports_data_and_budget_once_each(tmp_path):
    sys.path.insert(0, REPO)
    import report
    out = tmp_path / "results" / "mini"
    singles = [dict(recipe="regularized [runs/x/shakespeare_byte/byte]", D=2.62016e-4, N=1e-4, config=("8", "0.003", "1.6"), seed=0,
                    loss=2.0)]
    ev = dict(dataset="shakespeare_byte", tokenizer="byte", D=262016, val_loss=1.9, avg_error=0.6, tasks={})
    for folder, e in (("a", ev), ("b", dict(ev, D=1048576)), ("c", dict(ev, dataset="other")),
                      ("d", dict(ev, val_loss=None))):
        (tmp_path / "results" / "downstream" / folder).mkdir(parents=True)
        (tmp_path / "results" / "downstream" / folder / "eval.json").write_text(json.dumps(e))
    (out / "runs" / "eval").mkdir(parents=True)
    (out / "runs" / "eval" / "a.json").write_text(json.dumps(ev))          # the same eval kept by the sweep
    got = report.downstream_evals(singles, str(out))
    assert sorted(e["val_loss"] is None for e in got) == [False, True]     # a and d; b, c elsewhere; a once
    row = [l for l in report.findings(singles, [], dict(sigma_seed=0.01, fits=[], joint=[], efficiency=[]), None, got)
           .splitlines() if "downstream" in l][0]
    assert row.endswith("| not measured yet |")                             # d has no val loss: not a crash


def test_headline_names_the_unit_its_data_counts_in(tmp_path, monkeypatch):
    sys.path.insert(0, REPO)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.figure
    import report
    seen = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda fig, p, **k: seen.append((fig.axes[0].get_ylabel(), fig.axes[0].get_title()))
                        or open(p, "wb").close())
    singles = [dict(recipe=f"{rec} [shakespeare_byte/byte]", D=2.62e-4, N=N, config=("8", "0.003", wd), seed=s,
                    loss=2.0 - 1e3 * N + 0.01 * s) for rec, wd in (("standard", "0.1"), ("regularized", "1.6"))
                   for N in (1e-4, 2e-4) for s in (0, 1)]
    report.headline(singles, dict(fits=[], joint=[]), str(tmp_path / "h.png"))
    assert seen == [("validation loss (nats per byte)", "D = 262,000 bytes: loss vs model size")]
    # an identified ensemble asymptote's interval is drawn whole: the y axis reaches below its low end
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda fig, p, **k: seen.append(fig.axes[0].get_ylim()) or open(p, "wb").close())
    ens = dict(recipe="ensemble [shakespeare_byte/byte]", axis="K", D=2.62e-4, N=1e-4, E=1.6, E_ci=[1.5, 1.65],
               identified=True)
    report.headline(singles, dict(fits=[ens], joint=[]), str(tmp_path / "h.png"))
    assert seen[-1][0] < 1.5
    # an unidentified joint limit is named in the legend, not drawn as a line (nor does it stretch the axis)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, p, **k: seen.append(
        ([t.get_text() for t in fig.axes[0].get_legend().get_texts()], fig.axes[0].get_ylim())) or open(p, "wb").close())
    joint = dict(recipe="ensemble [shakespeare_byte/byte]", D=2.62e-4, E=1.3, E_ci=[0.2, 1.55], identified=False)
    report.headline(singles, dict(fits=[ens], joint=[joint]), str(tmp_path / "h.png"))
    texts, ylim = seen[-1]
    assert any(t.startswith("joint N, K -> inf: not identified (fit 1.300") for t in texts) and ylim[0] > 1.3
    report.headline(singles, dict(fits=[ens], joint=[dict(joint, E=None, E_ci=[None, None])]), str(tmp_path / "h.png"))
    assert "joint N, K -> inf: not identified" in seen[-1][0]       # no estimate at all: said, no crash
    # a student is drawn just right of its size, not on top of the regularized point it is compared with
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda fig, p, **k: seen.append(fig.axes[0].lines) or open(p, "wb").close())
    student = dict(singles[-1], recipe="distill [shakespeare_byte/byte]", N=1e-4, seed=0)
    report.headline(singles + [student], dict(fits=[], joint=[]), str(tmp_path / "h.png"))
    xs = [ln.get_xdata()[0] for ln in seen[-1] if ln.get_marker() in ("*", "o")]
    assert len(xs) == 2 and 1e5 == min(xs) < max(xs) < 1.2e5


def test_batched_members_train_together_and_land_as_ordinary_points(tmp_path, monkeypatch):
    sys.path.insert(0, REPO)
    import batched
    import sweep as sw
    calls = []
    real = batched.train_members_batched
    monkeypatch.setattr(batched, "train_members_batched", lambda m, **k: calls.append(len(m)) or real(m, **k))
    p = dict(sw.PRESETS["smoke"], batched_members=True)
    s = sw.Sweep(p, "smoke", str(tmp_path / "runs"), results_dir=str(tmp_path / "out"))
    sw.ensure_dataset(s, create=True)
    pt = dict(epochs=1, lr=1e-2, wd=0.8)
    res = s.ensemble("tiny-120k", pt)                     # K = 3 members, none trained yet: one stack of 3
    assert calls == [3] and sorted(res["losses"]) == ["1", "2", "3"]
    kept = sorted(f.name for f in (tmp_path / "out" / "runs").iterdir())
    assert [k for k in kept if not k.startswith("ensemble_")] == [f"tiny-120k_D4096_ep1_lr0.01_wd0.8_s{i}.json" for i in range(3)]
    import train
    real_train, trained = train.train, []
    monkeypatch.setattr(train, "train", lambda c, **k: trained.append(c) or real_train(c, **k))
    s.fresh_seeds("tiny-120k", pt, 3)                    # seeds 1-2 are those members: nothing to train
    assert calls == [3] and trained == []
    with open(tmp_path / "out" / "runs" / "tiny-120k_D4096_ep1_lr0.01_wd0.8_s2.json") as f:
        assert json.load(f)["member"] == 2                # keyed by seed: member i = seed i
    # a stacked member is the run a lone train.py would have made, to float tolerance
    lone = s.config("tiny-120k", seed=1, **pt)
    lone.out_dir = str(tmp_path / "lone")
    alone = real_train(lone, quiet=True)["val_loss"]
    with open(tmp_path / "out" / "runs" / "tiny-120k_D4096_ep1_lr0.01_wd0.8_s1.json") as f:
        assert abs(json.load(f)["val_loss"] - alone) < 1e-4


def test_a_committed_point_from_another_preparation_of_the_data_is_refused(tmp_path):
    sys.path.insert(0, REPO)
    import data
    import sweep as sw
    import train
    from data import synthetic
    import pytest
    ds = synthetic.generate(str(tmp_path / "data"), V=16, k=1, s=4, alpha=0.5, n_train=4_000, n_val=1_000, seed=1)
    here = data.meta_fingerprint(data.load_dataset(ds).meta)
    s = sw.Sweep(sw.PRESETS["smoke"], "smoke", str(tmp_path / "runs"), dataset=ds, results_dir=str(tmp_path / "out"))
    cfg = s.config("tiny-120k", epochs=1, lr=1e-2, wd=0.8)
    point = dict(dataset=ds, seq_len=cfg.seq_len, batch_size=cfg.batch_size, dtype="float32", val_loss=2.5)
    for fp in (here, None):                         # this data, or a point from before fingerprints: done
        s.keep(os.path.basename(cfg.out_dir), dict(point, **({"data_fingerprint": fp} if fp else {})))
        assert s.run(cfg) == 2.5
    s.keep(os.path.basename(cfg.out_dir), dict(point, data_fingerprint="0123456789abcdef"))
    with pytest.raises(train.ConfigError, match="another preparation"):
        s.run(cfg)
    # another split of the same source is another preparation: its fingerprint differs
    other = synthetic.generate(str(tmp_path / "data2"), V=16, k=1, s=4, alpha=0.5, n_train=3_000, n_val=1_000, seed=1)
    assert data.meta_fingerprint(data.load_dataset(other).meta) != here


def test_data_scaling_writes_each_multiplier_at_its_arrow_and_keeps_the_legend_off_the_data(tmp_path, monkeypatch):
    sys.path.insert(0, REPO)
    import math
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.figure
    import fit
    import report
    seen = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, p, **k: seen.append(fig) or open(p, "wb").close())
    D = [6.5e-5, 1.3e-4, 2.6e-4]
    laws = {f"{rec} [shakespeare_byte/byte]": (fit.fit_power_law(D, [l + 1e-4 / d ** 0.5 for d in D], n_boot=0), None)
            for rec, l in (("standard", 1.2), ("regularized", 1.1))}
    eff = [dict(recipe="regularized [shakespeare_byte/byte]", D=2.6e-4, loss=1.67, of="asymptote", multiplier=1.25,
                infinite=False, warning=None),
           dict(recipe="ensemble [shakespeare_byte/byte] (joint)", D=2.6e-4, loss=1.3, of="joint asymptote",
                multiplier=math.inf, infinite=True, warning="joint E not identified")]
    report.data_scaling(laws, eff, str(tmp_path / "d.png"))
    ax = seen[0].axes[0]
    # at each arrow head; a joint limit that is not identified gets no arrow, only the words
    assert [t.get_text() for t in ax.texts if t.get_text()] == ["1.25x", "not identified"]
    assert sum(not t.get_text() for t in ax.texts) == 1
    assert ax.get_xlabel().startswith("data D (bytes") and "per byte" in ax.get_ylabel()
    flagged = [ln for ln in ax.lines if ln.get_marker() == "D"]
    assert len(flagged) == 1 and flagged[0].get_markerfacecolor() == "none"   # hollow: flagged
    seen[0].canvas.draw()
    assert ax.get_legend().get_window_extent().y1 <= ax.get_window_extent().y0   # below the axes, not on the data
    # two multipliers that would be written on top of each other (students at one D, near-equal loss):
    # the second steps down a line
    seen.clear()
    students = [dict(recipe=f"{r} [shakespeare_byte/byte]", D=2.6e-4, loss=l, of="best run", multiplier=m,
                     infinite=False, warning=None) for r, l, m in (("distill", 1.723, 1.04), ("self-distill", 1.726, 1.03))]
    students.append(dict(recipe="ensemble [shakespeare_byte/byte] (joint)", D=2.6e-4, loss=1.3, of="joint asymptote",
                         multiplier=64.6, infinite=False, warning="joint E not identified"))
    report.data_scaling(laws, students, str(tmp_path / "d.png"))
    assert seen[0].axes[0].get_xlim()[1] < 2.6e5 * 3          # not stretched to a 64.6x guess
    offsets = [t.xyann[1] for t in seen[0].axes[0].texts if t.get_text()]
    assert len(offsets) == 3 and offsets[1] < offsets[0] - 8
    # an identified joint limit read off an unidentified standard law is measured: its arrow is drawn
    seen.clear()
    report.data_scaling(laws, [dict(students[-1], multiplier=2.0, warning="the standard data law's E is not "
                                    "identified: an extrapolation")], str(tmp_path / "d.png"))
    assert [t.get_text() for t in seen[0].axes[0].texts] == ["", "2x"]


def test_a_dry_run_plans_each_config_once_and_plans_the_students(tmp_path, monkeypatch):
    sys.path.insert(0, REPO)
    import sweep as sw
    seen = []
    monkeypatch.setattr(sw, "print_plan", lambda sweep, args: seen.append(sweep))
    p = dict(sw.PRESETS["smoke"], member_probe=["tiny-120k", "tiny-240k"], member_settings=["x1", "shift"])
    monkeypatch.setitem(sw.PRESETS, "smoke", p)
    try:
        sw.main(["--preset", "smoke", "--dry_run", "--no_timing", "--runs_dir", str(tmp_path / "runs"),
                 "--out", str(tmp_path / "out")])
    except SystemExit as e:
        assert not e.code
    dirs = [c.out_dir for c in seen[0].planned]
    assert len(dirs) == len(set(dirs))                            # the probe's members were asked for twice
    assert {c.recipe for c in seen[0].planned} >= {"distill", "self-distill"}   # the students cost too


def test_learning_curves_draw_the_main_budget_only_in_the_data_unit(tmp_path, monkeypatch):
    # the other budgets' runs share configs (wd, epochs, lr) with the main budget's: one curve per
    # config must be the main budget's, not whichever budget came last
    sys.path.insert(0, REPO)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.figure
    import sweep as sw
    seen = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, p, **k: seen.append(fig))
    s = sw.Sweep(sw.PRESETS["smoke"], "smoke", str(tmp_path / "runs"), results_dir=str(tmp_path / "res"))
    D, pts = s.p["D"], []
    for budget, loss in ((D, 1.5), (s.p["data_budgets"][0], 2.5)):     # the main budget first, then another
        run = tmp_path / f"run_{budget}.json"
        run.write_text(json.dumps(dict(history=[dict(epoch=e, val_loss=loss) for e in (0.5, 1)])))
        pts.append(dict(recipe="regularized", model=s.p["models"][-1], seed=0, wd=0.8, epochs=1, lr=1e-2,
                        D=budget - s.p["seq_len"], run=str(run), tokenizer="synthetic"))
    sw.learning_curves(s, pts, str(tmp_path))
    ax = seen[0].axes[0]
    assert [list(ln.get_ydata()) for ln in ax.lines] == [[1.5, 1.5]]
    assert ax.get_ylabel() == "val loss (nats per symbol)" and f"D = {D:,} symbols" in ax.get_title()


def test_the_readme_quotes_each_committed_findings_table_and_a_report_refreshes_it(tmp_path):
    # the README's results section quotes results/<preset>/findings.md between markers: the quote is
    # what the committed points say, and writing the report there rewrites it
    sys.path.insert(0, REPO)
    import sweep as sw
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    for name in ("mini",):
        begin, end = f"<!-- findings: results/{name}/findings.md -->", f"<!-- end findings: {name} -->"
        quoted = readme.split(begin, 1)[1].split(end, 1)[0].strip()
        with open(os.path.join(REPO, "results", name, "findings.md")) as f:
            assert quoted == f.read().strip(), f"README quotes a stale {name} findings table: run --report_only"
    # a report written at results/<name> beside a README refreshes its quote; one elsewhere does not
    (tmp_path / "results" / "x").mkdir(parents=True)
    (tmp_path / "results" / "x" / "findings.md").write_text("| new |\n")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "findings.md").write_text("| other |\n")     # a report written with --out
    doc = tmp_path / "README.md"
    doc.write_text("top\n<!-- findings: results/x/findings.md -->\n| old |\n<!-- end findings: x -->\nbottom\n")
    sw.quote_in_readme("x", str(tmp_path / "elsewhere"), readme=str(doc))
    assert "| old |" in doc.read_text()
    sw.quote_in_readme("x", str(tmp_path / "results" / "x"), readme=str(doc))
    assert doc.read_text() == "top\n<!-- findings: results/x/findings.md -->\n| new |\n<!-- end findings: x -->\nbottom\n"


def test_summary_shows_each_sizes_ensemble_with_the_lower_k_limit_not_the_lower_largest_k():
    # two member settings at one size: B is lower at K = 4, A falls faster and has the lower K -> inf
    # loss. The report's fits and the joint limit use A; the summary must name the same one
    sys.path.insert(0, REPO)
    import sweep as sw
    s = sw.Sweep(sw.PRESETS["smoke"], "smoke", "unused", results_dir="unused")
    m, D = s.p["models"][0], s.p["D"] - s.p["seq_len"]
    run = lambda seed, loss: dict(recipe="regularized", model=m, D=D, N=1000, epochs=1, lr=1e-2, wd=0.8,  # noqa: E731
                                  seed=seed, val_loss=loss, tokenizer="synthetic")
    ens = lambda ep, wd, ls: dict(recipe="ensemble", model=m, D=D, N=1000, epochs=ep, wd=wd, K=4,  # noqa: E731
                                  losses={str(k): v for k, v in enumerate(ls, 1)})
    A, B = ens(2, 0.4, [2.0, 1.8, 1.74, 1.71]), ens(1, 0.8, [1.75, 1.70, 1.695, 1.69])
    assert sw.Sweep.k_asymptote(A) < sw.Sweep.k_asymptote(B) and B["losses"]["4"] < A["losses"]["4"]
    text = sw.summary_table(s, [run(0, 1.8), run(1, 1.81), A, B], dict(fits=[], data_laws=[], joint=[], efficiency=[]))
    row = [line for line in text.splitlines() if line.startswith(f"| {m} |")][0]
    assert "2.000 / 1.800 / 1.740 / 1.710 (2 ep, wd 0.4; 1 ep, wd 0.8: 1.690)" in row
