"""
Reproduce the paper end to end (its search, ensembles, fits and distillation): for one preset, run
  1. the standard recipe: wd 0.1, coordinate descent over (epochs, lr) per model size N;
  2. the regularized recipe: coordinate descent over (epochs, lr, wd) per N, then extra seeds at the optimum;
  3. ensembles per N, members at the regularized point and at the paper's shift (2x epochs, 1/2 wd),
     K = 1..Kmax; the setting with the lower K -> inf asymptote wins (fit.py picks it). The probe's
     sizes and the distillation teacher's come first, then
  4. distillation: the best ensemble at one size into a student of that size, and self-distillation;
  5. the standard recipe at the other data budgets, for its data law and data-efficiency multipliers
     (and, where a preset sets reg_data_budgets, the regularized search there too, for its data law);
  6. the other sizes' ensembles (the costliest runs) last;
then report.py (fit.py's fits) turns the points into results/<preset>/ (fits.json, PNGs, points.jsonl).

    python sweep.py --preset mini --dry_run      # the plan: runs, tokens, FLOPs and an ETA
    python sweep.py --preset mini                # ~25 core-hours (its real search; see README); resumable
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

# The search design mini and synthetic share, set from probe runs (the miniature issue): lr fixed at
# 3e-3, narrow grids, seed 0 searches and seeds 1.. are fresh draws at the searched point (they double
# as the unshifted ensemble's members), the member shift measured at the two smallest sizes.
CPU_SEARCH = dict(
    epochs=[4, 8, 16, 32], lr=[3e-3], wd=[0.1, 0.4, 0.8, 1.6, 3.2, 6.4],
    std_start=dict(epochs=8, lr=3e-3), reg_start=dict(epochs=8, lr=3e-3, wd=1.6),
    std_axes=["epochs"], reg_axes=["epochs", "wd"], max_moves=2, budget_max_moves=1,
    seeds=4, std_seeds=2, budget_seeds=2, K=4,
    member_settings=["x1", "shift"], member_probe=["tiny-67k", "tiny-120k"],
    distill_model="tiny-120k", distill_seeds=2, mix_weight=0.5, corpus_mult=2, reg_data_budgets=True)

PRESETS = {
    # byte-level Shakespeare at D = 256 KiB, designed from probe runs (the miniature issue): here the
    # model-size effect is 4-13x the seed noise (at 64 KiB it was below it). Sizes 1.7-2.2x apart over
    # 11x in N.
    "mini": dict(
        dataset="shakespeare_byte", prepare=["shakespeare", "--tokenizer", "byte"],
        D=262_144, data_budgets=[65_536, 131_072], seq_len=128, batch_size=8, val_tokens=65_536,
        std_budgets=[1_048_576], std_budget_models=["tiny-950k"], std_budget_start=dict(epochs=4),
        models=["tiny-67k", "tiny-120k", "tiny-240k", "tiny-530k", "tiny-950k"], **CPU_SEARCH),
    # a generated Markov source (data/synthetic.py) whose limits are known exactly, so every asymptote
    # sits next to the Bayes-optimal loss for its D and the entropy rate. The default V = 1024 source
    # at D = 128K: probe runs (the miniature issue) showed loss falling strongly with N there (8 epochs,
    # wd 1.6: 3.476 / 3.273 / 3.004 at tiny-67k / 240k / 950k) yet 0.27+ nats above the Bayes floor
    # 2.729: capacity-limited, the regime of "bigger is better, down to an asymptote". (The earlier
    # V = 256 bigram was learned by the smallest model: no N effect.)
    "synthetic": dict(
        dataset="data_synthetic", prepare=None,
        source=dict(V=1024, k=1, s=32, alpha=0.3, n_train=1_048_576, n_val=65_536, seed=1234),
        D=131_072, data_budgets=[32_768, 65_536], seq_len=128, batch_size=8, val_tokens=32_768,
        std_budgets=[524_288], std_budget_models=["tiny-950k"], std_budget_start=dict(epochs=4),
        models=["tiny-67k", "tiny-120k", "tiny-240k", "tiny-530k", "tiny-950k"], **CPU_SEARCH),
    # one H100/H200 in about 5 minutes (predicted, not yet run): byte-level Shakespeare at D = 1 MiB,
    # 1M-46M parameters, one wd step each way around the probes' point, eager (compiling four shapes
    # would take longer than training them). The fresh seeds (the ensemble's members) train together
    # as one batched model (batched.py), sharing each kernel launch.
    "gpu": dict(
        dataset="shakespeare_byte", prepare=["shakespeare", "--tokenizer", "byte"],
        D=1_048_576, data_budgets=[], seq_len=256, batch_size=32, val_tokens=262_144,
        models=["tiny-950k", "tiny-3.8m", "tiny-17m", "tiny-45m"],
        epochs=[4, 8, 16], lr=[3e-3], wd=[0.1, 0.4, 0.8, 1.6, 3.2],
        std_start=dict(epochs=8, lr=3e-3), reg_start=dict(epochs=8, lr=3e-3, wd=0.8),
        std_axes=["epochs"], reg_axes=["wd"], max_moves=1, seeds=4, std_seeds=1, K=4,
        member_settings=["x1"], distill_model="tiny-3.8m", distill_seeds=1, mix_weight=0.5, corpus_mult=1,
        device="cuda", compile="false", batched_members=True),
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
    # continued pre-training in miniature (the paper's section 1 CPT result, stage_cpt): a base model
    # pretrained on one generated source, then continued on a related one: the same table with a quarter
    # of its contexts' next-symbol distributions redrawn (a real domain shift that the base partly
    # transfers to, as web text does to math; both limits exact). (A wholly different table made the base
    # worse than uniform on the domain, so "continuing" was unlearning.) (a) the default recipe, one
    # pass at wd 0.1, at D and 2-16x D (its data law), against (b) the paper's: D epoched with tuned wd,
    # and an ensemble of K continued members.
    "cpt": dict(
        dataset="data_cpt_domain", prepare=None,
        source=dict(V=256, k=1, s=16, alpha=0.3, n_train=524_288, n_val=32_768, seed=7, shift=0.25, shift_seed=11),
        base_source=dict(V=256, k=1, s=16, alpha=0.3, n_train=1_048_576, n_val=32_768, seed=7),
        base=dict(model="tiny-950k", D=1_048_576, epochs=4, lr=3e-3, wd=0.1),
        D=32_768, data_budgets=[65_536, 131_072, 262_144, 524_288], seq_len=128, batch_size=16, val_tokens=32_768,
        models=["tiny-950k"], epochs=[1, 2, 4, 8, 16, 32], lr=[1e-3], wd=[0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4],
        reg_start=dict(epochs=8, lr=1e-3, wd=0.8), K=8, max_moves=4, cpt=True),
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
    """runs_dir holds the run folders (checkpoints; git-ignored). results_dir/runs/ holds a copy of
    every finished run's summary.json and every ensemble evaluation, written as each one lands, so
    that committing results_dir keeps them: a point found there is done and never retrained, on any
    machine, whether or not its run folder still exists."""
    def __init__(self, preset, name, runs_dir, dry_run=False, dataset=None, results_dir=None):
        self.p, self.name, self.runs_dir, self.dry = preset, name, runs_dir, dry_run
        self.dataset = dataset or preset["dataset"]
        self.points_dir = os.path.join(results_dir or os.path.join("results", name), "runs")
        self.planned = []         # dry run: configs that would train
        self.t0 = time.time()
        self.fingerprints = {}    # dataset spec -> its data fingerprint here (None: not prepared yet)

    def point_path(self, cfg_or_name):
        name = cfg_or_name if isinstance(cfg_or_name, str) else os.path.basename(cfg_or_name.out_dir)
        return os.path.join(self.points_dir, name + ".json")

    def keep(self, name, obj):
        """Copy a finished run's summary (or an ensemble evaluation) into results_dir/runs/."""
        os.makedirs(self.points_dir, exist_ok=True)
        train.atomic_write_json(self.point_path(name), obj)

    def config(self, model, epochs, lr, wd, seed=0, D=None, **extra):
        D = D or self.p["D"]
        name = f"{model}_D{D}_ep{epochs:g}_lr{lr:g}_wd{wd:g}_s{seed}"
        if extra.get("mix_data"):
            name += "_" + extra.pop("tag")
        extra.pop("tag", None)
        if "device" in self.p:
            extra.setdefault("device", self.p["device"])
            extra.setdefault("compile", self.p.get("compile", "auto"))
        return TrainConfig(dataset=self.dataset, train_tokens=D, seq_len=self.p["seq_len"],
                           batch_size=self.p["batch_size"], val_tokens=self.p["val_tokens"], model=model,
                           epochs=epochs, lr=lr, wd=wd, seed=seed, data_seed=seed, evals=4, resume=True,
                           out_dir=os.path.join(self.runs_dir, name), **extra)

    def data_fingerprint(self, dataset):
        """The dataset's fingerprint as prepared here now (data.meta_fingerprint), or None if it is not."""
        if dataset not in self.fingerprints:
            try:
                self.fingerprints[dataset] = data.meta_fingerprint(data.load_dataset(dataset).meta)
            except data.DataError:
                self.fingerprints[dataset] = None
        return self.fingerprints[dataset]

    def finished(self, cfg):
        """Whether cfg has a committed point or a finished run folder (its summary.json)."""
        return os.path.exists(self.point_path(cfg)) or os.path.exists(os.path.join(cfg.out_dir, "summary.json"))

    def run(self, cfg, trainer=None):
        """Train cfg unless finished (a committed point, or a finished run folder); return its val loss."""
        path = os.path.join(cfg.out_dir, "summary.json")
        if not os.path.exists(self.point_path(cfg)) and os.path.exists(path):
            with open(path) as f:                      # finished before points were kept: keep it now
                self.keep(os.path.basename(cfg.out_dir), json.load(f))
        if os.path.exists(self.point_path(cfg)):
            with open(self.point_path(cfg)) as f:
                s = json.load(f)
            seen = (s["dataset"], s["seq_len"], s["batch_size"])
            if seen != (cfg.dataset, cfg.seq_len, cfg.batch_size):
                raise train.ConfigError(f"{cfg.out_dir} was trained on {seen[0]} (T={seen[1]}, B={seen[2]}), "
                                        f"not {cfg.dataset}; use another --runs_dir")
            # a point from another preparation of the data (another split, a replaced corpus) is not
            # this sweep's: points from before fingerprints were recorded have none and are trusted
            fp, here = s.get("data_fingerprint"), self.data_fingerprint(cfg.dataset)
            if fp and here and fp != here:
                raise train.ConfigError(f"{self.point_path(cfg)} was trained on another preparation of {cfg.dataset} "
                                        f"(data fingerprint {fp}, here {here}); prepare the data as its run did, "
                                        f"or keep this sweep's points apart with --out and --runs_dir")
            dtype = train.dtype_name(train.resolve_device(cfg)[1])
            if s.get("dtype", "float32") != dtype:     # a sweep never mixes fp32 and bf16 points
                raise train.ConfigError(f"{cfg.out_dir} was trained in {s.get('dtype', 'float32')}, this "
                                        f"machine trains in {dtype}; use another --runs_dir (or --dtype to match)")
        elif self.dry:
            if all(c.out_dir != cfg.out_dir for c in self.planned):    # a config asked for twice trains once
                self.planned.append(cfg)
            return self.guess(cfg)
        else:
            t = time.time()
            s = trainer(cfg) if trainer else train.train(cfg, quiet=True)
            self.keep(os.path.basename(cfg.out_dir), s)
            print(f"[{(time.time() - self.t0) / 60:5.1f} min] {os.path.basename(cfg.out_dir)}: "
                  f"val {s['val_loss']:.4f} train {s['train_loss']:.4f} ({time.time() - t:.0f}s)", flush=True)
        return s["val_loss"]

    def ensure_checkpoints(self, cfgs, why):
        """Stages that read weights (ensemble scoring, distillation) need the run folders: a member
        whose point is committed but whose folder is gone (a fresh clone) is retrained, deterministically."""
        for c in cfgs:
            if not os.path.exists(os.path.join(c.out_dir, "ckpt.pt")) and not self.dry:
                print(f"{why}: {os.path.basename(c.out_dir)} is done but its checkpoint is not here "
                      f"({c.out_dir}); retraining it", flush=True)
                train.train(c, quiet=True)

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
        moves = self.p["max_moves"] if D is None else self.p.get("budget_max_moves", self.p["max_moves"])
        for _ in range(moves):
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
    def run_together(self, cfgs):
        """With the preset's batched_members (a GPU), train the unfinished ones of these same-shape
        runs (seeds of one config) together as one stacked model (batched.py), so small members
        share each kernel launch; they land as ordinary runs that self.run then finds done."""
        if not self.p.get("batched_members") or self.dry:
            return
        todo = [c for c in cfgs if not self.finished(c)]
        if len(todo) > 1:
            import batched
            try:            # keyed by seed: a member's summary says "member": its seed, as in an ensemble
                done = batched.train_members_batched({c.seed: c for c in todo}, quiet=True)
            except train.ConfigError as e:      # e.g. checkpoints at different steps: one by one instead
                print(f"batched members: {e}; training them one by one", flush=True)
                return
            for c in todo:
                self.keep(os.path.basename(c.out_dir), done[c.seed])
                print(f"[{(time.time() - self.t0) / 60:5.1f} min] {os.path.basename(c.out_dir)} (batched, "
                      f"{len(todo)} together): val {done[c.seed]['val_loss']:.4f}", flush=True)

    def fresh_seeds(self, m, pt, n, D=None):
        """Seeds 1 .. n-1 at the searched point: fresh draws, reported apart from the search's seed 0
        (which won a comparison of near-ties and so sits low by selection)."""
        cfgs = [self.config(m, seed=seed, D=D, **pt) for seed in range(1, n)]
        self.run_together(cfgs)
        for c in cfgs:
            self.run(c)

    def stage_standard(self, models, D=None, lrs=None, start=None, seeds=None):
        """wd fixed at 0.1; search epochs and lr (std_axes; at another data budget: epochs only, at the
        lr found at the main budget, to save compute: the data law needs the best loss per D)."""
        out = {}
        if seeds is None:
            seeds = self.p.get("std_seeds", 1) if D is None else self.p.get("budget_seeds", 1)
        for m in models:
            begin = {**self.p["std_start"], **(start or {}), "wd": STD_WD,
                     **({"lr": lrs[m]["lr"]} if lrs and m in lrs else {})}
            axes = ["epochs"] if lrs else self.p.get("std_axes", ["epochs", "lr"])
            pt, l, cert = self.coordinate_descent(m, begin, axes, D)
            self.fresh_seeds(m, pt, seeds, D)
            out[m] = pt
            self.say("standard ", m, D, pt, l, cert)
        return out

    def stage_regularized(self, models, std, D=None):
        """Search (epochs, lr, wd) from the standard optimum's epochs and lr; a preset may search fewer
        axes (reg_axes) to save compute. Then fresh seeds at the optimum (error bars, and the members of
        the unshifted ensemble)."""
        out = {}
        axes = self.p.get("reg_axes", ["epochs", "lr", "wd"])
        for m in models:
            start = dict(self.p["reg_start"], **{k: std[m][k] for k in ("epochs", "lr") if m in std})
            pt, l, cert = self.coordinate_descent(m, start, axes, D)
            self.fresh_seeds(m, pt, self.p["seeds"] if D is None else self.p.get("budget_seeds", self.p["seeds"]), D)
            out[m] = pt
            self.say("regularized", m, D, pt, l, cert)
        return out

    def member_settings(self, pt):
        """The regularized point itself and the paper's member shift: 2x epochs, 1/2 wd, past the
        search grid's edge if need be (a searched 32 epochs gives 64-epoch members, as wd / 2 may
        leave the wd grid: the shift is a rule, not a grid step)."""
        shifted = dict(pt, epochs=2 * pt["epochs"], wd=pt["wd"] / 2)
        return {k: v for k, v in {"x1": pt, "shift": shifted}.items()
                if k in self.p.get("member_settings", ["x1", "shift"])}

    def members(self, m, pt):
        """The K member configs at pt: member i = seed i (members 1.. are the regularized point's fresh
        seeds when pt is it)."""
        return [self.config(m, seed=i, **pt) for i in range(self.p["K"])]

    def ensemble_name(self, m, pt):
        """An ensemble point is named after member 0's config."""
        return f"ensemble_{os.path.basename(self.config(m, seed=0, **pt).out_dir)}"

    def ensemble(self, m, pt):
        """Train (or find) K members at pt and score them; returns ensemble.json's dict (None in a
        dry run)."""
        cfgs = self.members(m, pt)
        self.run_together(cfgs)
        for c in cfgs:
            self.run(c)
        name = self.ensemble_name(m, pt)
        if os.path.exists(self.point_path(name)):
            with open(self.point_path(name)) as f:
                return json.load(f)
        if self.dry:
            return None
        import ensemble
        self.ensure_checkpoints(cfgs, f"ensemble {m}")
        res = ensemble.evaluate_ensemble([c.out_dir for c in cfgs], combine="both", quiet=True,
                                         out=os.path.join(self.runs_dir, name + ".json"))
        self.keep(name, res)
        return res

    @staticmethod
    def k_asymptote(res):
        """An ensemble's K -> inf loss: the fitted E of its subset-averaged curve, or its largest-K loss
        where the fit fails."""
        import fit
        K = sorted(int(k) for k in res["losses"])
        try:
            f = fit.fit_power_law(K, [res["losses"][str(k)] for k in K], n_boot=0, loo=False)
            return f.E if math.isfinite(f.E) else res["losses"][str(K[-1])]
        except ValueError:
            return res["losses"][str(K[-1])]

    def verdict_path(self, m):
        return os.path.join(os.path.dirname(self.points_dir), f"member_probe_{m}.json")

    def probe_verdict(self, m, pt):
        """Both member settings' ensembles at probe size m and their K -> inf losses, written to
        verdict_path(m) with the names of the ensemble points it was read from."""
        settings = self.member_settings(pt)
        res = {tag: self.ensemble(m, p) for tag, p in settings.items()}
        if self.dry or any(r is None for r in res.values()):
            return
        v = {tag: self.k_asymptote(r) for tag, r in res.items()}
        print(f"member setting at {m}: K -> inf loss {v['x1']:.4f} unshifted, {v['shift']:.4f} shifted "
              f"(2x epochs, wd / 2)", flush=True)
        names = [self.ensemble_name(m, p) for p in settings.values()]
        train.atomic_write_json(self.verdict_path(m), dict(v, model=m, ensembles=names))

    def read_verdict(self, m):
        """The probe's verdict at m, or None if it is missing or its ensemble points are gone (stale)."""
        if not os.path.exists(self.verdict_path(m)):
            return None
        with open(self.verdict_path(m)) as f:
            v = json.load(f)
        return v if all(os.path.exists(self.point_path(n)) for n in v["ensembles"]) else None

    def cannot_win(self, m, tag, members, verdicts, rival):
        """Whether the chosen member setting, past the probe sizes, stops after its first member: when
        that member's loss, less twice the largest gain from a member to its ensemble's K -> inf loss
        that the setting showed at the probe sizes, is still above the other setting's K -> inf loss
        at this size (`rival`, already scored), its ensemble cannot win there by the probe's own
        measure, with a 2x margin. (The shift's cost per member grows with N: at the mini's tiny-950k
        one 64-epoch member scored 2.30 against 1.67 unshifted.) It reads committed points only, so a
        rerun decides the same."""
        if self.dry:
            return False
        self.run(members[0])
        with open(self.point_path(members[0])) as f:
            first = json.load(f)["val_loss"]
        gains = []
        for v in verdicts.values():           # its ensembles are named in member_settings order
            with open(self.point_path(v["ensembles"][("x1", "shift").index(tag)])) as f:
                r = json.load(f)
            gains.append(float(np.mean(r["member_losses"])) - self.k_asymptote(r))
        bar, other = first - 2 * max(gains), self.k_asymptote(rival)
        if bar > other:
            print(f"ensemble  {m} {tag}: stopped after its first member ({first:.4f}): less twice the largest "
                  f"member-to-K->inf gain at the probe sizes ({max(gains):.4f}) it is {bar:.4f}, above the other "
                  f"setting's K -> inf loss here ({other:.4f})", flush=True)
        return bar > other

    def stage_ensembles(self, models, reg):
        """Ensembles per N. Members at the paper's shift (2x epochs, 1/2 wd) unless
        measurement says otherwise; with member_probe, both settings are measured at those sizes and
        the unshifted point is used elsewhere only if it had the lower K -> inf asymptote at every one.
        Each probe size's verdict is written to results/<preset>/member_probe_<size>.json, so a shard
        without the probe sizes (or with some of them) decides once every verdict is there."""
        settings = self.p.get("member_settings", ["x1", "shift"])
        probe = [m for m in self.p.get("member_probe", []) if m in self.p["models"]] if len(settings) == 2 else []
        for m in probe:
            if m in reg and self.read_verdict(m) is None:     # (a valid verdict is never recomputed)
                self.probe_verdict(m, reg[m])
        verdicts = {m: self.read_verdict(m) for m in probe}
        choice = None
        if probe and all(verdicts.values()):
            choice = "x1" if all(v["x1"] < v["shift"] for v in verdicts.values()) else "shift"
            print(f"members elsewhere: {'unshifted' if choice == 'x1' else 'shifted'} (K -> inf loss shifted vs "
                  f"unshifted: " + ", ".join(f"{v['shift']:.4f} vs {v['x1']:.4f} at {m}" for m, v in verdicts.items())
                  + ")", flush=True)
        elif probe and self.dry:
            choice = "shift"
            print("dry run: the member setting follows the probe's real losses; planned as shifted "
                  "(the costlier case)")
        elif probe:
            print(f"member setting undecided: no verdict yet for {', '.join(m for m in probe if not verdicts[m])} "
                  f"(another shard's); rerun this shard when "
                  f"{os.path.dirname(self.points_dir)}/member_probe_<size>.json are all there", flush=True)
        best = {}
        for m in models:
            for tag, pt in self.member_settings(reg[m]).items():
                if probe and m not in probe and choice is None:     # undecided: wait for the probe
                    continue
                members = self.members(m, pt)
                # the other setting is scored too where its members are trained already (the unshifted
                # ones are the regularized point's seeds): evaluation only, and the K -> inf comparison
                # below then holds at every size, not only at the probe's
                if (m not in probe and choice is not None and tag != choice
                        and not all(self.finished(c) for c in members)):
                    continue
                if m not in probe and tag == choice and m in best and self.cannot_win(m, tag, members, verdicts, best[m][1]):
                    continue
                res = self.ensemble(m, pt)
                if res is None:             # a dry run: the members are planned; their students can be too
                    best.setdefault(m, (members, None, pt))
                    continue
                L, K = res["losses"], self.p["K"]
                print(f"ensemble  {m} {tag} {pt}: k=1..{K} (mean over k-subsets) "
                      + " ".join(f"{L[str(k)]:.4f}" for k in range(1, K + 1)), flush=True)
                if m not in best or self.k_asymptote(res) < self.k_asymptote(best[m][1]):
                    best[m] = (members, res, pt)
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
            corpus = os.path.abspath(os.path.join(self.runs_dir, "corpus_" + os.path.basename(members[0].out_dir) + f"_{tag}"))
            for seed in range(self.p.get("distill_seeds", self.p["seeds"])):
                cfg = self.config(m, seed=seed, **reg[m], mix_weight=self.p["mix_weight"], recipe=recipe,
                                  tag=f"{tag}distill", mix_data=corpus)

                def trainer(c, teacher=teacher, corpus=corpus):
                    self.ensure_checkpoints(teacher, f"distillation teacher for {os.path.basename(c.out_dir)}")
                    opts = distill.DistillConfig(mode="seq", corpus=corpus, corpus_seed=0,
                                                 corpus_tokens=self.p["corpus_mult"] * self.p["D"])
                    return distill.distill(c, [t.out_dir for t in teacher], opts, quiet=True)
                self.run(cfg, trainer=trainer)


    def stage_cpt(self, out):
        """The cpt preset end to end: pretrain the base on base_source, then continue it on the domain
        source (train.py --init_from: fresh optimizer, schedule and data order) with (a) the default
        recipe: one pass at wd 0.1 at D and every data budget, and (b) the paper's: D epoched, (epochs,
        wd) searched, and K members at the optimum, logit-averaged. The members start from the same base
        weights (seed changes nothing), so they differ only in data order. Writes out/points.jsonl and
        fit.py's report, whose efficiency rows are (b)'s multiplier over (a)'s data law."""
        import dataclasses
        import report
        p, b = self.p, self.p["base"]
        base_data = os.path.join(self.runs_dir, "data_cpt_base")
        if not self.dry:
            generate_once(base_data, p["base_source"])
        base = self.config(b["model"], b["epochs"], b["lr"], b["wd"], D=b["D"])
        base = dataclasses.replace(base, dataset=base_data, recipe="base",
                                   out_dir=os.path.join(self.runs_dir, "base_" + os.path.basename(base.out_dir)))
        self.run(base)
        if not self.dry:      # the continued runs start from its weights: a committed point is not enough
            self.ensure_checkpoints([base], "cpt base")
        cont = Sweep(p, self.name, os.path.join(self.runs_dir, "continued"), self.dry, self.dataset,
                     results_dir=os.path.dirname(self.points_dir))
        cont.planned, m, src = self.planned, b["model"], dict(init_from=base.out_dir)   # one plan for the dry run
        before = cont.config(m, 1, p["lr"][0], STD_WD, **src, eval_only=True, recipe="base")   # base on the domain
        before = dataclasses.replace(before, out_dir=before.out_dir + "_before")
        if not self.dry:      # an evaluation, no training: not part of the plan
            cont.run(before)
        default = [cont.config(m, 1, p["lr"][0], STD_WD, D=D, **src, recipe="cpt-default")
                   for D in [p["D"]] + p["data_budgets"]]
        for c in default:
            cont.run(c)
        pt, loss, cert = cont.coordinate_descent(m, {**p["reg_start"], **src, "recipe": "cpt-tuned"}, ["epochs", "wd"])
        cont.say("cpt tuned", m, None, {k: pt[k] for k in ("epochs", "lr", "wd")}, loss, cert)
        ens = cont.ensemble(m, pt)          # K members at the tuned point, scored (None in a dry run)
        if self.dry:
            return
        # the points, labelled by role: fit.py measures every recipe against "standard" of the same data
        rows = []
        for recipe, cfgs in (("base before CPT", [before]), ("standard", default), ("cpt tuned", [cont.config(m, **pt)])):
            for c in cfgs:
                with open(cont.point_path(c)) as f:     # the kept summary: the run folder may be gone
                    s = json.load(f)
                rows.append({**{k: v for k, v in s.items() if k != "history"}, "recipe": recipe, "run": c.out_dir})
        K = str(ens["K"])
        rows.append({**{k: ens[k] for k in ("N", "D", "dataset", "tokenizer", "epochs", "lr", "wd", "seq_len")},
                     "recipe": f"cpt ensemble K={K}", "val_loss": ens["losses"][K],
                     "member_losses": ens["member_losses"], "init_from": base.out_dir})
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "points.jsonl.tmp"), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        os.replace(os.path.join(out, "points.jsonl.tmp"), os.path.join(out, "points.jsonl"))
        report.main([os.path.join(out, "points.jsonl"), "--out", out])
        print(f"cpt: every continued run starts from {base.out_dir}; the {K} members differ only in data order; "
              f"base before CPT {rows[0]['val_loss']:.4f}, ensemble {ens['losses'][K]:.4f} "
              f"(members {' '.join(f'{l:.4f}' for l in ens['member_losses'])})")


