"""
Turn run points into fits, tables, figures and findings: the report of "Pre-training under infinite
compute" (Kim et al. 2025) in miniature. fit.py holds the fitting algorithm; this file decides which
points make each fit and writes what the fits show.

    python report.py RUNS... [--out DIR]
    python fit.py results/mini/points.jsonl --out results/mini     # the same command, by its usual name

RUNS are files or folders (searched recursively for summary.json, ensemble.json, *.csv, *.jsonl).
Rows need recipe, N, and val_loss (or loss); optional D, K, seed, dataset, tokenizer and
hyperparameters. N and D are raw counts; values below 1000 are taken to be in billions already.
Fits group by recipe, dataset/tokenizer and D; per N the reported point is the config a seed-0 search
picks, scored by its other seeds; data efficiency is measured against the "standard" recipe of the
same dataset. Output in DIR (default fits/): a table on stdout, fits.json, the paper's fit figures
loss_vs_N.png, loss_vs_K.png, data_scaling.png, and

headline.png: loss vs parameters N (log) at the main data budget, as the paper's first figure:
the standard recipe (wd 0.1), the regularized recipe with its fitted A/N^alpha + E and asymptote,
each size's ensemble K -> inf asymptote, the joint N, K -> inf asymptote, and the distilled
students. Points are the searched configs scored by their fresh seeds (error bars: their sd);
dashed lines are asymptotes, labelled with their 90% intervals.

findings.md: one row per finding of the paper (section 1 of the paper), its number, the miniature's,
and "shown" / "not shown" by the criterion written in the row.
"""
import os
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: on 2 cores a spinning BLAS thread doubles the time of many small fits
import csv
import json
import re
import math
import sys
import time

import numpy as np

from fit import data_efficiency, fit_power_law, joint_asymptote

# -----------------------------------------------------------------------------
# points: run summaries, ensemble evaluations, CSV / JSONL rows -> one row per loss

class BadInput(Exception):
    """Input that cannot be read or fitted: main prints it as one line and exits with code 2."""


def _short(recipe):
    """A recipe's label for a figure: 'cpt tuned [runs/cpt/data_cpt_domain/synthetic]' ->
    'cpt tuned [data_cpt_domain/synthetic]' (the group key keeps the whole path)."""
    name, _, tag = recipe.partition(" [")
    if not tag:
        return name
    dataset, _, tokenizer = tag.rstrip("]").rpartition("/")
    return f"{name} [{os.path.basename(os.path.normpath(dataset)) if dataset else ''}/{tokenizer}]"


def _dataset_tag(recipe):
    """'regularized [runs/x/shakespeare_byte/byte]' -> 'shakespeare_byte/byte' (the tag _row builds)."""
    return _short(recipe).partition(" [")[2].rstrip("]")


def downstream_evals(singles, out):
    """evaluate.py's results on this report's data at its main budget: every eval.json under
    results/downstream (beside `out`) and every one the sweep kept in out/runs/eval, each once."""
    found = []
    for d in (os.path.join(os.path.dirname(os.path.abspath(out)), "downstream"), os.path.join(out, "runs", "eval")):
        for root, _, files in os.walk(d):
            found += sorted(os.path.join(root, f) for f in files
                            if f == "eval.json" or (os.path.basename(root) == "eval" and f.endswith(".json")))
    unique = {}
    for path in found:
        with open(path) as f:
            e = json.load(f)
        unique[json.dumps(e, sort_keys=True)] = e
    data, D = {_dataset_tag(r["recipe"]) for r in singles}, main_budget(singles)
    tag = lambda e: f"{os.path.basename(os.path.normpath(str(e.get('dataset'))))}/{e.get('tokenizer')}"  # noqa: E731
    return [e for e in unique.values() if tag(e) in data and round(e.get("D") or 0) == round(D * 1e9)]


def unit_of(texts):
    """What one token is, from the '[dataset/tokenizer]' tags in a panel's title and labels: byte,
    symbol (a generated source) or token (BPE, or a mix)."""
    toks = {t for text in texts for t in re.findall(r"\[[^\]]*/([^\]/]+)\]", text)}
    return {"byte": "byte", "synthetic": "symbol"}.get(toks.pop(), "token") if len(toks) == 1 else "token"


def _billions(v):
    return v / 1e9 if v >= 1e3 else v  # raw counts -> billions; values < 1000 are billions already


def _row(d, src):
    """A point row from a summary / CSV / JSONL record, or None if it is not one."""
    loss = d.get("val_loss", d.get("loss"))
    if d.get("N") in (None, "") or loss in (None, ""):
        return None
    # Losses on different datasets or tokenizers are not comparable: they never share a fit.
    tag = "/".join(str(d[k]) for k in ("dataset", "tokenizer") if d.get(k))
    tag = f" [{tag}]" if tag else ""
    try:
        r = dict(recipe=str(d.get("recipe") or "default") + tag, std="standard" + tag,
                 N=_billions(float(d["N"])), loss=float(loss),
                 D=_billions(float(d["D"])) if d.get("D") not in (None, "") else None,
                 K=int(float(d["K"])) if d.get("K") not in (None, "") else None, src=src,
                 seed=int(float(d["seed"])) if d.get("seed") not in (None, "") else None,
                 n_members=int(float(d["n_members"])) if d.get("n_members") not in (None, "") else None,
                 # train.py's flag for a run that looks diverged: shown, never dropped from a fit
                 diverged=str(d.get("diverged", "")).lower() in ("true", "1"), run=d.get("run") or src,
                 config=tuple(str(d.get(k)) for k in ("epochs", "lr", "wd", "batch_size", "seq_len", "tokenizer",
                                                      "steps", "teacher", "mix")))
    except (TypeError, ValueError) as err:
        raise BadInput(f"cannot read {src}: bad number ({err}); fix the row or remove the file")
    return r if math.isfinite(r["loss"]) else None


