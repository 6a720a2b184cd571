"""
Reproduce the paper end to end (paper.md sections 5-8): for one preset, run
  1. the standard recipe: wd 0.1, coordinate descent over (epochs, lr) per model size N;
  2. the regularized recipe: coordinate descent over (epochs, lr, wd) per N, then extra seeds at the optimum;
  3. ensembles per N, members at the regularized point and at the paper's shift (2x epochs, 1/2 wd),
     K = 1..Kmax; the setting with the lower K -> inf asymptote wins (fit.py picks it);
  4. the standard recipe at the other data budgets, for its data law and data-efficiency multipliers
     (and, where a preset sets reg_data_budgets, the regularized search there too, for its data law);
  5. distillation: the best ensemble at one size into a student of that size, and self-distillation;
then fit.py turns the points into results/<preset>/ (fits.json, PNGs, points.jsonl).

    python sweep.py --preset mini --dry_run      # the plan: runs, tokens, FLOPs and an ETA
    python sweep.py --preset mini                # 2 CPU cores: ~2 h, or ~65 min as 2 shards; resumable
    python sweep.py --preset mini --shard 0/4    # spread N over 4 processes or GPUs, then
    python sweep.py --preset mini --report_only  # fit whatever has finished

Every run is an ordinary train.py run in runs/<preset>/<config name>/: a finished run is never
trained twice (coordinate descent revisits points for free), an interrupted one resumes from its
checkpoint, and the standard and regularized searches share the runs they have in common.
"""
import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

import data
import train
from train import TrainConfig

# ----------------------------------------------------------------------------
# Presets. Grids follow the paper's (section 5) doubling steps; the miniatures keep the paper's
# over-parameterization (params / tokens ~0.5-5) rather than its absolute sizes (section 9).

PRESETS = {
    "mini": dict(
        dataset="shakespeare_byte", prepare=["shakespeare", "--tokenizer", "byte"],
        D=65_536, data_budgets=[16_384, 32_768], seq_len=128, batch_size=8, val_tokens=131_072,
        models=["tiny-67k", "tiny-120k", "tiny-240k", "tiny-530k"],
        epochs=[2, 4, 8, 16, 32], lr=[1e-3, 3e-3, 1e-2], wd=[0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8],
        std_start=dict(epochs=8, lr=3e-3), reg_start=dict(epochs=8, lr=3e-3, wd=0.8),
        seeds=2, K=4, distill_model="tiny-120k", mix_weight=0.5, corpus_mult=2, max_moves=3,
        reg_axes=["epochs", "lr", "wd"], member_settings=["x1"], reg_data_budgets=True),
    # a generated bigram source (data/synthetic.py) where the limits are known exactly: every report
    # line can sit next to the Bayes-optimal loss for that D and the entropy rate. V = 256 keeps the
    # 256 x 256 table within the tiny models' reach (at V = 1024 they stay ~1 nat above Bayes).
    "synthetic": dict(
        dataset="data_synthetic", prepare=None,
        source=dict(V=256, k=1, s=16, alpha=0.3, n_train=262_144, n_val=65_536, seed=7),
        D=32_768, data_budgets=[8_192, 16_384], seq_len=128, batch_size=16, val_tokens=32_768,
        models=["tiny-67k", "tiny-120k", "tiny-240k", "tiny-530k", "tiny-950k"],
        epochs=[2, 4, 8, 16, 32], lr=[1e-3, 3e-3, 1e-2, 3e-2], wd=[0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8],
        std_start=dict(epochs=8, lr=3e-3), reg_start=dict(epochs=8, lr=3e-3, wd=1.6),
        seeds=3, K=4, distill_model="tiny-120k", mix_weight=0.5, corpus_mult=2, max_moves=3,
        reg_axes=["epochs", "lr", "wd"], member_settings=["x1"]),
    # the whole pipeline in a couple of minutes (CI runs it): nothing here is meant to show anything
    "smoke": dict(
        dataset="data_smoke", prepare=None,
        source=dict(V=64, k=1, s=8, alpha=0.5, n_train=20_000, n_val=4_096, seed=3),
        D=4_096, data_budgets=[2_048, 3_072], seq_len=32, batch_size=8, val_tokens=2_048,
        models=["tiny-120k", "tiny-240k", "tiny-530k"],
        epochs=[1, 2], lr=[1e-2], wd=[0.1, 0.8],
        std_start=dict(epochs=1, lr=1e-2), reg_start=dict(epochs=1, lr=1e-2, wd=0.8),
        seeds=1, K=3, distill_model="tiny-120k", mix_weight=0.5, corpus_mult=1, max_moves=1,
        reg_data_budgets=True),
    # the paper's scale (section 5): runnable on GPUs, not run here. D = 800 base steps x 64 x 4096.
    "paper": dict(
        dataset="dclm_llama3", prepare=None,
        D=209_715_200, data_budgets=[419_430_400, 838_860_800, 1_677_721_600], seq_len=4096,
        batch_size=64, val_tokens=4_194_304,
        models=["150m", "300m", "600m", "1.4b"],
        epochs=[1, 2, 4, 8, 16, 32, 64], lr=[1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2],
        wd=[0, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4],
        std_start=dict(epochs=8, lr=3e-3), reg_start=dict(epochs=16, lr=3e-3, wd=0.8),
        seeds=1, K=5, distill_model="300m", mix_weight=0.75, corpus_mult=4, max_moves=10,
        reg_data_budgets=True),
}
STD_WD = 0.1