# ----------------------------------------------------------------------------
# Report: points.jsonl -> fit.py -> fits.json + PNGs, plus learning curves

def collect_points(sweep):
    """Every finished run under runs_dir, labelled by recipe: "standard" = the wd 0.1 runs (at every
    data budget), "regularized" = every run at the main budget on the search grids (its search space
    contains the standard one; extra seeds and ensemble members at the optimum count as seeds; a
    shifted member past the grid's edge is an ensemble's member only, never the reported single
    model: the search did not visit its config), students by their
    own label, and one "ensemble" row per ensemble evaluation. Read from disk, so the report is the
    same whether the sweep ran in one process, in shards, or across sessions."""
    rows = []
    names = sorted(os.listdir(sweep.points_dir)) if os.path.isdir(sweep.points_dir) else []
    for name in names:
        path = os.path.join(sweep.points_dir, name)
        if not name.endswith(".json"):
            continue
        with open(path) as f:
            s = json.load(f)
        if name.startswith("ensemble_"):
            rows.append({**s, "recipe": "ensemble"})
            continue
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
        on_grid = all(s[a] in sweep.p[a] for a in ("epochs", "lr", "wd"))   # not a shifted member's config
        if on_grid and any(at_budget(s["D"], B, sweep.p["seq_len"]) for B in budgets):
            rows.append({**s, "recipe": "regularized"})
    # a budget's runs count as "regularized" only once its wd search has begun (a run at wd != 0.1):
    # before that they are the standard recipe's alone, and a report would pass them off as tuned
    searched = {(r["D"], r["model"]) for r in rows if r["recipe"] == "regularized" and r["wd"] != STD_WD}
    return [r for r in rows if r["recipe"] != "regularized" or (r["D"], r["model"]) in searched]