def load_points(paths):
    """Returns (single-run rows, ensemble rows with K). Raises BadInput with a one-line reason."""
    files = []
    for p in paths:
        if os.path.isdir(p):
            for root, _, names in sorted(os.walk(p)):
                files += [(os.path.join(root, f), False) for f in sorted(names)
                          if f in ("summary.json", "ensemble.json") or f.endswith((".csv", ".jsonl"))]
        elif os.path.isfile(p):
            files.append((p, True))
        else:
            raise BadInput(f"no such file or folder: {p}; pass run folders or CSV/JSONL files of points")
    rows = []
    for path, explicit in files:
        try:
            with open(path, newline="") as fh:
                if path.endswith(".csv"):
                    recs = list(csv.DictReader(line for line in fh if not line.startswith("#")))
                elif path.endswith(".jsonl"):
                    recs = []
                    for i, line in enumerate(fh, 1):   # name the file's line, not the decoder's "line 1"
                        try:
                            recs.append(json.loads(line)) if line.strip() else None
                        except ValueError as err:
                            raise BadInput(f"cannot read {path}: line {i} is not JSON ({err.msg}); fix or "
                                           f"remove that line")
                else:
                    obj = json.load(fh)
                    recs = obj if isinstance(obj, list) else [obj]
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise BadInput(f"cannot read {path}: {err}; fix or remove the file")
        got = []
        for d in recs:
            if not isinstance(d, dict) or d.get("kind") == "fits":
                continue
            if d.get("kind") == "ensemble" or isinstance(d.get("losses"), dict):
                for k, l in (d.get("losses") or {}).items():
                    got.append(_row({**{k2: v for k2, v in d.items() if k2 != "val_loss"}, "K": k, "loss": l}, path))
                    got[-1] and got[-1].update(config=(path,))  # one ensemble file = one hyperparameter setting
            else:
                got.append(_row(d, path))
        got = [r for r in got if r]
        if explicit and not got:
            raise BadInput(f"{path} has no usable points (needs N and val_loss or loss per row); check the file")
        rows += got
    if not rows:
        raise BadInput(f"no runs found in {' '.join(paths)} (looked for summary.json, ensemble.json, *.csv, *.jsonl "
                       "with N and val_loss); pass the folder train.py wrote into")
    return [r for r in rows if r["K"] is None], [r for r in rows if r["K"] is not None]

# -----------------------------------------------------------------------------
# which points make each fit, and the fits the data support

def seed_noise(groups):
    """Robust pooled seed-to-seed sd: 1.4826 x the median |deviation from the config's mean|, each
    deviation scaled by sqrt(n / (n - 1)) (a deviation from a mean of n runs is that much smaller).
    A plain pooled variance would let one diverged seed (loss +1 nat) widen every interval."""
    dev = [abs(l - np.mean(v)) * math.sqrt(len(v) / (len(v) - 1)) for v in groups if len(v) > 1 for l in v]
    return 1.4826 * float(np.median(dev)) if dev else None


def searched_losses(by_seed, rec, D, N):
    """The losses that make the reported point of (recipe, D, N); by_seed: {(recipe, D, N, config):
    {seed: loss}}. Where runs record seeds, the config is the one a search on seed 0 picks (its
    lowest seed-0 loss) and its losses are those of the OTHER seeds trained there: fresh draws, so the
    reported loss is not the search's lucky draw (picking the best of many near-tied configs on one
    seed biases that seed's loss low). Without fresh seeds the seed-0 loss stands. Where seed 0
    ran one config only (a student, a point nothing was compared with), it won nothing and every seed
    is a fresh draw. Rows without seeds: the config with the lowest mean, all its runs."""
    cfgs = {c: v for (r, d, n, c), v in by_seed.items() if (r, d, n) == (rec, D, N)}
    seed0 = {c: v[0] for c, v in cfgs.items() if 0 in v}
    if not seed0:
        c = min(cfgs, key=lambda c: np.mean(list(cfgs[c].values())))
        return list(cfgs[c].values())
    c = min(seed0, key=seed0.get)
    if len(seed0) == 1:
        return list(cfgs[c].values())
    return [l for s, l in cfgs[c].items() if s != 0] or [seed0[c]]


def searched_point(by_seed, rec, D, N):
    """(loss, n) reported for (recipe, D, N): the mean of searched_losses and how many runs it holds."""
    losses = searched_losses(by_seed, rec, D, N)
    return float(np.mean(losses)), len(losses)


MIN_REPLICATED = 5    # configs with 2+ seeds at one D before that D's own seed sd is used


def sigma_at_D(singles):
    """{D: pooled seed sd of the configs at D} for each budget where MIN_REPLICATED configs have 2+
    seeds. Seed noise depends on D (the mini: 0.020 at 64K, 0.025 at 128K, 0.012 at 256K), so each
    budget's fits use its own sd; a budget missing here uses the pool over every budget."""
    at = {}
    for r in singles:
        if r["D"] is not None:
            at.setdefault(r["D"], {}).setdefault((r["recipe"], r["N"], r["config"]), []).append(r["loss"])
    return {D: seed_noise(g.values()) for D, g in at.items() if sum(len(v) > 1 for v in g.values()) >= MIN_REPLICATED}


