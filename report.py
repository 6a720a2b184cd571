"""
The paper's headline figure and a findings table, from the points and fits fit.py produced.

    python fit.py results/mini/points.jsonl --out results/mini     # calls write() below

headline.png: loss vs parameters N (log) at the main data budget, as the paper's first figure:
the standard recipe (wd 0.1), the regularized recipe with its fitted A/N^alpha + E and asymptote,
each size's ensemble K -> inf asymptote, the joint N, K -> inf asymptote, and the distilled
students. Points are the searched configs scored by their fresh seeds (error bars: their sd);
dashed lines are asymptotes, labelled with their 90% intervals.

findings.md: one row per finding of the paper (section 1 of the paper), its number, the miniature's,
and "shown" / "not shown" by the criterion written in the row.
"""
import math
import os

import numpy as np

import fit

# The paper's numbers (D = 200M tokens of DCLM, nats per Llama 3 token), section 1 of the paper.
PAPER = dict(standard=3.75, regularized_E=3.43, ensemble_E=3.34, joint_E=3.17, student=3.36,
             self_student=3.43, gain_kept=0.83, eff_regularized=2.29, eff_joint=5.17)


def _base(recipe):
    return recipe.split(" [")[0]


def searched(singles, recipe, D):
    """{N: (mean, sd, n)} at budget D: the config a seed-0 search picks, scored by its fresh seeds
    (fit.searched_losses, the rule fit.py's fits use)."""
    by = {}
    for r in singles:
        if _base(r["recipe"]) == recipe and r["D"] == D:
            by.setdefault((recipe, D, r["N"], r["config"]), {})[r["seed"]] = r["loss"]
    out = {}
    for N in {k[2] for k in by}:
        ls = fit.searched_losses(by, recipe, D, N)
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