def write_report(sweep, out):
    import report
    points = collect_points(sweep)
    if not points:
        raise train.ConfigError(f"no finished runs in {sweep.points_dir}; run the sweep first")
    os.makedirs(out, exist_ok=True)
    pts = os.path.join(out, "points.jsonl")
    with open(pts + ".tmp", "w") as f:
        for r in points:
            f.write(json.dumps(r) + "\n")
    os.replace(pts + ".tmp", pts)
    if report.main([pts, "--out", out]) == 2:      # too few points yet (a sweep part-way): tables only
        fits = dict(fits=[], data_laws=[], joint=[], efficiency=[])
    else:
        with open(os.path.join(out, "fits.json")) as f:
            fits = json.load(f)
    learning_curves(sweep, points, out)
    downstream(sweep, out)
    text = summary_table(sweep, points, fits)
    found = os.path.join(out, "findings.md")
    if os.path.exists(found):            # the findings table closes the summary, as the README quotes it
        with open(found) as f:
            text += "\n## Findings (findings.md)\n\n" + f.read()
    atomic_write_text(os.path.join(out, "summary.md"), text)
    print(text)
    quote_in_readme(sweep.name, out)


def atomic_write_text(path, text):
    """Write, then rename: a reader never sees half a file."""
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "README.md")