def fit_all(singles, ens, n_boot=400, seed=0):
    """All the fits the data support. Returns the fits.json dict, and for the plots the fits themselves:
    in N per (recipe, D), in K per (recipe, D, N) with its points, the joint limits, the data laws."""
    # Seed noise: the spread of identical configs (same recipe, D, N, hyperparameters).
    cfg, by_seed = {}, {}
    for r in singles:
        cfg.setdefault((r["recipe"], r["D"], r["N"], r["config"]), []).append(r["loss"])
        by_seed.setdefault((r["recipe"], r["D"], r["N"], r["config"]), {})[r["seed"]] = r["loss"]
    sigma_seed, own = seed_noise(cfg.values()), sigma_at_D(singles)
    sigma_at = {D: own.get(D, sigma_seed) for D in {k[1] for k in cfg}}
    best = {(rec, D, N): searched_point(by_seed, rec, D, N) for rec, D, N, _ in cfg}
    out_json = dict(kind="fits", sigma_seed=sigma_seed, fits=[], joint=[], data_laws=[], efficiency=[],
                    sigma_seed_at_D=[[D, own[D]] for D in sorted(own)],   # budgets with their own sd only
                    diverged=sorted({str(r["run"]) for r in singles if r["diverged"]}))
    groups = sorted({(rec, D) for rec, D, _ in best}, key=str)
    nfits = {}
    for rec, D in groups:
        pts = sorted((N, l, m) for (r, d, N), (l, m) in best.items() if (r, d) == (rec, D))
        if len(pts) >= 3:
            N, l, m = map(np.array, zip(*pts))
            sig = sigma_at[D] / np.sqrt(m) if sigma_at[D] else None
            f = fit_power_law(N, l, n_boot=n_boot, seed=seed, sigma=sig, x_name="N", x_scale=1e9)
            nfits[(rec, D)] = f
            out_json["fits"].append(dict(recipe=rec, D=D, axis="N (billions)", **f.to_dict()))
    # Ensembles: loss vs K per (recipe, D, N); the setting with the lowest asymptote wins (paper section 6).
    kfits, joints = {}, {}
    # A subset-averaged curve (ensemble.json's n_members) averages the same M members at every k: its
    # points share one error of about sigma_seed / sqrt(M) (a lucky set of members lowers them all), so
    # the bootstrap draws that as one offset per curve, plus half of it per point for the rest.
    curves, members = {}, {}
    for r in ens:
        curves.setdefault((r["recipe"], r["D"], r["N"], r["config"]), {})[r["K"]] = r["loss"]
        members[(r["recipe"], r["D"], r["N"], r["config"])] = r.get("n_members")
    shared = {}
    for (rec, D, N, c), kl in sorted(curves.items(), key=str):
        if len(kl) < 3:
            continue
        K = sorted(kl)
        M = members[(rec, D, N, c)]
        s_D = sigma_at.get(D, sigma_seed)
        sig, sh = (s_D / math.sqrt(M) / 2, s_D / math.sqrt(M)) if M and s_D else (s_D, 0.0)
        shared[(rec, D)] = max(shared.get((rec, D), (0.0, 0.0)), (sh, sig))   # for the joint limit
        f = fit_power_law(K, [kl[k] for k in K], n_boot=n_boot, seed=seed, sigma=sig, shared_sigma=sh, x_name="K")
        if (rec, D, N) not in kfits or f.E < kfits[(rec, D, N)][0].E:
            kfits[(rec, D, N)] = (f, [(N, k, kl[k]) for k in K])
    for (rec, D, N), (f, _) in sorted(kfits.items(), key=lambda kv: (str(kv[0][:2]), kv[0][2] or 0)):   # by N
        out_json["fits"].append(dict(recipe=rec, D=D, N=N, axis="K", **f.to_dict()))
    for rec, D in sorted({(k[0], k[1]) for k in kfits}, key=str):
        pts = [p for k, (f, ps) in kfits.items() if (k[0], k[1]) == (rec, D) for p in ps]
        if len({p[0] for p in pts}) >= 3:
            sh, sig = shared[(rec, D)]
            j = joint_asymptote(pts, n_boot=n_boot, seed=seed, sigma=sig, shared_sigma=sh, n_scale=1e9)
            joints[(rec, D)] = j
            out_json["joint"].append(dict(recipe=rec, D=D, **j.to_dict()))
    # Data scaling: best loss per D (over N) for each recipe with >= 3 D.
    laws = {}
    for rec in sorted({k[0] for k in best}):
        perD = {}
        for (r, D, N), (l, m) in best.items():
            if r == rec and D is not None and (D not in perD or l < perD[D][0]):
                perD[D] = (l, m)
        if len(perD) >= 3:
            Ds = sorted(perD)
            # each budget's noise, over the runs its best point averages
            sig = [sigma_at[d] / math.sqrt(perD[d][1]) for d in Ds] if all(sigma_at.get(d) for d in Ds) else sigma_seed
            perD = {d: l for d, (l, _) in perD.items()}
            laws[rec] = (fit_power_law(Ds, [perD[d] for d in Ds], n_boot=n_boot, seed=seed, sigma=sig,
                                       x_name="D", x_scale=1e9), perD)
            out_json["data_laws"].append(dict(recipe=rec, axis="D (billions)", **laws[rec][0].to_dict()))
    # Data efficiency vs the standard recipe (same dataset): each recipe's asymptote, or best run, at each D.
    std_of = {r["recipe"]: r["std"] for r in singles + ens}
    cands = [(rec, rec, D, f.E, "asymptote", None) if f.identified else
             (rec, rec, D, min(f.y), "best run", "its E is not identified, so the best run stands in")
             for (rec, D), f in nfits.items()]
    cands += [(rec, rec + " (joint)", D, j.E, "joint asymptote", None if j.identified else "joint E not identified")
              for (rec, D), j in joints.items()]
    for (rec, D) in sorted({(r, d) for r, d, _ in best if (r, d) not in nfits}, key=str):
        cands.append((rec, rec, D, min(l for (r, d, _), (l, _) in best.items() if (r, d) == (rec, D)), "best run", None))
    for src, rec, D, L, what, note in sorted(cands, key=str):
        if std_of[src] in laws and src != std_of[src]:
            law, stdD = laws[std_of[src]]
            if D in stdD and stdD[D] > law.E:
                e = data_efficiency(law, L, stdD[D])
                notes = [w for w in (e.warning, note, None if law.identified else
                                     "the standard data law's E is not identified: an extrapolation") if w]
                out_json["efficiency"].append(dict(recipe=rec, D=D, loss=L, of=what, baseline_loss=stdD[D],
                                                   multiplier=e.value, infinite=math.isinf(e.value),
                                                   warning="; ".join(notes) or None))
    return out_json, nfits, kfits, joints, laws


# -----------------------------------------------------------------------------
# the table on stdout

def _fmt(v, p=4):
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{p}g}"