def headline(singles, js, out_png, title=""):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator

    D = main_budget(singles)
    fig, ax = plt.subplots(figsize=(8, 5.2))
    colors = dict(standard="#888888", regularized="C0", ensemble="C3", joint="C3", distill="C2",
                  **{"self-distill": "C1"})
    allN, ys = set(), []            # the y range follows the data, not unidentified intervals

    def points(recipe, label, marker):
        pts = searched(singles, recipe, D)
        if not pts:
            return
        N = sorted(pts)
        allN.update(N)
        ys.extend(pts[n][0] for n in N)
        ax.errorbar([n * 1e9 for n in N], [pts[n][0] for n in N], yerr=[pts[n][1] for n in N], fmt=marker,
                    color=colors[recipe], ms=6, capsize=3, label=label,
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
        ax.errorbar(np.array(N) * 1e9, E, yerr=[E - lo, hi - E], fmt="D", color=colors["ensemble"], ms=6,
                    mfc=fill, capsize=3, label="ensemble, K -> inf" + ("" if ok else " (E not identified)"))
    for j in js["joint"]:
        if _base(j["recipe"]) == "ensemble" and j.get("D") == D and j["identified"]:
            ys.append(j["E"])
            ax.axhline(j["E"], color=colors["joint"], ls=":", lw=1.5,
                       label=f"joint N, K -> inf: E = {_ci(j['E'], j['E_ci'])}")
    points("distill", "distilled student", "*")
    points("self-distill", "self-distilled student", "P")
    ax.set_xscale("log")
    if allN:
        ticks = sorted(n * 1e9 for n in allN)
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([params_label(t) for t in ticks])
    if ys:
        lo, hi = min(ys), max(ys)
        ax.set_ylim(lo - 0.15 * (hi - lo) - 1e-3, hi + 0.15 * (hi - lo) + 1e-3)
    ax.set(xlabel="parameters N (including embeddings)", ylabel="validation loss (nats per token)",
           title=title or f"D = {D * 1e9:,.0f} tokens: loss vs model size")
    ax.grid(alpha=0.3)
    # the legend below the axes: never over the data
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    fit._atomic(out_png, lambda p: fig.savefig(p, dpi=120, bbox_inches="tight"))
    plt.close(fig)


def findings(singles, ens_rows, js):
    """The findings table (markdown): each row states its criterion; sigma is the pooled seed sd."""
    D = main_budget(singles)
    sig = js.get("sigma_seed") or float("nan")
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
    # 6. joint limit
    for j in js["joint"]:
        if _base(j["recipe"]) == "ensemble" and j.get("D") == D:
            row("joint limit N, K -> inf lower still", f"E = {PAPER['joint_E']}", _ci(j["E"], j["E_ci"]),
                "identified, and its interval below every per-N ensemble asymptote",
                bool(j["identified"] and kf and j["E_ci"][1] is not None
                     and j["E_ci"][1] < min(f["E"] for f in kf)))
    # 7-8. distillation, self-distillation (students are trained at the regularized point of their size)
    for rec, paper, what in (("distill", f"student {PAPER['student']} < regularized E {PAPER['regularized_E']}; "
                              f"keeps {PAPER['gain_kept']:.0%} of the gain", "ensemble"),
                             ("self-distill", f"student {PAPER['self_student']}, better than its teacher", "teacher")):
        st = searched(singles, rec, D)
        for N, (m, sd, n) in st.items():
            single = reg.get(N)
            if not single:
                continue
            ours = f"student {m:.3f} ± {sd:.3f} (n={n}) vs same-size regularized {single[0]:.3f}"
            if rec == "distill":
                e = [r for r in ens_rows if r["N"] == N and r["D"] == D]
                if e:
                    LK = min(r["loss"] for r in e)
                    ours += f"; gain kept {(single[0] - m) / (single[0] - LK):.0%} of {single[0] - LK:.3f}"
            row(f"{'distilled' if rec == 'distill' else 'self-distilled'} student beats a same-size model",
                paper, ours, "better than the same-size regularized model by > 2 sigma", single[0] - m > 2 * sig)
    # 9. data efficiency
    for e in js["efficiency"]:
        if _base(e["recipe"]) in ("regularized", "ensemble (joint)", "ensemble") and e["D"] == D:
            tag = "joint" if "joint" in e["recipe"] else "regularized"
            mult = "inf" if e["infinite"] else f"{e['multiplier']:.2f}x"
            row(f"data efficiency vs standard ({_base(e['recipe'])})", f"{PAPER['eff_' + tag]}x", f"{mult} ({e['of']})",
                "the standard data law is identified (not an extrapolation)", not e["warning"])
    # 10. constant multiplier across D
    mults = sorted((e["D"], e["multiplier"]) for e in js["efficiency"] if _base(e["recipe"]) == "regularized"
                   and not e["infinite"] and e["multiplier"])
    if len(mults) >= 2:
        ratio = max(m for _, m in mults) / min(m for _, m in mults)
        row("the gain is a roughly constant data multiplier across D", "similar slopes at 200M-1.6B",
            ", ".join(f"{m:.2f}x at {d * 1e9:,.0f}" for d, m in mults),
            "every multiplier > 1.1 and largest / smallest < 1.5", ratio < 1.5 and min(m for _, m in mults) > 1.1)
    row("lower loss buys downstream accuracy", "+9% (ensemble), +7% (student)", "-", "evaluate.py", None)
    row("the recipe wins in continued pre-training", "17.5x data efficiency", "-", "the cpt preset", None)
    head = ["| finding (paper section 1) | paper | this miniature | criterion | verdict |", "|---|---|---|---|---|"]
    return "\n".join(head + rows) + f"\n\nsigma = pooled seed sd = {sig:.4f} nats; D = {D * 1e9:,.0f} tokens.\n"


def write(singles, ens_rows, js, out):
    """headline.png and findings.md in `out` (skipped when there is no regularized recipe)."""
    if main_budget(singles) is None:
        return []
    headline(singles, js, os.path.join(out, "headline.png"))
    text = findings(singles, ens_rows, js)
    fit._atomic(os.path.join(out, "findings.md"), lambda p: open(p, "w").write(text))
    return ["headline.png", "findings.md"]