def quote_in_readme(name, out, readme=README):
    """The README's results section quotes results/<name>/findings.md between two marker lines; a
    report written there refreshes the quote, so the README stays true to the committed points. A
    report written elsewhere (--out) or a README without the markers is left alone."""
    begin, end = f"<!-- findings: results/{name}/findings.md -->", f"<!-- end findings: {name} -->"
    found = os.path.join(out, "findings.md")
    if (os.path.abspath(out) != os.path.join(os.path.dirname(readme), "results", name)
            or not os.path.exists(readme) or not os.path.exists(found)):
        return
    with open(readme) as f:
        text = f.read()
    if begin not in text or end not in text:
        return
    with open(found) as f:
        table = f.read().strip()
    head, rest = text.split(begin, 1)
    atomic_write_text(readme, head + begin + "\n" + table + "\n" + end + rest.split(end, 1)[1])


def downstream(sweep, out):
    """The paper's downstream figure (evaluate.downstream_figure) over every run of the sweep that
    `python evaluate.py RUN` has scored: its eval.json is kept beside the points (runs/eval/), so the
    figure survives the run folders."""
    import evaluate
    keep = os.path.join(sweep.points_dir, "eval")
    found = evaluate.collect_eval_jsons([sweep.runs_dir]) if os.path.isdir(sweep.runs_dir) else []
    for path in found:
        with open(path) as f:
            os.makedirs(keep, exist_ok=True)
            train.atomic_write_json(os.path.join(keep, os.path.basename(os.path.dirname(path)) + ".json"),
                                    json.load(f))
    kept = sorted(os.path.join(keep, n) for n in os.listdir(keep)) if os.path.isdir(keep) else []
    if kept:
        evaluate.downstream_figure(kept, os.path.join(out, "downstream.png"))