# ----------------------------------------------------------------------------
# One run = one train.py config, cached by name

def grid_neighbours(grids, point):
    """The points one grid step up and down from `point` on each axis (none past an edge, none on
    an axis where the point is off the grid)."""
    for a, grid in grids.items():
        if point[a] in grid:
            i = grid.index(point[a])
            for j in (i - 1, i + 1):
                if 0 <= j < len(grid):
                    yield {**point, a: grid[j]}


def at_budget(D_run, budget, seq_len):
    """Whether a run's recorded D is this budget: train.py keeps whole windows of seq_len + 1."""
    return budget - seq_len - 1 < D_run <= budget


class Sweep:
    def __init__(self, preset, name, runs_dir, dry_run=False, dataset=None):
        self.p, self.name, self.runs_dir, self.dry = preset, name, runs_dir, dry_run
        self.dataset = dataset or preset["dataset"]
        self.planned = []         # dry run: configs that would train
        self.t0 = time.time()

    def config(self, model, epochs, lr, wd, seed=0, D=None, **extra):
        D = D or self.p["D"]
        name = f"{model}_D{D}_ep{epochs:g}_lr{lr:g}_wd{wd:g}_s{seed}"
        if extra.get("mix_data"):
            name += "_" + extra.pop("tag")
        extra.pop("tag", None)
        return TrainConfig(dataset=self.dataset, train_tokens=D, seq_len=self.p["seq_len"],
                           batch_size=self.p["batch_size"], val_tokens=self.p["val_tokens"], model=model,
                           epochs=epochs, lr=lr, wd=wd, seed=seed, data_seed=seed, evals=4, resume=True,
                           out_dir=os.path.join(self.runs_dir, name), **extra)

    def run(self, cfg, trainer=None):
        """Train cfg unless finished; return its val loss."""
        path = os.path.join(cfg.out_dir, "summary.json")
        if os.path.exists(path):
            with open(path) as f:
                s = json.load(f)
            seen = (s["dataset"], s["seq_len"], s["batch_size"])
            if seen != (cfg.dataset, cfg.seq_len, cfg.batch_size):
                raise train.ConfigError(f"{cfg.out_dir} was trained on {seen[0]} (T={seen[1]}, B={seen[2]}), "
                                        f"not {cfg.dataset}; use another --runs_dir")
            dtype = str(train.resolve_device(cfg)[1]).replace("torch.", "")
            if s.get("dtype", "float32") != dtype:     # a sweep never mixes fp32 and bf16 points
                raise train.ConfigError(f"{cfg.out_dir} was trained in {s.get('dtype', 'float32')}, this "
                                        f"machine trains in {dtype}; use another --runs_dir (or --dtype to match)")
        elif self.dry:
            self.planned.append(cfg)
            return self.guess(cfg)
        else:
            t = time.time()
            s = trainer(cfg) if trainer else train.train(cfg, quiet=True)
            print(f"[{(time.time() - self.t0) / 60:5.1f} min] {os.path.basename(cfg.out_dir)}: "
                  f"val {s['val_loss']:.4f} train {s['train_loss']:.4f} ({time.time() - t:.0f}s)", flush=True)
        return s["val_loss"]

    def guess(self, cfg):
        """Dry run: a made-up but well-behaved loss surface, so the search takes typical paths."""
        ep0, lr0, wd0 = self.p["reg_start"]["epochs"], self.p["reg_start"]["lr"], self.p["reg_start"]["wd"]
        return (math.log2(cfg.epochs / ep0) ** 2 + math.log10(cfg.lr / lr0) ** 2
                + math.log2((cfg.wd + 0.05) / (wd0 + 0.05)) ** 2 / 4 + 0.01 * cfg.seed)

    # ------------------------------------------------------------------
    def coordinate_descent(self, model, start, axes, D=None):
        """The paper's search (section 5): train the centre's grid neighbours (one step up and down
        on every axis; at an edge the neighbour is the centre itself), move to the best, stop when
        the centre is no worse than all of them (the 'certificate'). Returns the best point."""
        grids = {a: self.p[a] for a in axes}
        point = {a: min(grids[a], key=lambda v: abs(math.log((v + 1e-3) / (start[a] + 1e-3)))) for a in axes}
        fixed = {k: v for k, v in start.items() if k not in axes}
        loss = lambda pt: self.run(self.config(model, D=D, **fixed, **pt))
        for _ in range(self.p["max_moves"]):
            centre = loss(point)
            best, best_loss = point, centre
            for nb in grid_neighbours(grids, point):
                l = loss(nb)
                if l < best_loss:
                    best, best_loss = nb, l
            if best is point:
                return {**fixed, **point}, centre, True     # certificate: no neighbour is better
            point = best
        return {**fixed, **point}, best_loss, False

    def say(self, stage, m, D, pt, loss, cert):
        print(f"{stage} {m} D={D or self.p['D']}: {pt} -> {loss:.4f}{'' if cert else ' (no certificate)'}"
              + (" (dry run: a made-up loss)" if self.dry else ""))

    # ------------------------------------------------------------------
    def stage_standard(self, models, D=None, lrs=None):
        """wd fixed at 0.1; search epochs and lr (at a smaller data budget: epochs only, at the lr
        found at the main budget, to save compute: the data law needs the best loss per D)."""
        out = {}
        for m in models:
            start = {**self.p["std_start"], "wd": STD_WD, **({"lr": lrs[m]["lr"]} if lrs else {})}
            pt, l, cert = self.coordinate_descent(m, start, ["epochs"] if lrs else ["epochs", "lr"], D)
            out[m] = pt
            self.say("standard ", m, D, pt, l, cert)
        return out

    def stage_regularized(self, models, std, D=None):
        """Search (epochs, lr, wd) from the standard optimum's epochs and lr; a preset may fix lr at
        the standard optimum (reg_axes) to save compute."""
        out = {}
        axes = self.p.get("reg_axes", ["epochs", "lr", "wd"])
        for m in models:
            start = dict(self.p["reg_start"], **{k: std[m][k] for k in ("epochs", "lr") if m in std})
            pt, l, cert = self.coordinate_descent(m, start, axes, D)
            for seed in range(1, self.p["seeds"]):          # error bars at the optimum
                self.run(self.config(m, seed=seed, D=D, **pt))
            out[m] = pt
            self.say("regularized", m, D, pt, l, cert)
        return out

    def member_settings(self, pt):
        """The regularized point itself and the paper's member shift: 2x epochs, 1/2 wd."""
        ep = [e for e in self.p["epochs"] if e >= 2 * pt["epochs"]]
        shifted = dict(pt, epochs=ep[0] if ep else pt["epochs"], wd=pt["wd"] / 2)
        return {k: v for k, v in {"x1": pt, "shift": shifted}.items()
                if k in self.p.get("member_settings", ["x1", "shift"])}

    def stage_ensembles(self, models, reg):
        import ensemble
        best = {}
        for m in models:
            for tag, pt in self.member_settings(reg[m]).items():
                cfgs = [self.config(m, seed=i, **pt) for i in range(self.p["K"])]
                for c in cfgs:
                    self.run(c)
                # named after member 0's config: the evaluation of these very members
                path = os.path.join(self.runs_dir, f"ensemble_{os.path.basename(cfgs[0].out_dir)}.json")
                if os.path.exists(path) and all(os.path.exists(os.path.join(c.out_dir, "summary.json")) for c in cfgs):
                    with open(path) as f:
                        res = json.load(f)
                elif self.dry:
                    continue
                else:
                    res = ensemble.evaluate_ensemble([c.out_dir for c in cfgs], combine="both", quiet=True, out=path)
                L = res["losses"]
                print(f"ensemble  {m} {tag} {pt}: k=1..{self.p['K']} "
                      + " ".join(f"{L[str(k)]:.4f}" for k in range(1, self.p["K"] + 1)))
                if m not in best or L[str(self.p["K"])] < best[m][1][str(self.p["K"])]:
                    best[m] = ([c.out_dir for c in cfgs], L, pt)
        return best

    def stage_distill(self, reg, ens):
        """The best ensemble at one size into a fresh student of that size, and self-distillation
        (one member as the teacher), sequence-level as in the paper: the student trains with the
        regularized point's hyperparameters on a mix of real and teacher-sampled sequences."""
        import distill
        m = self.p["distill_model"]
        if m not in ens:
            return
        members, _, _ = ens[m]
        for tag, teacher, recipe in (("ens", members, "distill"), ("self", members[:1], "self-distill")):
            # named after the teacher's config: a corpus is reused only for the same teacher
            corpus = os.path.abspath(os.path.join(self.runs_dir, "corpus_" + os.path.basename(members[0]) + f"_{tag}"))
            for seed in range(self.p["seeds"]):
                cfg = self.config(m, seed=seed, **reg[m], mix_weight=self.p["mix_weight"], recipe=recipe,
                                  tag=f"{tag}distill", mix_data=corpus)
                self.run(cfg, trainer=lambda c: distill.distill(
                    c, teacher, mode="seq", corpus=corpus, corpus_tokens=self.p["corpus_mult"] * self.p["D"],
                    corpus_seed=0, quiet=True))