def print_table(js):
    if js.get("diverged"):
        print(f"note: {len(js['diverged'])} point(s) flagged diverged by train.py, kept in the fits: "
              f"{', '.join(js['diverged'])}")
    rows = [(f, "N" if f["axis"].startswith("N") else f"K@N={_fmt(f['N'], 3)}") for f in js["fits"]]
    rows += [(f, "D") for f in js["data_laws"]]
    w = max([len(f["recipe"]) for f, _ in rows] + [6])
    hdr = f"{'recipe':<{w}} {'D(B)':>7} {'vs':<11}{'n':>3} {'A':>9} {'alpha':>7} {'E':>8} {'E interval':>19} {'LOO err':>9}  note"
    print(hdr)
    print("-" * len(hdr))
    for f, vs in rows:
        ci = f"[{_fmt(f['E_ci'][0])}, {_fmt(f['E_ci'][1])}]"
        print(f"{f['recipe']:<{w}} {_fmt(f.get('D'), 3):>7} {vs:<11}{f['n']:>3} {_fmt(f['A']):>9} {_fmt(f['alpha'], 3):>7} "
              f"{_fmt(f['E']):>8} {ci:>19} {_fmt(f['loo_error'], 2):>9}  {f['warning'] or ''}")
    for j in js["joint"]:
        print(f"joint limit {j['recipe']} D={_fmt(j['D'], 3)}: E = {_fmt(j['E'])} "
              f"[{_fmt(j['E_ci'][0])}, {_fmt(j['E_ci'][1])}] from E_N = {[round(v, 4) for v in j['E_N']]}"
              + (f"  ({j['warning']})" if j["warning"] else ""))
    for e in js["efficiency"]:
        m = "inf" if e["infinite"] else f"{e['multiplier']:.3g}x"
        print(f"data efficiency {e['recipe']} at D={_fmt(e['D'], 3)}: {m} ({e['of']} {e['loss']:.4g} vs standard "
              f"{e['baseline_loss']:.4g})" + (f"  [{e['warning']}]" if e["warning"] else ""))


# -----------------------------------------------------------------------------
# the paper's fit figures: loss vs N, loss vs K, data scaling