def mean_sd(xs):
    xs = np.asarray(xs, dtype=float)
    sd = f" ± {xs.std(ddof=1):.3f}" if len(xs) > 1 else ""
    return f"{xs.mean():.3f}{sd} (n={len(xs)})"


def fresh(losses, seed0):
    """'mean ± sd (n) of the fresh seeds; seed 0: x' (only seed 0 where no fresh seed was trained)."""
    return f"{mean_sd(losses)}; seed 0: {seed0:.3f}" if losses else f"{seed0:.3f} (seed 0 only)"


def number(v, fmt):
    """A fitted value for a table, or "-" where fit.py has none (fits.json writes nan as null)."""
    return "-" if v is None or not math.isfinite(v) else f"{v:{fmt}}"


def interval(ci, fmt):
    """A 90% interval for a table, or "-" where fit.py computed none."""
    if ci is None or any(number(c, fmt) == "-" for c in ci):
        return "-"
    return f"[{number(ci[0], fmt)}, {number(ci[1], fmt)}]"


def data_unit(points):
    """What one token of the points' data is: byte, symbol (a generated source) or token."""
    tok = {r.get("tokenizer") for r in points} - {None}
    return {"byte": "byte", "synthetic": "symbol"}.get(tok.pop(), "token") if len(tok) == 1 else "token"


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
            return None, [], "", None
        cfg = min(seed0, key=seed0.get)
        axes = (sweep.p.get("reg_axes", ["epochs", "lr", "wd"]) if recipe == "regularized"
                else sweep.p.get("std_axes", ["epochs", "lr"]))
        point = dict(zip(("epochs", "lr", "wd"), cfg))
        missing = sum((nb["epochs"], nb["lr"], nb["wd"]) not in seed0
                      for nb in grid_neighbours({a: sweep.p[a] for a in axes}, point))
        cert = "certified" if missing == 0 else f"no certificate: {missing} neighbours untrained"
        return cfg, [by[cfg][k] for k in sorted(by[cfg]) if k != 0], cert, seed0[cfg]

    unit = data_unit(main)
    lines = [f"# {sweep.name}: D = {D:,} {unit}s of {sweep.dataset}, T = {sweep.p['seq_len']}, "
             f"batch {sweep.p['batch_size']}\n",
             "The searched point per recipe is the lowest seed-0 loss (as the search chooses); it is "
             "reported as the mean ± sd of the fresh seeds trained there (seeds 1..), with the search's own "
             "seed-0 loss after it: that one won a comparison of near-ties and sits low by selection. The "
             "unshifted ensemble's members are seeds 0.. at that point (the search's run and the fresh "
             "seeds); the ensemble shown per size is the setting with the lower K -> inf loss.\n",
             f"| model | N | standard: best (epochs, lr) -> val | regularized: best (epochs, lr, wd) -> val "
             f"| ensemble k=1..{K} (logit rule; members' setting, the other's k={K}) | k={K} prob rule |",
             "|---|---|---|---|---|---|"]
    ens, others = {}, {}   # per model, the member setting with the lower K -> inf loss (as the report's), and the rest
    inf = {id(r): Sweep.k_asymptote(r) for r in points if r["recipe"] == "ensemble" and r.get("model")}
    for r in points:
        if id(r) in inf:
            o = ens.get(r["model"])
            if o is None or inf[id(r)] < inf[id(o)]:
                ens[r["model"]] = r
    for r in points:
        if r["recipe"] == "ensemble" and r.get("model") and r is not ens[r["model"]]:
            others.setdefault(r["model"], []).append(r)
    setting = lambda e: f"{e['epochs']:g} ep, wd {e['wd']:g}"     # noqa: E731  (the members' config)
    for m in sweep.p["models"]:
        (sc, sl, scert, s0), (rc, rl, rcert, r0) = best("standard", m), best("regularized", m)
        if sc is None and rc is None:
            continue
        N = next(r["N"] for r in main if r.get("model") == m)
        e = ens.get(m)
        el = " / ".join(f"{e['losses'][str(k)]:.3f}" for k in range(1, e["K"] + 1)) if e else "-"
        if e and "epochs" in e:
            el += f" ({setting(e)}" + "".join(f"; {setting(o)}: {o['losses'][str(o['K'])]:.3f}"
                                              for o in others.get(m, []) if "epochs" in o) + ")"
        ep = f"{e['losses_probs'][str(e['K'])]:.3f}" if e and "losses_probs" in e else "-"
        st = f"{sc[:2]} -> {fresh(sl, s0)}, {scert}" if sc else "-"
        rg = f"{rc} -> {fresh(rl, r0)}, {rcert}" if rc else "- (not searched yet)"
        lines.append(f"| {m} | {N:,} | {st} | {rg} | {el} | {ep} |")
    lines += ["", "| fit | x | E (asymptote) | 90% interval | identified | note |", "|---|---|---|---|---|---|"]
    for f in fits["fits"] + fits["data_laws"]:
        x = (f"K at N={f['N'] * 1e9:,.0f}" if f["axis"] == "K" and f.get("N") is not None else
             "N (parameters)" if f["axis"].startswith("N") else f"D ({unit}s)" if f["axis"].startswith("D") else f["axis"])
        at = f"D={f['D'] * 1e9:,.0f}" if f.get("D") else "over D"
        lines.append(f"| {f['recipe'].split(' [')[0]} ({at}) | {x} | {number(f['E'], '.3g')} | "
                     f"{interval(f['E_ci'], '.3g')} | {f['identified']} | {f['warning'] or ''} |")
    for j in fits["joint"]:
        lines.append(f"| joint N, K -> inf | two-step | {number(j['E'], '.3f')} | {interval(j['E_ci'], '.3f')} | "
                     f"{j['identified']} | {j['warning'] or ''} |")
    # a synthetic source's known limits on the same val tokens (train.py stores them in each summary)
    lim = {r["D"]: r["limits"] for r in points if r.get("limits") and "mix" not in r}
    if lim:
        lines += ["", "| D | Bayes-optimal loss given D | true source (these val tokens) | entropy rate |",
                  "|---|---|---|---|"]
        for d in sorted(lim):
            lines.append(f"| {d:,} | {lim[d]['bayes']:.4f} | {lim[d]['entropy']:.4f} | {lim[d]['entropy_rate']:.4f} |")
        # every asymptote beside its gap to the floors at its D. The Bayes predictor is optimal in
        # expectation over sources, not for this one: an asymptote below it is flagged, not refused.
        lines += ["", "| asymptote | D | E [90%] | E - Bayes(D) | E - true source | note |", "|---|---|---|---|---|---|"]
        for f in fits["fits"] + fits["joint"]:
            D_f = round(f["D"] * 1e9) if f.get("D") else None
            near = min(lim, key=lambda d: abs(d - D_f)) if D_f else None
            if near is None or abs(near - D_f) > sweep.p["seq_len"] + 1 or f.get("axis", "N").startswith("D"):
                continue
            b, h, (lo, hi) = lim[near]["bayes"], lim[near]["entropy"], f["E_ci"]
            flag = "below the Bayes floor by more than its interval: look at it" if hi is not None and hi < b else ""
            what = f["recipe"].split(" [")[0] + (f" (K at N={f['N'] * 1e9:,.0f})" if f.get("axis") == "K" else
                                                 " (joint)" if "E_N" in f else " (N)")
            ci = f"[{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else ""
            lines.append(f"| {what} | {near:,} | {f['E']:.3f} {ci} | {f['E'] - b:+.3f} | {f['E'] - h:+.3f} | "
                         f"{flag or ('' if f['identified'] else 'E not identified')} |")
    if fits["efficiency"]:
        lines += ["", "| data efficiency vs standard | D | loss | of | standard's best at D | multiplier | note |",
                  "|---|---|---|---|---|---|---|"]
        for e in sorted(fits["efficiency"], key=lambda e: (e["recipe"], e["D"])):
            mult = "inf" if e["infinite"] else f"{e['multiplier']:.2f}x"
            lines.append(f"| {e['recipe'].split(' [')[0]} | {e['D'] * 1e9:,.0f} | {e['loss']:.3f} | {e['of']} | "
                         f"{e['baseline_loss']:.3f} | {mult} | {e['warning'] or ''} |")
    m = sweep.p["distill_model"]
    rc, single, _, r0 = best("regularized", m)   # students trained at the regularized point, as the sweep does
    single = single or ([r0] if r0 is not None else [])
    stud = {rec: [r["val_loss"] for r in points if r["recipe"] == rec and r.get("model") == m
                  and (r["epochs"], r["lr"], r["wd"]) == rc] for rec in ("distill", "self-distill")}
    if m in ens and stud["distill"] and single:
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
    D = sweep.p["D"]
    have = [m for m in sweep.p["models"] if any(r.get("model") == m and r["recipe"] == "regularized" for r in points)]
    if not have:          # nothing searched yet: no overfitting picture to draw
        return
    m = have[-1]          # the largest size with runs
    runs = {}
    for r in points:   # one curve per config, at the main budget (the other budgets' runs share configs)
        if (r["recipe"] == "regularized" and r.get("model") == m and r["seed"] == 0
                and at_budget(r.get("D") or 0, D, sweep.p["seq_len"])):
            runs[(r["wd"], r["epochs"], r["lr"])] = r["run"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (wd, ep, lr), run in sorted(runs.items()):
        with open(run) as f:
            h = json.load(f)["history"]
        ax.plot([p["epoch"] for p in h], [p["val_loss"] for p in h], marker="o", ms=3, alpha=0.8,
                ls="--" if wd == STD_WD else "-", label=f"wd {wd:g} ep {ep:g} lr {lr:g}")
    lim = next((r["limits"] for r in points if r.get("limits") and r.get("model") == m
                and r["recipe"] == "regularized"), None)
    if lim:   # a synthetic source: the floors no recipe can beat
        ax.axhline(lim["bayes"], color="k", lw=1, ls=":", label=f"Bayes-optimal given D: {lim['bayes']:.3f}")
        ax.axhline(lim["entropy"], color="k", lw=1, label=f"true source: {lim['entropy']:.3f}")
    ax.set(xlabel="epoch", ylabel=f"val loss (nats per {data_unit(points)})", xscale="log",
           title=f"{m}, D = {D:,} {data_unit(points)}s: val loss during training (dashed: wd 0.1)")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "learning_curves.png"), dpi=110)
    plt.close(fig)