# ----------------------------------------------------------------------------
# Report: points.jsonl -> fit.py -> fits.json + PNGs, plus learning curves

def collect_points(sweep):
    """Every finished run under runs_dir, labelled by recipe: "standard" = the wd 0.1 runs (at every
    data budget), "regularized" = every run at the main budget (its search space contains the
    standard one; extra seeds and ensemble members at the optimum count as seeds), students by their
    own label, and one "ensemble" row per ensemble evaluation. Read from disk, so the report is the
    same whether the sweep ran in one process, in shards, or across sessions."""
    rows = []
    for name in sorted(os.listdir(sweep.runs_dir)):
        path = os.path.join(sweep.runs_dir, name)
        if name.startswith("ensemble_") and name.endswith(".json"):
            with open(path) as f:
                rows.append({**json.load(f), "recipe": "ensemble"})
            continue
        if not os.path.exists(os.path.join(path, "summary.json")):
            continue
        with open(os.path.join(path, "summary.json")) as f:
            s = json.load(f)
        if s["dataset"] != sweep.dataset:
            continue
        s = {k: v for k, v in s.items() if k != "history"}
        s["run"] = path
        if "mix" in s:
            rows.append(s)                                        # distill / self-distill
            continue
        if s["wd"] == STD_WD:
            rows.append({**s, "recipe": "standard"})
        budgets = [sweep.p["D"]] + (sweep.p["data_budgets"] if sweep.p.get("reg_data_budgets") else [])
        if any(at_budget(s["D"], B, sweep.p["seq_len"]) for B in budgets):
            rows.append({**s, "recipe": "regularized"})
    return rows