def plot(out, nfits, kfits, joints, laws, eff):
    """The paper's figures: loss vs N (one panel per recipe, one curve per D), loss vs K (one panel
    per recipe and D, one curve per N), data scaling with the efficiencies. Dashed lines are the
    asymptotes E, shaded bands their intervals (only where E is identified)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    def curve(ax, f, color, label, scale):
        """Points, the fitted curve, and (only where E is identified) the asymptote and its band: an
        unidentified E can sit far below the data and would squash the plot to a flat line. The fits
        are in billions; x is drawn times `scale` (parameters or tokens for N and D, 1 for K)."""
        x = np.array(f.x)
        xs = np.geomspace(x.min(), x.max() * (4 if f.identified else 1), 100)
        ax.plot(x * scale, f.y, "o", color=color, label=label)
        # an identified fit is a solid curve; one that is not (its E an extrapolation) only dotted
        ax.plot(xs * scale, f.predict(xs), "-" if f.identified else ":", color=color, lw=1)
        if f.identified and all(math.isfinite(v) for v in f.E_ci):
            ax.axhline(f.E, ls="--", color=color, lw=1)
            ax.axhspan(*f.E_ci, color=color, alpha=0.06)     # faint: several curves' bands overlap
        return list(f.y) + ([f.E] if f.identified else [])

    def ci(v):
        return f"E={v.E:.4g} [{_fmt(v.E_ci[0])}, {_fmt(v.E_ci[1])}]" if v.identified else "E not identified"

    def people(billions):
        return params_label(billions * 1e9)
    figs = {   # name: (x label, x scale from billions, panels of (title, [(fit, label)]))
        "loss_vs_N.png": ("parameters N", 1e9,
                          [(_short(rec), [(f, f"D={people(D)} {unit_of([rec])}s: {ci(f)}") for (r, D), f in sorted(nfits.items(), key=str) if r == rec])
                           for rec in sorted({r for r, _ in nfits})]),
        "loss_vs_K.png": ("ensemble size K", 1,
                          [(f"{_short(rec)}, D={people(D)} {unit_of([rec])}s" + (f"\njoint {ci(joints[(rec, D)])}" if (rec, D) in joints else ""),
                            [(f, f"N={people(k[2])}: {ci(f)}") for k, (f, _) in sorted(kfits.items(), key=lambda kv: kv[0][2])
                             if k[:2] == (rec, D)])
                           for rec, D in sorted({k[:2] for k in kfits}, key=str)]),
    }
    written = []
    for name, (xlabel, scale, panels) in figs.items():
        if not panels:
            continue
        cols = min(3, len(panels))
        rows = -(-len(panels) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 4 * rows), squeeze=False)
        for ax, (title, curves) in zip(axes.flat, panels):
            ys = []
            for c, (f, label) in enumerate(curves):
                ys += curve(ax, f, f"C{c}", label, scale)
            if ys:                                    # the data (and identified asymptotes), padded
                lo, hi = min(ys), max(ys)
                pad = 0.08 * (hi - lo) + 1e-3
                ax.set_ylim(lo - pad, hi + 3 * pad)  # room on top for the legend
            ax.set(xscale="log", xlabel=xlabel, ylabel=f"val loss (nats per {unit_of([title] + [label for _, label in curves])})")
            if scale > 1:                             # 92K, 1.0M rather than 9.2e-05 billions
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: params_label(v)))
                ax.xaxis.set_minor_formatter(FuncFormatter(   # and 200K, 500K between the decades
                    lambda v, _: params_label(v) if f"{v:.0e}"[0] in "25" else ""))
            if name == "loss_vs_K.png":               # K = 1, 2, 4, 8 members, not 10^0 and 10^1
                ax.xaxis.set_major_locator(FixedLocator([2 ** i for i in range(8)]))
                ax.xaxis.set_minor_locator(NullLocator())
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.set_title(title, fontsize=9)
            ax.legend(fontsize=7, loc="upper right", framealpha=0.7)
        for ax in list(axes.flat)[len(panels):]:
            ax.set_visible(False)
        fig.tight_layout()
        _atomic(os.path.join(out, name), lambda p: fig.savefig(p, dpi=110))
        plt.close(fig)
        written.append(name)
    if laws:
        data_scaling(laws, eff, os.path.join(out, "data_scaling.png"))
        written.append("data_scaling.png")
    return written


# -----------------------------------------------------------------------------
# the headline figure (the paper's Figure 1 in miniature)

def _base(recipe):
    return recipe.split(" [")[0]


def searched(singles, recipe, D):
    """{N: (mean, sd, n)} at budget D: the config a seed-0 search picks, scored by its fresh seeds
    (searched_losses, the rule the fits use)."""
    by = {}
    for r in singles:
        if _base(r["recipe"]) == recipe and r["D"] == D:
            by.setdefault((recipe, D, r["N"], r["config"]), {})[r["seed"]] = r["loss"]
    out = {}
    for N in {k[2] for k in by}:
        ls = searched_losses(by, recipe, D, N)
        out[N] = (float(np.mean(ls)), float(np.std(ls, ddof=1)) if len(ls) > 1 else 0.0, len(ls))
    return out


def main_budget(singles):
    """The budget with the most regularized runs (or standard ones, before the wd search begins)."""
    for recipe in ("regularized", "standard"):
        Ds = [r["D"] for r in singles if _base(r["recipe"]) == recipe and r["D"] is not None]
        if Ds:
            return max(set(Ds), key=Ds.count)
    return None


def _fits(js, recipe, axis, D):
    return [f for f in js["fits"] if _base(f["recipe"]) == recipe and f["axis"].startswith(axis)
            and (D is None or f.get("D") == D)]


def _ci(E, ci):
    return f"{E:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and None not in ci else f"{E:.3f}"


def params_label(n):
    """N in parameters for people: 92K, 1.0M, 1.4B."""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.0f}"


COLORS = dict(standard="#888888", regularized="C0", ensemble="C3", distill="C2", **{"self-distill": "C1"})   # one colour per recipe, in every figure


def headline(singles, js, out_png, title=""):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator

    D = main_budget(singles)
    fig, ax = plt.subplots(figsize=(8, 5.2))
    colors = dict(COLORS, joint=COLORS["ensemble"])
    allN, ys = set(), []            # the y range follows the data, not unidentified intervals

    def points(recipe, label, marker, shift=1.0):
        """shift: a student is drawn a little right of its size, so it does not hide the point it is
        compared with (the x tick still names the size)."""
        pts = searched(singles, recipe, D)
        if not pts:
            return
        N = sorted(pts)
        allN.update(N)
        ys.extend(pts[n][0] for n in N)
        ax.errorbar([n * 1e9 * shift for n in N], [pts[n][0] for n in N], yerr=[pts[n][1] for n in N],
                    fmt=marker, color=colors[recipe], ms=8 if shift > 1 else 6, capsize=3, label=label,
                    ls="--" if recipe == "standard" else "none", lw=1)

    points("standard", "standard (wd 0.1)", "s")
    points("regularized", "regularized (tuned wd, epochs)", "o")
    for f in _fits(js, "regularized", "N", D)[:1]:
        if f["monotone"]:           # a fitted curve only where loss falls with N
            x = np.geomspace(min(f["x"]), max(f["x"]) * (4 if f["identified"] else 1), 100)
            ax.plot(x * 1e9, f["A"] / x ** f["alpha"] + f["E"], color=colors["regularized"], lw=1.2,
                    label="regularized fit A/N^alpha + E")
        if f["identified"]:
            ys.append(f["E"])
            ax.axhline(f["E"], color=colors["regularized"], ls="--", lw=1,
                       label=f"regularized asymptote E = {_ci(f['E'], f['E_ci'])}")
    for ok, fill in ((True, None), (False, "none")):   # K -> inf per N: filled where identified
        ens = [f for f in _fits(js, "ensemble", "K", D) if bool(f["identified"]) == ok]
        if not ens:
            continue
        N = [f["N"] for f in ens]
        allN.update(N)
        E = np.array([f["E"] for f in ens])
        ys.extend(E)
        lo = np.array([f["E_ci"][0] if f["E_ci"][0] is not None else f["E"] for f in ens])
        hi = np.array([f["E_ci"][1] if f["E_ci"][1] is not None else f["E"] for f in ens])
        if ok:                      # an identified interval is drawn whole
            ys.extend(list(lo) + list(hi))
        ax.errorbar(np.array(N) * 1e9, E, yerr=[E - lo, hi - E], fmt="D", color=colors["ensemble"], ms=6,
                    mfc=fill, capsize=3, label="ensemble, K -> inf" + ("" if ok else " (E not identified)"))
    for j in js["joint"]:
        if _base(j["recipe"]) == "ensemble" and j.get("D") == D and j["identified"]:
            ys.append(j["E"])
            ax.axhline(j["E"], color=colors["joint"], ls=":", lw=1.5,
                       label=f"joint N, K -> inf: E = {_ci(j['E'], j['E_ci'])}")
        elif _base(j["recipe"]) == "ensemble" and j.get("D") == D:   # said, not drawn: an extrapolation
            ax.plot([], [], color=colors["joint"], ls=":", lw=1.5,
                    label="joint N, K -> inf: not identified" + (f" (fit {_ci(j['E'], j['E_ci'])})"
                                                                      if j["E"] is not None else ""))
    points("distill", "distilled student", "*", shift=1.08)
    points("self-distill", "self-distilled student", "P", shift=1.16)
    ax.set_xscale("log")
    if allN:
        ticks = sorted(n * 1e9 for n in allN)
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([params_label(t) for t in ticks])
    if ys:
        lo, hi = min(ys), max(ys)
        ax.set_ylim(lo - 0.15 * (hi - lo) - 1e-3, hi + 0.15 * (hi - lo) + 1e-3)
    unit = unit_of([r["recipe"] for r in singles])     # byte, symbol or token: what the data counts
    ax.set(xlabel="parameters N (including embeddings)", ylabel=f"validation loss (nats per {unit})",
           title=title or f"D = {D * 1e9:,.0f} {unit}s: loss vs model size")
    ax.grid(alpha=0.3)
    # the legend below the axes: never over the data
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    _atomic(out_png, lambda p: fig.savefig(p, dpi=120, bbox_inches="tight"))
    plt.close(fig)


def data_scaling(laws, eff, out_png):
    """The paper's data-efficiency figure: each recipe's best loss per D with its fitted data law, and
    from each recipe's loss at its D an arrow to the data the standard recipe's law needs for that
    loss: the multiplier, read as a distance along the x axis and written at the arrow's head."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator

    fig, ax = plt.subplots(figsize=(8, 5.2))
    xs, ys = set(), []
    for rec, (f, _) in sorted(laws.items()):
        base, D = _base(rec), np.array(f.x)
        color = COLORS.get(base, "C4")
        xs.update(D * 1e9)
        ys.extend(f.y)
        ax.plot(D * 1e9, f.y, "s" if base == "standard" else "o", color=color, ms=6,
                label=f"{base}: best loss per D" + (f", E = {_ci(f.E, f.E_ci)}" if f.identified
                                                   else " (its law, dotted: E not identified)"))
        grid = np.geomspace(D.min(), D.max(), 100)
        ax.plot(grid * 1e9, f.predict(grid), "-" if f.identified else ":", color=color, lw=1)
    labelled = set()            # one legend entry per (recipe, what the loss is)
    span = max(ys + [e["loss"] for e in eff]) - min(ys + [e["loss"] for e in eff]) if eff else 0.0
    placed = []                 # where multipliers are written: one that would land on another steps down
    for e in eff:
        base, x0 = _base(e["recipe"]).replace(" (joint)", ""), e["D"] * 1e9
        joint = "joint" in e["of"]
        color = COLORS.get(base, "C4")
        # a loss that is itself an unidentified extrapolation (a joint limit) gets no arrow: its
        # multiplier is not a distance anyone measured
        guess = joint and "joint E not identified" in (e["warning"] or "")
        x1 = x0 * (e["multiplier"] if math.isfinite(e["multiplier"]) and not guess else 1)
        label = f"{base} {'N, K -> inf' if joint else e['of']}" if (base, e["of"]) not in labelled else None
        labelled.add((base, e["of"]))
        marker = "D" if joint else "*" if e["of"] == "asymptote" else "v"     # v: a best run stands in
        ax.plot([x0], [e["loss"]], marker, ms=12 if marker == "*" else 8, color=color,
                mfc="none" if e["warning"] else color, label=label)
        if math.isfinite(e["multiplier"]) and not guess:
            ax.annotate("", xy=(x1, e["loss"]), xytext=(x0, e["loss"]),
                        arrowprops=dict(arrowstyle="->", color=color, lw=1, ls=":"))
        near = sum(abs(math.log(px / x1)) < math.log(1.3) and abs(py - e["loss"]) < 0.04 * span for px, py in placed)
        placed.append((x1, e["loss"]))
        text = "not identified" if guess else "inf" if e["infinite"] else f"{e['multiplier']:.3g}x"
        ax.annotate(text, (x1, e["loss"]),
                    xytext=(4, 3 - 11 * near), textcoords="offset points", fontsize=8, color=color)
        xs.update((x0, x1))
        ys.append(e["loss"])
    ax.set_xscale("log")
    ticks = sorted({d * 1e9 for f, _ in laws.values() for d in f.x})        # the budgets themselves
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([params_label(t) for t in ticks])
    ax.set_xlim(min(xs) / 1.3, max(xs) * 1.5)
    lo, hi = min(ys), max(ys)
    ax.set_ylim(lo - 0.1 * (hi - lo) - 1e-3, hi + 0.1 * (hi - lo) + 1e-3)
    unit = unit_of(list(laws))
    ax.set(xlabel=f"data D ({unit}s, repeated for as many epochs as tuned)",
           ylabel=f"validation loss (nats per {unit})",
           title="best loss per D, and the data the standard recipe would need for each recipe's loss")
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.3)
    flagged = any(e["warning"] for e in eff)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8, frameon=False,
              title="hollow: flagged (an extrapolation or an unidentified E; see summary.md)" if flagged else None,
              title_fontsize=8)
    fig.tight_layout()
    _atomic(out_png, lambda p: fig.savefig(p, dpi=120, bbox_inches="tight"))
    plt.close(fig)