def step_seconds(model, vocab, p, steps=4):
    """Measured seconds per training step of `model` at the preset's shape on this machine (eager, the
    dtype train.py resolves here), the number the dry run's ETA is built on."""
    import torch
    from model import GPT, config_from_preset
    cfg = TrainConfig(model=model, device=p.get("device", "cpu"))
    device, dtype, _ = train.resolve_device(cfg)
    torch.manual_seed(0)
    net = GPT(config_from_preset(model, vocab, p["seq_len"])).to(device)
    opt = train.make_optimizer(net, cfg, device)
    x = torch.randint(0, vocab, (p["batch_size"], p["seq_len"] + 1), device=device)
    batch = lambda: [(x[:, :-1], x[:, 1:])]
    train.train_step(net, net, opt, batch(), 1e-3, 1.0, 1, device, dtype)          # warm up
    t = time.time()
    for _ in range(steps):
        loss = train.train_step(net, net, opt, batch(), 1e-3, 1.0, 1, device, dtype)
    loss.item()                                              # wait for the device
    return (time.time() - t) / steps


def print_plan(sweep, args):
    """Dry run: the runs the search would train if every loss came out as a smooth made-up surface
    (the real path depends on the losses), their training tokens and FLOPs, and an ETA from training
    steps of each model timed here (evaluation counted as forward passes at 1/3 of a step per token)."""
    from model import GPT, config_from_preset
    import torch
    vocab = (sweep.p["source"]["V"] + 1 if "source" in sweep.p
             else {"dclm_llama3": 128_256, "shakespeare_byte": 257}.get(sweep.dataset, 1025))
    flops = tokens = 0
    per_tok, secs, by_model = {}, 0.0, {}
    # time the models where the preset runs; a GPU preset on a CPU machine gets the FLOPs estimate only
    measure = (sweep.p["seq_len"] <= 1024 and not args.no_timing
               and (sweep.p.get("device") != "cuda" or torch.cuda.is_available()))
    for c in sweep.planned:
        with torch.device("meta"):
            f_tok = GPT(config_from_preset(c.model, vocab, c.seq_len)).flops_per_token(c.seq_len)
        t = c.train_tokens * c.epochs / (1 - c.mix_weight)
        tokens, flops = tokens + t, flops + f_tok * t
        if measure:
            if c.model not in per_tok:
                per_tok[c.model] = step_seconds(c.model, vocab, sweep.p) / (c.batch_size * c.seq_len)
            evals = c.evals * c.val_tokens + min(c.val_tokens, c.train_tokens)       # + the final train eval
            run_s = per_tok[c.model] * (t + evals / 3)
            secs += run_s
            n, sec = by_model.get(c.model, (0, 0.0))
            by_model[c.model] = (n + 1, sec + run_s)
    print(f"preset {args.preset}: about {len(sweep.planned)} runs to train on a typical search path (the real path, "
          f"and so the count, follows the real losses), {tokens / 1e6:,.0f}M tokens, "
          f"{flops:.3g} FLOPs -> ~{flops / (args.tflops * 1e12) / 60:,.0f} min at {args.tflops:g} TFLOP/s "
          f"(+ evaluation and distillation sampling)")
    if measure:
        print(f"timed here ({train.hardware_name(torch.device(sweep.p.get('device', 'cpu')))}): ~{secs / 3600:.1f} core-hours of "
              f"training and evaluation at {torch.get_num_threads()} thread(s)")
        for m, (n, sec) in sorted(by_model.items(), key=lambda kv: -kv[1][1]):
            print(f"  {m}: {n} runs, {sec / 60:.0f} min ({per_tok[m] * 1e6:.1f} us/token)")