def write_report(sweep, out):
    import fit
    points = collect_points(sweep)
    if not points:
        raise train.ConfigError(f"no finished runs in {sweep.runs_dir}; run the sweep first")
    os.makedirs(out, exist_ok=True)
    pts = os.path.join(out, "points.jsonl")
    with open(pts + ".tmp", "w") as f:
        for r in points:
            f.write(json.dumps(r) + "\n")
    os.replace(pts + ".tmp", pts)
    fit.main([pts, "--out", out])
    learning_curves(sweep, points, out)
    with open(os.path.join(out, "fits.json")) as f:
        fits = json.load(f)
    text = summary_table(sweep, points, fits)
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(text)
    print(text)


def mean_sd(xs):
    xs = np.asarray(xs, dtype=float)
    sd = f" ± {xs.std(ddof=1):.3f}" if len(xs) > 1 else ""
    return f"{xs.mean():.3f}{sd} (n={len(xs)})"


def summary_table(sweep, points, fits):
    """The sweep's key numbers as markdown (results/<preset>/summary.md; the README quotes it)."""
    D, K = sweep.p["D"], sweep.p["K"]
    main = [r for r in points if at_budget(r.get("D", 0), D, sweep.p["seq_len"])]

    def best(recipe, m):
        """The point the search settled on, as it chose: the lowest seed-0 loss among the recipe's
        runs (the paper's search, like ours, sees one seed per point). Returns (config, the losses of
        all its seeds, certificate): the certificate says whether every grid neighbour was trained
        and none did better (the search stops on max_moves otherwise)."""
        by = {}
        for r in main:
            if r["recipe"] == recipe and r.get("model") == m:
                by.setdefault((r["epochs"], r["lr"], r["wd"]), {})[r["seed"]] = r["val_loss"]
        seed0 = {c: v[0] for c, v in by.items() if 0 in v}
        if not seed0:
            return None, [], ""
        cfg = min(seed0, key=seed0.get)
        axes = sweep.p.get("reg_axes", ["epochs", "lr", "wd"]) if recipe == "regularized" else ["epochs", "lr"]
        point = dict(zip(("epochs", "lr", "wd"), cfg))
        missing = sum((nb["epochs"], nb["lr"], nb["wd"]) not in seed0
                      for nb in grid_neighbours({a: sweep.p[a] for a in axes}, point))
        cert = "certified" if missing == 0 else f"no certificate: {missing} neighbours untrained"
        return cfg, [by[cfg][k] for k in sorted(by[cfg])], cert

    lines = [f"# {sweep.name}: D = {D:,} tokens of {sweep.dataset}, T = {sweep.p['seq_len']}, "
             f"batch {sweep.p['batch_size']}\n",
             "The searched point per recipe is the lowest seed-0 loss (as the search chooses); its "
             "loss is the mean ± sd over every seed trained there (extra seeds and ensemble members).\n",
             f"| model | N | standard: best (epochs, lr) -> val | regularized: best (epochs, lr, wd) -> val "
             f"| ensemble k=1..{K} (logit rule) | k={K} prob rule |", "|---|---|---|---|---|---|"]
    ens = {}   # per model, the member setting whose largest ensemble is best
    for r in points:
        if r["recipe"] == "ensemble" and r.get("model"):
            o = ens.get(r["model"])
            if o is None or r["losses"][str(r["K"])] < o["losses"][str(o["K"])]:
                ens[r["model"]] = r
    for m in sweep.p["models"]:
        (sc, sl, scert), (rc, rl, rcert) = best("standard", m), best("regularized", m)
        if not sl:
            continue
        N = next(r["N"] for r in main if r.get("model") == m)
        e = ens.get(m)
        el = " / ".join(f"{e['losses'][str(k)]:.3f}" for k in range(1, e["K"] + 1)) if e else "-"
        ep = f"{e['losses_probs'][str(e['K'])]:.3f}" if e and "losses_probs" in e else "-"
        lines.append(f"| {m} | {N:,} | {sc[:2]} -> {mean_sd(sl)}, {scert} | {rc} -> {mean_sd(rl)}, {rcert} | {el} | {ep} |")
    lines += ["", "| fit | x | E (asymptote) | 90% interval | identified | note |", "|---|---|---|---|---|---|"]
    for f in fits["fits"] + fits["data_laws"]:
        x = f["axis"] if "N" not in f or f["N"] is None or f["axis"] != "K" else f"K at N={f['N'] * 1e9:,.0f}"
        at = f"D={f['D'] * 1e9:,.0f}" if f.get("D") else "over D"
        lines.append(f"| {f['recipe'].split(' [')[0]} ({at}) | {x} | {f['E']:.3f} | "
                     f"[{f['E_ci'][0]:.3f}, {f['E_ci'][1]:.3f}] | {f['identified']} | {f['warning'] or ''} |")
    for j in fits["joint"]:
        lines.append(f"| joint N, K -> inf | two-step | {j['E']:.3f} | [{j['E_ci'][0]:.3f}, {j['E_ci'][1]:.3f}] | "
                     f"{j['identified']} | {j['warning'] or ''} |")
    # a synthetic source's known limits on the same val tokens (train.py stores them in each summary)
    lim = {r["D"]: r["limits"] for r in points if r.get("limits") and "mix" not in r}
    if lim:
        lines += ["", "| D | Bayes-optimal loss given D | true source (these val tokens) | entropy rate |",
                  "|---|---|---|---|"]
        for d in sorted(lim):
            lines.append(f"| {d:,} | {lim[d]['bayes']:.4f} | {lim[d]['entropy']:.4f} | {lim[d]['entropy_rate']:.4f} |")
    if fits["efficiency"]:
        lines += ["", "| data efficiency vs standard | D | loss | of | standard's best at D | multiplier | note |",
                  "|---|---|---|---|---|---|---|"]
        for e in sorted(fits["efficiency"], key=lambda e: (e["recipe"], e["D"])):
            mult = "inf" if e["infinite"] else f"{e['multiplier']:.2f}x"
            lines.append(f"| {e['recipe'].split(' [')[0]} | {e['D'] * 1e9:,.0f} | {e['loss']:.3f} | {e['of']} | "
                         f"{e['baseline_loss']:.3f} | {mult} | {e['warning'] or ''} |")
    m = sweep.p["distill_model"]
    rc, single, _ = best("regularized", m)   # students trained at the regularized point, as the sweep does
    stud = {rec: [r["val_loss"] for r in points if r["recipe"] == rec and r.get("model") == m
                  and (r["epochs"], r["lr"], r["wd"]) == rc] for rec in ("distill", "self-distill")}
    if m in ens and stud["distill"]:
        L1, LK = np.mean(single), ens[m]["losses"][str(ens[m]["K"])]
        lines += ["", f"Distillation at {m}: teacher = the {ens[m]['K']}-member ensemble ({LK:.3f}); "
                      f"same-size regularized single model {mean_sd(single)}; "
                      f"student {mean_sd(stud['distill'])}; self-distilled student "
                      f"{mean_sd(stud['self-distill']) if stud['self-distill'] else '-'}; "
                      f"gain kept = (L_single - L_student) / (L_single - L_ensemble) = "
                      f"{(L1 - np.mean(stud['distill'])) / (L1 - LK):.0%}"]
    flagged = sorted(os.path.basename(r["run"]) for r in points if r.get("diverged") and r.get("run"))
    if flagged:   # shown, not removed: a flag never takes a point out of a fit
        lines += ["", f"Flagged diverged by train.py (kept in the fits): {', '.join(sorted(set(flagged)))}"]
    return "\n".join(lines) + "\n"