# -----------------------------------------------------------------------------
# the findings table (section 1 of the paper)

# The paper's numbers (D = 200M tokens of DCLM, nats per Llama 3 token), section 1 of the paper.
PAPER = dict(standard=3.75, regularized_E=3.43, ensemble_E=3.34, joint_E=3.17, student=3.36,
             self_student=3.43, gain_kept=0.83, eff_regularized=2.29, eff_joint=5.17)


def findings(singles, ens_rows, js, cpt=None, downstream=None):
    """The findings table (markdown): each row states its criterion; sigma is the pooled seed sd at
    the main budget (fit_all's sigma_seed_at_D), or over every budget where that is missing.
    cpt: the cpt preset's fits.json (a dict), if it has run: its multipliers fill the CPT row.
    downstream: evaluate.py's eval.json dicts on this data, for the downstream row."""
    D = main_budget(singles)
    own = dict(map(tuple, js.get("sigma_seed_at_D", []))).get(D)
    sig = own or js.get("sigma_seed") or float("nan")
    std, reg = searched(singles, "standard", D), searched(singles, "regularized", D)
    rows = []

    def row(finding, paper, ours, criterion, shown):
        verdict = "not measured yet" if shown is None else ("shown" if shown else "not shown")
        rows.append(f"| {finding} | {paper} | {ours} | {criterion} | {verdict} |")

    # 1. the standard recipe overfits: in epochs (at one N, more epochs at wd 0.1 is worse) or in N
    worst = None
    for r in singles:
        if _base(r["recipe"]) == "standard" and r["D"] == D and r["seed"] == 0:
            same = [q for q in singles if _base(q["recipe"]) == "standard" and q["D"] == D and q["N"] == r["N"]
                    and q["seed"] == 0]
            best = min(same, key=lambda q: q["loss"])
            ep = lambda q: float(q["config"][0])
            if ep(r) > ep(best) and (worst is None or r["loss"] - best["loss"] > worst[0]):
                worst = (r["loss"] - best["loss"], r, best)
    if worst:
        gap, r, b = worst
        ours = (f"N = {params_label(r['N'] * 1e9)}: {float(b['config'][0]):g} epochs {b['loss']:.3f}, "
                f"{float(r['config'][0]):g} epochs {r['loss']:.3f}")
        row("standard recipe overfits (more epochs at wd 0.1 get worse)", "loss falls then rises; best 3.75",
            ours, "more epochs than the best worse by > 2 sigma", gap > 2 * sig)
    else:
        row("standard recipe overfits", "best 3.75", "-", "more epochs than the best worse by > 2 sigma", None)
    # 2. the tuned wd is far above 0.1
    wds = []
    for N in sorted(reg):
        cfgs = [r for r in singles if _base(r["recipe"]) == "regularized" and r["D"] == D and r["N"] == N
                and r["seed"] == 0]
        if cfgs:
            wds.append(float(min(cfgs, key=lambda r: r["loss"])["config"][2]))
    row("tuned weight decay is far above 0.1", "0.8-3.2 (about 30x)", ", ".join(f"{w:g}" for w in wds) or "-",
        "searched wd >= 4x 0.1 at every size (3+ sizes searched)", all(w >= 0.4 for w in wds) if len(wds) >= 3 else None)
    # 3. monotone in N
    Ns = sorted(reg)
    if len(Ns) < 2:
        row("regularized loss falls monotonically in N", "yes, 4 sizes", "-", "every larger size better by > 2 sigma", None)
    else:
        steps = [reg[a][0] - reg[b][0] for a, b in zip(Ns, Ns[1:])]
        ours = ", ".join(f"{params_label(n * 1e9)}: {reg[n][0]:.3f}" for n in Ns) + f" (sigma {sig:.3f})"
        row("regularized loss falls monotonically in N", "yes, 4 sizes", ours,
            "every larger size better by > 2 sigma", all(s > 2 * sig for s in steps))
    # 4. E identified
    fN = _fits(js, "regularized", "N", D)
    if not fN:
        row("regularized recipe has an asymptote E", f"E = {PAPER['regularized_E']}", "-", "fit.py 'identified'", None)
    for f in fN[:1]:
        row("regularized recipe has an asymptote E", f"E = {PAPER['regularized_E']}",
            _ci(f["E"], f["E_ci"]) if f["identified"] else "not identified (fit.py's note in fits.json)",
            "fit.py 'identified': monotone, 90% interval excludes 0, narrower than the losses' spread",
            bool(f["identified"]))
    # 5. ensembles below the regularized asymptote
    kf = _fits(js, "ensemble", "K", D)
    if kf and fN:
        e = min(kf, key=lambda f: f["E"])
        sep = e["E_ci"][1] is not None and fN[0]["E_ci"][0] is not None and e["E_ci"][1] < fN[0]["E_ci"][0]
        row("ensemble asymptote (K -> inf) below the regularized one", f"{PAPER['ensemble_E']} < {PAPER['regularized_E']}",
            f"{_ci(e['E'], e['E_ci'])} at N = {params_label(e['N'] * 1e9)} vs {_ci(fN[0]['E'], fN[0]['E_ci'])}",
            "90% intervals do not overlap", bool(sep and fN[0]["identified"]))
    else:
        row("ensemble asymptote (K -> inf) below the regularized one", f"{PAPER['ensemble_E']} < {PAPER['regularized_E']}",
            "-", "90% intervals do not overlap", None)
    # 6. joint limit
    joint = [j for j in js["joint"] if _base(j["recipe"]) == "ensemble" and j.get("D") == D]
    for j in joint:
        row("joint limit N, K -> inf lower still", f"E = {PAPER['joint_E']}", _ci(j["E"], j["E_ci"]),
            "identified, and its interval below every per-N ensemble asymptote",
            bool(j["identified"] and kf and j["E_ci"][1] is not None
                 and j["E_ci"][1] < min(f["E"] for f in kf)))
    if not joint:
        row("joint limit N, K -> inf lower still", f"E = {PAPER['joint_E']}", "-",
            "identified, and its interval below every per-N ensemble asymptote", None)
    # 7-8. distillation, self-distillation (students are trained at the regularized point of their size)
    for rec, paper, what in (("distill", f"student {PAPER['student']} < regularized E {PAPER['regularized_E']}; "
                              f"keeps {PAPER['gain_kept']:.0%} of the gain", "ensemble"),
                             ("self-distill", f"student {PAPER['self_student']}, better than its teacher", "teacher")):
        st = {N: v for N, v in searched(singles, rec, D).items() if N in reg}
        if not st:
            row(f"{'distilled' if rec == 'distill' else 'self-distilled'} student beats a same-size model", paper, "-",
                "better than the same-size regularized model by > 2 sigma", None)
        for N, (m, sd, n) in st.items():
            single = reg[N]
            ours = (f"student {m:.3f}" + (f" ± {sd:.3f}" if n > 1 else "") + f" (n={n}) vs same-size "
                    f"regularized {single[0]:.3f}")
            if rec == "distill":
                e = [r for r in ens_rows if r["N"] == N and r["D"] == D]
                if e:
                    LK = min(r["loss"] for r in e)
                    ours += f"; gain kept {(single[0] - m) / (single[0] - LK):.0%} of {single[0] - LK:.3f}"
            row(f"{'distilled' if rec == 'distill' else 'self-distilled'} student beats a same-size model",
                paper, ours, "better than the same-size regularized model by > 2 sigma", single[0] - m > 2 * sig)
    # 9. data efficiency
    effs = [e for e in js["efficiency"] if _base(e["recipe"]) in ("regularized", "ensemble (joint)", "ensemble")
            and e["D"] == D]
    for e in effs:
        tag = "joint" if "joint" in e["recipe"] else "regularized"
        mult = "inf" if e["infinite"] else f"{e['multiplier']:.2f}x"
        row(f"data efficiency vs standard ({_base(e['recipe'])})", f"{PAPER['eff_' + tag]}x", f"{mult} ({e['of']})",
            "the standard data law is identified (not an extrapolation)", not e["warning"])
    if not effs:
        row("data efficiency vs standard (regularized)", f"{PAPER['eff_regularized']}x", "-",
            "the standard data law is identified (not an extrapolation)", None)
    # 10. constant multiplier across D
    mults = sorted((e["D"], e["multiplier"], e["of"]) for e in js["efficiency"] if _base(e["recipe"]) == "regularized"
                   and not e["infinite"] and e["multiplier"])
    if len(mults) >= 2:       # each from the recipe's asymptote at that D, or its best run where E is not identified
        ratio = max(m for _, m, _ in mults) / min(m for _, m, _ in mults)
        row("the gain is a roughly constant data multiplier across D", "similar slopes at 200M-1.6B",
            ", ".join(f"{m:.2f}x at {d * 1e9:,.0f} ({of})" for d, m, of in mults),
            "every multiplier > 1.1 and largest / smallest < 1.5", ratio < 1.5 and min(m for _, m, _ in mults) > 1.1)
    else:
        row("the gain is a roughly constant data multiplier across D", "similar slopes at 200M-1.6B", "-",
            "every multiplier > 1.1 and largest / smallest < 1.5", None)
    # 11. downstream accuracy: evaluate.py's eval.json files on this data (results/downstream, the sweep's own)
    ev = sorted((e for e in downstream or [] if e.get("avg_error") is not None and e.get("val_loss") is not None),
                key=lambda e: e["val_loss"])     # an ensemble scored without its val loss has none
    crit = "the lowest-loss run's average error below the highest-loss run's by > 2 standard errors"
    if len(ev) >= 2:
        lo, hi = ev[0], ev[-1]
        tasks = ("piqa", "sciq", "arc_easy")     # evaluate.PAPER_TASKS (not imported: it pulls in torch)
        se = lambda e: math.sqrt(sum(e["tasks"][t]["acc_stderr"] ** 2 for t in tasks)) / len(tasks)  # noqa: E731
        chance = 1 - sum(lo["tasks"][t]["chance"] for t in tasks) / len(tasks)
        ours = (f"avg error {hi['avg_error']:.3f} at loss {hi['val_loss']:.3f} -> {lo['avg_error']:.3f} at "
                f"{lo['val_loss']:.3f} (chance {chance:.3f}; {len(ev)} evaluations)")
        line = [e for e in (hi, lo) if "shakespeare_line_completion" in e["tasks"]]
        if len(line) == 2:
            ours += (f"; in-domain line completion {line[0]['tasks']['shakespeare_line_completion']['acc']:.3f} -> "
                     f"{line[1]['tasks']['shakespeare_line_completion']['acc']:.3f}")
        row("lower loss buys downstream accuracy", "+9% (ensemble), +7% (student)", ours, crit,
            hi["avg_error"] - lo["avg_error"] > 2 * math.hypot(se(lo), se(hi)))
    else:
        row("lower loss buys downstream accuracy", "+9% (ensemble), +7% (student)", "-", crit, None)
    cpt_eff = [e for e in (cpt or {}).get("efficiency", []) if not e["recipe"].startswith("base")]
    row("the recipe wins in continued pre-training", "17.5x data efficiency",
        ", ".join(f"{e['recipe'].split(' [')[0]} {e['multiplier']:.2f}x" for e in cpt_eff) + " (results/cpt)" if cpt_eff else "-",
        "the cpt preset: every multiplier > 1.1, no fit.py warning",
        all(e["multiplier"] > 1.1 and not e["warning"] for e in cpt_eff) if cpt_eff else None)
    head = ["| finding (paper section 1) | paper | this miniature | criterion | verdict |", "|---|---|---|---|---|"]
    return "\n".join(head + rows) + (f"\n\nsigma = pooled seed sd {'at the main budget' if own else 'over every budget'} = {sig:.4f} nats; D = {D * 1e9:,.0f} "
                                     f"{unit_of([r['recipe'] for r in singles])}s.\n")