def generate_once(path, params):
    """The preset's generated source at path: made on first use, then reused, unless the preset's
    parameters changed since (then the runs beside it trained on the old source: refused)."""
    from data import synthetic
    meta_path = os.path.join(path, "meta.json")
    if not os.path.exists(meta_path):
        return synthetic.generate(path, **params)
    with open(meta_path) as f:
        have = json.load(f)["synthetic"]
    want = {**synthetic.DEFAULT, **params}
    if any(have.get(k, synthetic.DEFAULT[k]) != v for k, v in want.items()):
        runs = os.path.dirname(path)
        raise train.ConfigError(f"{path} was generated from other parameters than the preset's (it changed "
                                f"since); its runs trained on the old source: delete {runs} and the points kept "
                                f"from them (results/{os.path.basename(runs)}/runs), then rerun")
    return path


def ensure_dataset(sweep, create=True):
    """A preset either generates its synthetic source inside runs_dir or prepares a named dataset."""
    p = sweep.p
    if "source" in p and sweep.dataset == p["dataset"]:
        sweep.dataset = path = os.path.join(sweep.runs_dir, p["dataset"])
        if create:
            generate_once(path, p["source"])
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
    ap.add_argument("--shard", default="0/1", help="i/n: this process trains shard i of the sizes dealt to n shards by cost "
                         "(n = the number of sizes gives one size each)")
    ap.add_argument("--no_timing", action="store_true", help="dry run: skip timing the models here")
    ap.add_argument("--tflops", type=float, default=0.1,
                    help="dry run: sustained TFLOP/s for the ETA (0.1 ~ 2 CPU cores in fp32, per bench.py; "
                         "~400 for an H100 at 40%% MFU)")
    args = ap.parse_args(argv)
    # bad input (a missing dataset, a run folder another process holds: train.py's lock) is one line, exit 2
    train.run_cli(lambda: run(args, ap))