def learning_curves(sweep, points, out):
    """The overfitting picture: val loss by epoch, standard vs regularized, at the largest size."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    m, D = sweep.p["models"][-1], sweep.p["D"]
    runs = {}
    for r in points:   # one curve per config
        if r["recipe"] == "regularized" and r.get("model") == m and r["seed"] == 0:
            runs[(r["wd"], r["epochs"], r["lr"])] = r["run"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (wd, ep, lr), run in sorted(runs.items()):
        with open(os.path.join(run, "summary.json")) as f:
            h = json.load(f)["history"]
        ax.plot([p["epoch"] for p in h], [p["val_loss"] for p in h], marker="o", ms=3, alpha=0.8,
                ls="--" if wd == STD_WD else "-", label=f"wd {wd:g} ep {ep:g} lr {lr:g}")
    lim = next((r["limits"] for r in points if r.get("limits") and r.get("model") == m
                and r["recipe"] == "regularized"), None)
    if lim:   # a synthetic source: the floors no recipe can beat
        ax.axhline(lim["bayes"], color="k", lw=1, ls=":", label=f"Bayes-optimal given D: {lim['bayes']:.3f}")
        ax.axhline(lim["entropy"], color="k", lw=1, label=f"true source: {lim['entropy']:.3f}")
    ax.set(xlabel="epoch", ylabel="val loss (nats/token)", xscale="log",
           title=f"{m}: val loss during training (dashed: wd 0.1)")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "learning_curves.png"), dpi=110)
    plt.close(fig)


def print_plan(sweep, args):
    """Dry run: the runs the search would train if every loss came out as a smooth made-up surface
    (the real path depends on the losses), their training tokens and FLOPs, and an ETA."""
    from model import GPT, config_from_preset
    import torch
    vocab = (sweep.p["source"]["V"] + 1 if "source" in sweep.p
             else {"dclm_llama3": 128_256, "shakespeare_byte": 257}.get(sweep.dataset, 1025))
    flops = tokens = 0
    for c in sweep.planned:
        with torch.device("meta"):
            f_tok = GPT(config_from_preset(c.model, vocab, c.seq_len)).flops_per_token(c.seq_len)
        t = c.train_tokens * c.epochs / (1 - c.mix_weight)
        tokens, flops = tokens + t, flops + f_tok * t
    print(f"preset {args.preset}: about {len(sweep.planned)} runs to train on a typical search path (the real path, "
          f"and so the count, follows the real losses), {tokens / 1e6:,.0f}M tokens, "
          f"{flops:.3g} FLOPs -> ~{flops / (args.tflops * 1e12) / 3600:.1f} h at {args.tflops:g} TFLOP/s "
          f"(+ evaluation and distillation sampling)")


def ensure_dataset(sweep, create=True):
    """A preset either generates its synthetic source inside runs_dir or prepares a named dataset."""
    p = sweep.p
    if "source" in p and sweep.dataset == p["dataset"]:
        from data import synthetic
        sweep.dataset = path = os.path.join(sweep.runs_dir, p["dataset"])
        if create and not os.path.exists(os.path.join(path, "meta.json")):
            synthetic.generate(path, **p["source"])
    elif p["prepare"]:
        try:
            data.load_dataset(sweep.dataset)
        except data.DataError:
            if not create:      # dry run: say what the real run will do first
                print(f"note: {sweep.dataset} is not prepared yet; the sweep will first run "
                      f"python -m data.prepare {' '.join(p['prepare'])}")
            else:
                rc = subprocess.run([sys.executable, "-m", "data.prepare", *p["prepare"]]).returncode
                if rc:      # data.prepare printed its one line already
                    raise SystemExit(rc)


def shard_models(models, i, n):
    """Shard i of n: sizes dealt largest first to the least-loaded shard (cost ~ parameters)."""
    from model import PRESETS
    size = lambda m: PRESETS[m][0] ** 2 * PRESETS[m][2]          # ~ d^2 x layers
    load, shards = [0] * n, [[] for _ in range(n)]
    for m in sorted(models, key=size, reverse=True):
        j = load.index(min(load))
        shards[j].append(m)
        load[j] += size(m)
    return [m for m in models if m in shards[i]]


def main(argv=None):
    ap = train.OneLineParser(description=__doc__.strip().split("\n\n")[0], ranges=dict(tflops="> 0"))
    ap.add_argument("--preset", choices=list(PRESETS), default="mini")
    ap.add_argument("--runs_dir", default=None, help="default runs/<preset>")
    ap.add_argument("--out", default=None, help="report folder, default results/<preset>")
    ap.add_argument("--dataset", default=None, help="override the preset's dataset (any text you prepared)")
    ap.add_argument("--dry_run", action="store_true", help="print the plan: runs, tokens, FLOPs, ETA")
    ap.add_argument("--report_only", action="store_true", help="fit the finished runs, train nothing")
    ap.add_argument("--shard", default="0/1", help="i/n: this process trains model sizes i, i+n, ...")
    ap.add_argument("--tflops", type=float, default=0.1,
                    help="dry run: sustained TFLOP/s for the ETA (0.1 ~ 2 CPU cores in fp32, per bench.py; "
                         "~400 for an H100 at 40%% MFU)")
    args = ap.parse_args(argv)
    # bad input (a missing dataset, a run folder another process holds: train.py's lock) is one line, exit 2
    train.run_cli(lambda: run(args, ap))


def run(args, ap):
    p = PRESETS[args.preset]
    sweep = Sweep(p, args.preset, args.runs_dir or os.path.join("runs", args.preset),
                  dry_run=args.dry_run or args.report_only, dataset=args.dataset)
    try:
        i, n = map(int, args.shard.split("/"))
        assert 0 <= i < n
    except (ValueError, AssertionError):
        ap.error(f"--shard must be i/n with 0 <= i < n (got {args.shard!r})")
    models = shard_models(p["models"], i, n)
    if args.report_only:
        ensure_dataset(sweep, create=False)
        return write_report(sweep, args.out or os.path.join("results", args.preset))
    ensure_dataset(sweep, create=not sweep.dry)
    std = sweep.stage_standard(models)
    std_at = {D: sweep.stage_standard(models, D, lrs=std) for D in p["data_budgets"]}
    reg = sweep.stage_regularized(models, std)
    if p.get("reg_data_budgets"):       # the paper's data scaling of the regularized recipe too (section 7)
        for D in p["data_budgets"]:
            sweep.stage_regularized(models, std_at[D], D)
    ens = sweep.stage_ensembles(models, reg)
    if p["distill_model"] in models:
        sweep.stage_distill(reg, ens)
    if args.dry_run:
        print_plan(sweep, args)
        return
    if n == 1:
        write_report(sweep, args.out or os.path.join("results", args.preset))
    else:
        print(f"shard {i}/{n} done; when all shards are: python sweep.py --preset {args.preset} --report_only")


if __name__ == "__main__":
    main()