# -----------------------------------------------------------------------------
# writing it all: fits.json, the figures, findings.md; the command line

def write(singles, ens_rows, js, out):
    """headline.png and findings.md in `out` (skipped when there is no regularized recipe)."""
    D = main_budget(singles)
    if D is None or len({r["N"] for r in singles if r["D"] == D}) < 2:   # no size axis (e.g. the cpt preset)
        return []
    headline(singles, js, os.path.join(out, "headline.png"))
    cpt_path = os.path.join(os.path.dirname(os.path.abspath(out)), "cpt", "fits.json")   # results/cpt beside
    cpt = json.load(open(cpt_path)) if os.path.exists(cpt_path) and os.path.basename(os.path.abspath(out)) != "cpt" else None
    text = findings(singles, ens_rows, js, cpt, downstream_evals(singles, out))
    _atomic(os.path.join(out, "findings.md"), lambda p: open(p, "w").write(text))
    return ["headline.png", "findings.md"]


def _atomic(path, save):
    """save(tmp) beside path, then rename it over path: a reader never finds half a file."""
    tmp = path + ".tmp" + os.path.splitext(path)[1]
    save(tmp)
    os.replace(tmp, path)


def _clean(v):
    """JSON has no NaN/inf: write null (and "infinite" flags say which was which)."""
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