def run(args, ap):
    p = PRESETS[args.preset]
    sweep = Sweep(p, args.preset, args.runs_dir or os.path.join("runs", args.preset),
                  dry_run=args.dry_run or args.report_only, dataset=args.dataset,
                  results_dir=args.out or os.path.join("results", args.preset))
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
    if p.get("cpt"):          # its own pipeline: base, then continued runs (stage_cpt)
        sweep.stage_cpt(args.out or os.path.join("results", args.preset))
        return print_plan(sweep, args) if args.dry_run else None
    # Stages in order of findings per core-hour, so that an interrupted sweep has measured the most:
    # the searches at the main budget, the probe's and the teacher's ensembles with the students, the
    # other budgets (the data laws and multipliers), and last the other sizes' ensembles (K members at
    # 2x epochs: the costliest runs, refining a finding the probe sizes already measure).
    std = sweep.stage_standard(models)
    reg = sweep.stage_regularized(models, std)
    dm = p["distill_model"]
    early = [m for m in models if m == dm or m in p.get("member_probe", [])]
    ens = sweep.stage_ensembles(early, reg)         # the probe's verdicts (other shards wait for them)
    if dm in models:
        sweep.stage_distill(reg, ens)
    std_at = {D: sweep.stage_standard(models, D, lrs=std) for D in p["data_budgets"]}
    if p.get("reg_data_budgets"):       # the paper's data scaling of the regularized recipe too (section 7)
        for D in p["data_budgets"]:
            sweep.stage_regularized(models, std_at[D], D)
    for D in p.get("std_budgets", []):  # larger budgets for the standard recipe only: so the data
        big = [m for m in models if m in p.get("std_budget_models", models)]   # efficiency is interpolated
        sweep.stage_standard(big, D, lrs=std, start=p.get("std_budget_start"), seeds=1)
    sweep.stage_ensembles([m for m in models if m not in early], reg)
    if args.dry_run:
        print_plan(sweep, args)
        return
    if n == 1:
        write_report(sweep, args.out or os.path.join("results", args.preset))
    else:
        print(f"shard {i}/{n} done; when all shards are: python sweep.py --preset {args.preset} --report_only")


if __name__ == "__main__":
    main()