def main(argv=None, prog="fit.py"):
    """The command line; prog names the tool in its one-line errors (fit.py, the command people run)."""
    from data import OneLineParser     # a bad flag is one line on stderr and exit code 2, as in every tool
    ap = OneLineParser(prog=prog, ranges=dict(n_boot=">= 0", seed=">= 0"),
                       description="Scaling-law fits: asymptotes with intervals, joint limit, data efficiency.")
    ap.add_argument("runs", nargs="+", help="run folders (searched recursively) or CSV/JSONL files of points")
    ap.add_argument("--out", default="fits", help="output folder for fits.json and PNGs")
    ap.add_argument("--n_boot", "--n-boot", dest="n_boot", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.time()
    try:
        singles, ens = load_points(args.runs)
        try:
            js, nfits, kfits, joints, laws = fit_all(singles, ens, args.n_boot, args.seed)
        except ValueError as err:
            raise BadInput(f"cannot fit these points: {err}; check the losses and sizes in the input")
        if not (js["fits"] or js["data_laws"]):
            raise BadInput(f"nothing to fit in {len(singles) + len(ens)} points: need >= 3 distinct N (or K, or D) "
                           "for one recipe; add runs or check the recipe/N/D fields")
    except BadInput as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    print_table(js)
    pngs = plot(args.out, nfits, kfits, joints, laws, js["efficiency"])
    pngs += write(singles, ens, _clean(js), args.out)

    def dump(p):
        with open(p, "w") as fh:
            json.dump(_clean(js), fh, indent=1)
    _atomic(os.path.join(args.out, "fits.json"), dump)
    print(f"wrote {os.path.join(args.out, 'fits.json')} and {', '.join(pngs)}; "
          f"{len(singles)} single-model points (a run can count under two recipes), {len(ens)} ensemble points, "
          f"report in {time.time() - t0:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(prog="report.py"))
