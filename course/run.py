"""The course's seven exercises (course/README.md), each as the exact commands the handout shows.

    python course/run.py 3              # exercise 3: print each command, run it, write course/out/ex3/
    python course/run.py --all          # exercises 1..7 in order
    python course/run.py --show 3       # print exercise 3's commands, run nothing
    python course/run.py --record 1 2   # run 1 and 2, then write their numbers, times and machine into
                                        # course/expected.json and the handout's generated blocks
    python course/run.py --render       # rewrite the handout's generated blocks from expected.json

Each exercise runs the repository's own tools (train.py, ensemble.py, distill.py, fit.py,
data.synthetic) as subprocesses, one at a time, printing each command before it runs: the handout
shows the same list, generated from the functions below. Then it reads what those tools wrote
(summary.json, ensemble.json, fits.json) and writes course/out/exN/results.json (the numbers the
handout quotes, under the keys in QUOTED) and a figure. Train commands carry --resume, so a run that
finished before (in this exercise or an earlier one) is found and not trained again.

ICGPT_COURSE_SMALL=1 (or --small) runs the same commands at a CI size (a few thousand tokens, one or
two epochs): tests/test_course.py runs every exercise that way and checks that each writes every
quoted quantity. --dataset NAME swaps the Shakespeare dataset (e.g. data.fetch's tinyshakespeare_byte);
--out DIR moves course/out.
"""
import argparse
import datetime
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COURSE = os.path.join(REPO, "course")
HANDOUT = os.path.join(COURSE, "README.md")
EXPECTED = os.path.join(COURSE, "expected.json")
MINI_POINTS = "results/mini/points.jsonl"   # the committed miniature's points (its report's input), exercises 3, 6
MINI_RUNS = "results/mini/runs"              # ... and its finished runs' summaries, exercise 3

# The paper's numbers (Kim et al. 2025, section 1 and tables; D = 200M DCLM tokens, nats per Llama-3
# token). Citations, typed from the paper: the course compares the student's fits with them.
PAPER = dict(standard_best=3.75, regularized_E=3.43, ensemble_E=3.34, joint_E=3.17,
             efficiency_regularized=2.29, efficiency_joint=5.17, distill_kept=0.83,
             # the 300m model's tuned regularized point: 800 base steps x 16 epochs, lr 3e-3, wd 1.6
             reg_300m=dict(steps=800 * 16, lr=3e-3, wd=1.6, warmup=0.01))


# ----------------------------------------------------------------------------------------------
# Sizes: the full course (the mini miniature's shapes: T 128, batch 8, lr 3e-3, byte-level
# Shakespeare) and the CI size the test runs. Only data budgets, epochs and counts shrink.

@dataclass(frozen=True)
class Size:
    name: str
    dataset: str = "shakespeare_byte"
    seq_len: int = 128
    batch_size: int = 8
    lr: float = 3e-3
    val_tokens: int = 65_536        # the first 64 KiB of the five held-out plays, as in the mini
    D_small: int = 65_536           # exercises 1, 2, 6: a quarter of the mini's D (see the handout)
    D_main: int = 262_144           # exercises 3-5: the mini's D
    epochs_sweep: tuple = (4, 8, 16, 32)   # exercises 1 and 2
    epochs_long: int = 16           # exercises 3, 4 and 6's fixed epoch count
    wd_std: float = 0.1
    wd_reg: float = 1.6
    models_n: tuple = ("tiny-67k", "tiny-120k")                 # exercise 3
    models_fit: tuple = ("tiny-67k", "tiny-120k", "tiny-240k")  # exercise 6's own N fit
    D_law: tuple = (32_768, 65_536, 131_072)                    # exercise 6's standard data law
    # exercise 7: data/synthetic.py's source of sweep.py's "synthetic" preset, and its D
    source: dict = field(default_factory=lambda: dict(V=1024, k=1, s=32, alpha=0.3, n_train=1_048_576,
                                                      n_val=65_536, seed=1234))
    D_syn: int = 131_072
    val_syn: int = 32_768
    epochs_syn: int = 8
    model_syn: str = "tiny-240k"


FULL = Size("full")
SMALL = Size("small", val_tokens=2_048, D_small=4_096, D_main=8_192, epochs_sweep=(1, 2), epochs_long=2, D_law=(2_048, 4_096, 8_192),
             source=dict(V=64, k=1, s=8, alpha=0.5, n_train=20_000, n_val=4_096, seed=3),
             D_syn=4_096, val_syn=2_048, epochs_syn=1)


class CourseError(Exception):
    """Bad input or a missing prerequisite: one line on stderr, exit code 2."""


# ----------------------------------------------------------------------------------------------
# Commands

@dataclass
class Cmd:
    argv: list                 # after "python"
    out: str = ""              # the run folder a train/distill command writes (for timing and reuse)

    def shell(self, width=None):
        """The command line; with width, wrapped before a flag with shell line continuations."""
        words = ["python"] + [shlex.quote(str(a)) for a in self.argv]
        if not width:
            return " ".join(words)
        lines = [words[0]]
        for i, w in enumerate(words[1:], 1):
            starts_flag = w.startswith("--") and i > 1
            if starts_flag and len(lines[-1]) + len(w) > width:
                lines.append("    " + w)
            else:
                lines[-1] += " " + w
        return " \\\n".join(lines)


def lr_flag(lr):
    return f"{lr:.0e}".replace("e-0", "e-")   # 3e-3, as the README writes it


def run_name(model, D, epochs, wd, seed):
    """sweep.py's run names, so a course run and a mini run of the same config read alike."""
    return f"{model}_D{D}_ep{epochs:g}_lr0.003_wd{wd:g}_s{seed}"


def train(S, out, model, D, epochs, wd, seed=0, evals=4, recipe="single", dataset=None, val_tokens=None):
    folder = os.path.join(out, run_name(model, D, epochs, wd, seed))
    return Cmd(["train.py", "--dataset", dataset or S.dataset, "--model", model, "--train_tokens", D,
                "--seq_len", S.seq_len, "--batch_size", S.batch_size, "--val_tokens", val_tokens or S.val_tokens,
                "--lr", lr_flag(S.lr), "--epochs", epochs, "--wd", f"{wd:g}", "--seed", seed, "--data_seed", seed,
                "--evals", evals, "--recipe", recipe, "--device", "cpu", "--dtype", "float32", "--resume",
                "--out_dir", folder], out=folder)


def paths(out, n):
    return os.path.join(out, f"ex{n}")


def commands(n, S, out):
    """Exercise n's commands, in order (the handout prints this list)."""
    ex = lambda k: paths(out, k)
    if n in (1, 2):
        wd, recipe = (S.wd_std, "standard") if n == 1 else (S.wd_reg, "regularized")
        # 8 evaluations per run: enough points for its learning curve
        return [train(S, os.path.join(ex(n), "runs"), "tiny-67k", S.D_small, e, wd, evals=8, recipe=recipe)
                for e in S.epochs_sweep]
    if n == 3:
        return [train(S, os.path.join(ex(3), "runs"), m, S.D_main, S.epochs_long, S.wd_reg, recipe="regularized")
                for m in S.models_n]
    if n == 4:
        # member i = seed i and data order i (ensemble.py's rule); member 0 is exercise 3's tiny-67k run
        m0, m1 = members(S, out)
        return [m1, Cmd(["ensemble.py", "--eval", "--members", m0.out, m1.out, "--combine", "both",
                         "--device", "cpu", "--dtype", "float32", "--out", os.path.join(ex(4), "ensemble.json")])]
    if n == 5:
        m0, m1 = members(S, out)
        student = os.path.join(ex(5), "runs", "student_" + run_name("tiny-67k", S.D_main, S.epochs_long, S.wd_reg, 2))
        # the mini's distillation (sweep.stage_distill): the members' point (16 epochs over the real D, wd
        # 1.6), half of every batch teacher samples, a corpus of 2 x D sampled tokens; a fresh seed
        return [Cmd(["distill.py", "--teacher", m0.out, m1.out, "--model", "tiny-67k", "--batch_size", S.batch_size,
                     "--lr", lr_flag(S.lr), "--epochs", S.epochs_long, "--wd", f"{S.wd_reg:g}", "--mix_weight", "0.5",
                     "--corpus_tokens", 2 * S.D_main, "--seed", 2, "--data_seed", 2, "--evals", 4,
                     "--device", "cpu", "--dtype", "float32", "--resume", "--out_dir", student], out=student)]
    if n == 6:
        runs = os.path.join(ex(6), "runs")
        # the standard recipe (wd 0.1) at a fixed 16 epochs at three data budgets, for its data law (the
        # D_small point is exercise 1's run), and the regularized recipe (wd 1.6, 16 epochs) at three sizes
        # at D_small (tiny-67k is exercise 2's run)
        std = {D: train(S, os.path.join(ex(1), "runs") if D == S.D_small else runs, "tiny-67k", D, S.epochs_long,
                        S.wd_std, evals=8 if D == S.D_small else 4, recipe="standard") for D in S.D_law}
        reg = {m: train(S, os.path.join(ex(2), "runs") if m == "tiny-67k" else runs, m, S.D_small, S.epochs_long,
                        S.wd_reg, evals=8 if m == "tiny-67k" else 4, recipe="regularized") for m in S.models_fit}
        new = [c for D, c in std.items() if D != S.D_small] + [c for m, c in reg.items() if m != "tiny-67k"]
        return new + [
            Cmd(["fit.py", *[c.out for c in [*std.values(), *reg.values()]], "--out", os.path.join(ex(6), "own")]),
            Cmd(["fit.py", MINI_POINTS, "--out", os.path.join(ex(6), "mini")])]
    if n == 7:
        data_dir = os.path.join(ex(7), "data_synthetic")
        gen = Cmd(["-m", "data.synthetic", *[a for k, v in S.source.items() for a in (f"--{k}", v)], "--out", data_dir])
        runs = os.path.join(ex(7), "runs")
        kw = dict(dataset=data_dir, val_tokens=S.val_syn)
        # two seeds of the standard recipe (the ensemble's members) and the regularized recipe at the wd
        # that fixed Shakespeare's overfitting
        std = [train(S, runs, S.model_syn, S.D_syn, S.epochs_syn, S.wd_std, seed=s, recipe="standard", **kw)
               for s in (0, 1)]
        reg = train(S, runs, S.model_syn, S.D_syn, S.epochs_syn, S.wd_reg, recipe="regularized", **kw)
        return [gen, *std, reg, Cmd(["ensemble.py", "--eval", "--members", std[0].out, std[1].out, "--combine",
                                     "logits", "--device", "cpu", "--dtype", "float32",
                                     "--out", os.path.join(ex(7), "ensemble.json")])]
    raise CourseError(f"no exercise {n}; the exercises are 1-7")


def members(S, out):
    runs3, runs4 = os.path.join(paths(out, 3), "runs"), os.path.join(paths(out, 4), "runs")
    return [train(S, runs3 if s == 0 else runs4, "tiny-67k", S.D_main, S.epochs_long, S.wd_reg, seed=s,
                  recipe="regularized") for s in (0, 1)]


# ----------------------------------------------------------------------------------------------
# Reading what the tools wrote

def load(path):
    if not os.path.exists(path):
        raise CourseError(f"{path} is missing: a command before it failed, or an exercise it needs has not run")
    with open(path) as f:
        return json.load(f)


def summary(cmd):
    return load(os.path.join(cmd.out, "summary.json"))


def curve(s):
    """(epoch, val, train) at each evaluation of a run: its learning curve."""
    return [(h["epoch"], h["val_loss"], h["train_loss"]) for h in s["history"]]


def mini_points():
    with open(os.path.join(REPO, MINI_POINTS)) as f:
        return [json.loads(line) for line in f if line.strip()]


def committed(model, D, epochs, wd):
    """{seed: val loss} of the committed mini runs of exactly that config (results/mini/runs/, where the
    sweep copies every finished run's summary under the name the course's runs share)."""
    got = {}
    for seed in range(10):
        path = os.path.join(REPO, MINI_RUNS, run_name(model, D, epochs, wd, seed) + ".json")
        if os.path.exists(path):
            got[seed] = load(path)["val_loss"]
    return got


def seed_sd_mini():
    """The pooled seed-to-seed sd of the committed mini points at its main budget, D = 256 KiB
    (report.py's robust estimate; the smaller budgets are about twice as noisy)."""
    import report
    singles, _ = report.load_points([os.path.join(REPO, MINI_POINTS)])
    return report.sigma_at_D(singles)[report.main_budget(singles)]


def searched_standard_mini():
    """{model: loss} of the mini's standard recipe at its searched epochs, by report.py's rule (the
    seed-0 search's pick, scored by its fresh seeds), smallest model first."""
    import report
    singles, _ = report.load_points([os.path.join(REPO, MINI_POINTS)])
    model_of = {report._billions(float(p["N"])): p["model"] for p in mini_points() if "model" in p}
    by_seed = {}
    for r in singles:
        if r["recipe"].startswith("standard"):
            by_seed.setdefault((r["recipe"], r["D"], r["N"], r["config"]), {})[r["seed"]] = r["loss"]
    got = {N: report.searched_point(by_seed, rec, D, N)[0] for rec, D, N, _ in by_seed}
    return {model_of[N]: got[N] for N in sorted(got)}


# ----------------------------------------------------------------------------------------------
# Figures: one PNG per exercise, axes with units, readable without the handout

def figure(path, draw, ncols=1, width=6.0):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, 4.2), squeeze=False)
    draw(*axes[0])
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_curves(ax, runs, title):
    import matplotlib.pyplot as plt
    colors = plt.cm.viridis([i / max(1, len(runs) - 1) * 0.85 for i in range(len(runs))])
    for c, (e, s) in zip(colors, runs):
        ep, val, tr = zip(*curve(s))
        ax.plot(ep, val, "-o", color=c, ms=3, label=f"{e:g} epochs: val")
        ax.plot(ep, tr, "--", color=c, lw=1, label=f"{e:g} epochs: train (batch mean)")
    ax.set_xlabel("epochs over D (passes)")
    ax.set_ylabel("loss (nats/byte)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)


def draw_final(ax, series, title):
    for label, style, pts in series:
        x, y = zip(*pts)
        ax.plot(x, y, style, label=label)
    ax.set_xscale("log", base=2)
    xs = sorted({x for _, _, pts in series for x, _ in pts})
    ax.set_xticks(xs, [f"{x:g}" for x in xs])         # 4, 8, 16, 32 rather than 2^2 .. 2^5
    ax.set_xlabel("epochs over D (log scale)")
    ax.set_ylabel("final loss (nats/byte)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def draw_bars(ax, labels, values, title, floors=()):
    ax.bar(range(len(values)), values, color=["#7c8797"] * (len(values) - 1) + ["#2973a4"])
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
    for y, label, style in floors:
        ax.axhline(y, ls=style, color="k", lw=1)
        ax.text(-0.45, y, label, ha="left", va="bottom", fontsize=8,
                bbox=dict(facecolor="white", edgecolor="none", alpha=0.8, pad=1))
    lo = min(list(values) + [y for y, _, _ in floors])
    hi = max(values)
    ax.set_ylim(lo - 0.25 * (hi - lo + 1e-3), hi + 0.15 * (hi - lo + 1e-3))
    ax.text(0.99, 0.01, "axis does not start at 0", transform=ax.transAxes, ha="right", va="bottom",
            fontsize=7, color="#555555")       # the bars' heights exaggerate the gaps: say so
    ax.set_xticks(range(len(values)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("val loss (nats/byte)" if not floors else "val loss (nats/symbol)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="y")


def draw_fits(ax_n, ax_d, r):
    """Exercise 6: the N fit with its asymptote, and the data-efficiency read-off on the data law."""
    import matplotlib
    import matplotlib.ticker
    import numpy as np
    law = lambda f, x: f["A"] / np.asarray(x) ** f["alpha"] + f["E"]   # fit.py's law, x in billions
    for ax, f, what, unit in ((ax_n, r["own_N_fit"], "parameters N", "N"), (ax_d, r["own_data_law"], "data D", "D")):
        x = np.array(f["x"])
        grid = np.geomspace(x.min() / 1.5, x.max() * (4 if ax is ax_d else 1.5), 100)
        ax.plot(x * 1e9, f["y"], "o", color="#2973a4", label=f"your {f['recipe']} runs")
        ax.plot(grid * 1e9, law(f, grid), "-", color="#2973a4", lw=1,
                label=f"fit A/{unit}^alpha + E: alpha {f['alpha']:.2f}")
        ax.axhline(f["E"], ls="--", color="#7c8797", lw=1)
        ax.axhspan(*f["E_ci"], color="#7c8797", alpha=0.12,
                   label=f"E = {f['E']:.2f}, 90% interval [{f['E_ci'][0]:.2f}, {f['E_ci'][1]:.2f}]"
                         f"{'' if f['identified'] else ': not identified'}")
        ax.set_xscale("log")
        ax.set_xlabel(f"{what} (log)" + (" in bytes (K = 1024)" if ax is ax_d else ", with embeddings (K = 1024)"))
        ax.set_ylabel("val loss (nats/byte)")
        ax.grid(alpha=0.3)
        ax.set_ylim(min(f["y"]) - 0.12, max(f["y"]) + 0.05)   # the legend gives E's interval in full
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ticks = [t for t in 2.0 ** np.arange(10, 30) if grid.min() * 1e9 <= t <= grid.max() * 1e9]
        ax.set_xticks(ticks, [f"{t / 1024:g}K" for t in ticks])
    ax_n.set_title(f"regularized recipe vs N (D = {FULL.D_small // 1024}K at full size)", fontsize=10)
    o, f = r["own_efficiency"], r["own_data_law"]
    if f["E"] < o["loss"]:
        D_eq = (f["A"] / (o["loss"] - f["E"])) ** (1 / f["alpha"])
        ax_d.axhline(o["loss"], color="#dc7744", lw=1, label=f"regularized {o['of']}: {o['loss']:.3f}")
        ax_d.annotate("", xy=(D_eq * 1e9, o["loss"]), xytext=(o["D"] * 1e9, o["loss"]),
                      arrowprops=dict(arrowstyle="->", color="#dc7744"))
        ax_d.text((o["D"] * D_eq) ** 0.5 * 1e9, o["loss"], f"{o['multiplier']:.2f}x the data", color="#dc7744",
                  ha="center", va="bottom", fontsize=9)
    ax_d.set_title("standard recipe's data law: how much data matches the regularized run", fontsize=10)
    for ax in (ax_n, ax_d):
        ax.legend(fontsize=7, loc="upper right")


# ----------------------------------------------------------------------------------------------
# Each exercise's analysis: results (the quoted numbers) and its figure

def by_epochs(cmds):
    return {int(s["epochs"]): s for s in map(summary, cmds)}


def analyze_epochs(n, S, out, cmds):
    """Exercises 1 and 2: losses against epochs, each run's learning curve; 2 adds the decay budgets
    and the comparison with 1."""
    d = paths(out, n)
    runs = by_epochs(cmds)
    val = {e: s["val_loss"] for e, s in runs.items()}
    best = min(val, key=val.get)
    longest = max(runs)
    lc = curve(runs[longest])
    low = min(range(len(lc)), key=lambda i: lc[i][1])
    r = dict(D=runs[best]["D"], model=runs[best]["model"], wd=runs[best]["wd"],
             val_loss={str(e): v for e, v in val.items()},
             train_loss={str(e): s["train_loss"] for e, s in runs.items()},
             best_epochs=best, best_val=val[best], longest_minus_best=val[longest] - val[best],
             # the longest run's own curve: where its val loss was lowest and how far it rose after
             longest_curve_min_epoch=lc[low][0], longest_curve_rise=lc[-1][1] - lc[low][1],
             longest_train_drop_after_min=lc[low][2] - lc[-1][2],
             decay_budget={str(e): s["decay_budget"] for e, s in runs.items()})
    if n == 1:
        figure(os.path.join(d, "learning_curves.png"), lambda a, b: (
            draw_curves(a, sorted(runs.items()), f"tiny-67k, D = {r['D']:,} bytes, wd {S.wd_std:g}: each run's curve"),
            draw_final(b, [("val", "-o", sorted(val.items())),
                           ("train (evaluated on the training windows)", "--s", sorted((e, s["train_loss"]) for e, s in runs.items()))],
                       "final loss of each run vs its epochs")), ncols=2)
        return r
    std = analyze_prior(1, S, out)
    import train as trainpy   # the trainer's own schedule, for the paper's decay budget
    pr = PAPER["reg_300m"]
    warm = max(1, round(pr["warmup"] * pr["steps"]))
    paper_budget = pr["wd"] * sum(trainpy.lr_at(t, pr["steps"], warm, pr["lr"]) for t in range(pr["steps"]))
    b_long = runs[longest]["decay_budget"]
    r.update(standard_best_val=std["best_val"], standard_best_epochs=std["best_epochs"],
             gain_over_standard=std["best_val"] - r["best_val"],
             decay_per_step_at_peak=S.lr * S.wd_reg, steps_longest=runs[longest]["steps"],
             shrink_longest=math.exp(-b_long), paper_decay_budget=paper_budget, paper_steps=pr["steps"],
             wd_for_paper_budget=paper_budget / (b_long / S.wd_reg))
    std_runs = by_epochs(commands(1, S, out))
    figure(os.path.join(d, "wd_vs_standard.png"), lambda a, b: (
        draw_curves(a, sorted(runs.items()), f"tiny-67k, D = {r['D']:,} bytes, wd {S.wd_reg:g}: each run's curve"),
        draw_final(b, [(f"val, wd {S.wd_std:g} (exercise 1)", "--o", sorted((e, s["val_loss"]) for e, s in std_runs.items())),
                       (f"val, wd {S.wd_reg:g}", "-o", sorted(val.items()))],
                   "final val loss vs epochs: standard vs regularized")), ncols=2)
    return r

def analyze_size(n, S, out, cmds):
    """Exercise 3: loss against N at the regularized point, beside the committed wd 0.1 runs."""
    d = paths(out, n)
    runs = {c.argv[c.argv.index("--model") + 1]: summary(c) for c in cmds}
    full = FULL
    std16 = {m: committed(m, full.D_main, full.epochs_long, full.wd_std) for m in runs}
    reg16 = {m: committed(m, full.D_main, full.epochs_long, full.wd_reg) for m in runs}
    m_small, m_big = list(runs)[0], list(runs)[-1]
    same = S == FULL          # the committed runs are of the full-size commands on shakespeare_byte
    r = dict(D=runs[m_small]["D"], epochs=S.epochs_long, wd=S.wd_reg,
             N={m: s["N"] for m, s in runs.items()}, val_loss={m: s["val_loss"] for m, s in runs.items()},
             gain_regularized=runs[m_small]["val_loss"] - runs[m_big]["val_loss"],
             committed_standard={m: v for m, v in std16.items()},
             gain_standard_seed0=std16[m_small].get(0, math.nan) - std16[m_big].get(0, math.nan),
             # the same command ran in the mini: on the recording machine it should give the same number
             committed_same_config={m: reg16[m].get(0) for m in runs},
             reproduces_committed_max_abs_diff=max(abs(runs[m]["val_loss"] - reg16[m][0]) for m in runs)
             if same and all(0 in reg16[m] for m in runs) else None,
             mini_standard_searched=searched_standard_mini(),
             seed_sd=seed_sd_mini())

    def draw(ax):
        Ns = [runs[m]["N"] for m in runs]
        ax.errorbar(Ns, [runs[m]["val_loss"] for m in runs], yerr=r["seed_sd"], fmt="-o", color="#2973a4",
                    capsize=3, label=f"your runs: wd {S.wd_reg:g}, {S.epochs_long} epochs (bars: 1 seed sd)")
        for m in runs:
            for s, v in std16[m].items():    # hollow, so a point under it stays visible
                ax.plot(runs[m]["N"], v, "s", mfc="none", mec="#dc7744", ms=7,
                        label=f"mini (committed): wd {full.wd_std:g}, {full.epochs_long} epochs" if (m, s) == (m_small, 0) else None)
        Nof = {p["model"]: p["N"] for p in mini_points() if "model" in p}
        sp = r["mini_standard_searched"]
        ax.plot([Nof[m] for m in sp], list(sp.values()), ":^", color="#7c8797",
                label="mini (committed): wd 0.1 at its best epochs")
        ax.set_xscale("log")
        ticks = sorted(set(Ns) | {Nof[m] for m in sp})
        ax.set_xticks(ticks, [f"{n / 1e3:.0f}K" if n < 1e6 else f"{n / 1e6:.1f}M" for n in ticks])
        ax.minorticks_off()
        ax.set_xlabel("parameters N (with embeddings, log)")
        ax.set_ylabel("val loss (nats/byte)")
        ax.set_title(f"D = {r['D']:,} bytes: loss vs model size", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    figure(os.path.join(d, "loss_vs_N.png"), draw)
    return r

def analyze_ensemble(n, S, out, cmds):
    """Exercises 4 (the pair by both rules) and 5 (the distilled student against it)."""
    d = paths(out, n)
    ens = load(os.path.join(paths(out, 4), "ensemble.json"))
    mem = ens["member_losses"]
    if n == 4:
        r = dict(D=ens["D"], model=ens["model"], member_losses=mem, member_best=min(mem),
                 member_mean=ens["member_mean"], ensemble_logits=ens["losses"]["2"],
                 ensemble_probs=ens["losses_probs"]["2"], gain_logits=min(mem) - ens["losses"]["2"],
                 gain_probs=min(mem) - ens["losses_probs"]["2"],
                 probs_minus_logits=ens["losses_probs"]["2"] - ens["losses"]["2"], seeds=ens["seeds"])
        figure(os.path.join(d, "ensemble.png"), lambda a: draw_bars(
            a, ["member 0", "member 1", "2 members:\nprobs avg", "2 members:\nlogits avg"],
            mem + [r["ensemble_probs"], r["ensemble_logits"]], f"tiny-67k, D = {r['D']:,} bytes: one model vs two"))
        return r
    st = summary(cmds[-1])
    m_steps = summary(members(S, out)[0])["steps"]
    gain = ens["member_mean"] - ens["losses"]["2"]
    r = dict(D=st["D"], student_val=st["val_loss"], member_mean=ens["member_mean"], member_best=min(mem),
             ensemble=ens["losses"]["2"], gain_kept=(ens["member_mean"] - st["val_loss"]) / gain,
             student_minus_best_member=st["val_loss"] - min(mem), student_steps=st["steps"],
             member_steps=m_steps, teacher_tokens=st["distill"]["sampled_tokens"],
             teacher_passes=st["mix"]["synthetic_passes"], student_seed=st["seed"])
    figure(os.path.join(d, "distill.png"), lambda a: draw_bars(
        a, ["member\n(mean of 2)", "best\nmember", "student\n(distilled)", "ensemble\n(teacher)"],
        [r["member_mean"], r["member_best"], r["student_val"], r["ensemble"]],
        f"tiny-67k, D = {r['D']:,} bytes: the student keeps " +
        (f"{r['gain_kept']:.0%} of the ensemble's gain" if r["gain_kept"] >= 0 else
         f"none of the ensemble's gain ({r['gain_kept']:.0%})")))
    return r

def analyze_fits(n, S, out, cmds):
    """Exercise 6: fit.py's fits of the student's points and of the mini's, and the multiplier."""
    d = paths(out, n)
    own, mini = load(os.path.join(d, "own", "fits.json")), load(os.path.join(d, "mini", "fits.json"))

    def brief(f):
        return dict(recipe=f["recipe"].split(" [")[0], n=f["n"], A=f["A"], alpha=f["alpha"], E=f["E"],
                    E_ci=f["E_ci"], identified=f["identified"], monotone=f["monotone"],
                    warning=f["warning"], x=f["x"], y=f["y"])
    nfit = [f for f in own["fits"] if f["axis"].startswith("N")]
    law = [f for f in own["data_laws"] if f["recipe"].startswith("standard")]
    eff = [e for e in own["efficiency"] if e["recipe"].startswith("regularized")]
    if not (nfit and law and eff):
        raise CourseError(f"{d}/own/fits.json lacks the regularized N fit, the standard data law or the "
                          f"efficiency row: were all of exercise 6's runs finished?")
    r = dict(own_N_fit=brief(nfit[0]), own_data_law=brief(law[0]),
             own_efficiency=dict(multiplier=eff[0]["multiplier"], loss=eff[0]["loss"], of=eff[0]["of"],
                                 baseline_loss=eff[0]["baseline_loss"], D=eff[0]["D"], warning=eff[0]["warning"]),
             mini_N_fits=[brief(f) for f in mini["fits"] if f["axis"].startswith("N")],
             mini_sigma_seed=seed_sd_mini(), paper=PAPER)     # at its main budget, as exercise 3 quotes
    figure(os.path.join(d, "efficiency.png"), lambda a, b: draw_fits(a, b, r), ncols=2)
    return r   # with fit.py's own figures: own/loss_vs_N.png, own/data_scaling.png, mini/loss_vs_N.png

def analyze_floor(n, S, out, cmds):
    """Exercise 7: the generated source's losses against its Bayes floor."""
    d = paths(out, n)
    std0, std1, reg = (summary(c) for c in cmds[1:4])
    ens = load(os.path.join(d, "ensemble.json"))
    lim = std0["limits"]
    losses = dict(standard=std0["val_loss"], standard_seed1=std1["val_loss"], regularized=reg["val_loss"],
                  ensemble=ens["losses"]["2"])
    r = dict(D=std0["D"], model=std0["model"], epochs=std0["epochs"], bayes=lim["bayes"], entropy=lim["entropy"],
             entropy_rate=lim["entropy_rate"], losses=losses,
             above_bayes={k: v - lim["bayes"] for k, v in losses.items()},
             train_loss_standard=std0["train_loss"],
             share_of_gap_closed=(losses["standard"] - losses["ensemble"]) / (losses["standard"] - lim["bayes"]))
    figure(os.path.join(d, "floor.png"), lambda a: draw_bars(
        a, [f"regularized\nwd {S.wd_reg:g}", f"standard\nwd {S.wd_std:g}", "standard\nseed 1",
            "ensemble of the\ntwo standard"],
        [losses["regularized"], losses["standard"], losses["standard_seed1"], losses["ensemble"]],
        f"{r['model']} on the generated source, D = {r['D']:,} symbols",
        floors=[(lim["bayes"], f"Bayes-optimal given D: {lim['bayes']:.3f}", "--"),
                (lim["entropy"], f"true source: {lim['entropy']:.3f}", ":")]))
    return r

ANALYZE = {1: analyze_epochs, 2: analyze_epochs, 3: analyze_size, 4: analyze_ensemble, 5: analyze_ensemble,
           6: analyze_fits, 7: analyze_floor}


def analyze(n, S, out, cmds):
    """Read what exercise n's commands wrote; returns its results (QUOTED names what the handout quotes)."""
    return ANALYZE[n](n, S, out, cmds)


def analyze_prior(n, S, out):
    """An earlier exercise's results.json (exercise 2 compares with 1)."""
    path = os.path.join(paths(out, n), "results.json")
    if not os.path.exists(path):
        raise CourseError(f"this exercise compares with exercise {n}: run python course/run.py {n} first")
    return load(path)


# The keys of results.json the handout quotes, per exercise (the test checks every one is written).
QUOTED = {
    1: ["D", "val_loss", "train_loss", "best_epochs", "best_val", "longest_minus_best", "longest_curve_min_epoch",
        "longest_curve_rise", "longest_train_drop_after_min"],
    2: ["D", "val_loss", "best_epochs", "best_val", "standard_best_val", "gain_over_standard", "longest_minus_best",
        "decay_budget", "decay_per_step_at_peak", "steps_longest", "shrink_longest", "paper_decay_budget",
        "paper_steps", "wd_for_paper_budget"],
    3: ["D", "N", "val_loss", "gain_regularized", "committed_standard", "gain_standard_seed0",
        "reproduces_committed_max_abs_diff", "mini_standard_searched", "seed_sd"],
    4: ["member_losses", "member_best", "ensemble_logits", "ensemble_probs", "gain_logits", "gain_probs",
        "probs_minus_logits"],
    5: ["student_val", "member_mean", "member_best", "ensemble", "gain_kept", "student_minus_best_member",
        "student_steps", "member_steps", "teacher_tokens", "teacher_passes"],
    6: ["own_N_fit", "own_data_law", "own_efficiency", "mini_N_fits", "paper"],
    7: ["bayes", "entropy", "entropy_rate", "losses", "above_bayes", "train_loss_standard", "share_of_gap_closed"],
}
# quoted values that may be null at the CI size (their comparison needs the full-size config)
NULL_WHEN_SMALL = {3: {"reproduces_committed_max_abs_diff"}}
# the exercises whose runs an exercise reads (2 compares with 1; 4's member 0 is 3's run; 5 distils 4's
# ensemble; 6 fits runs of 1 and 2 with its own)
NEEDS = {2: [1], 4: [3], 5: [4], 6: [1, 2]}
# who the seeds in an expected block's header are, where an exercise also reads another's runs
# where an exercise's D or source is not the mini's, the noise measured there differs: say so
NOISE_NOTE = {n: ". At this exercise's D = 64 KiB the first mini measured 0.018: use that one here"
              for n in (1, 2, 6)}
NOISE_NOTE[7] = (". This exercise's generated source is another dataset (nats per symbol): its seed sd is the "
                 "gap between the two standard seeds below")
SEED_NOTE = {4: " (member 1; member 0 is exercise 3's seed-0 run)", 5: " (the student; its teachers are seeds 0 and 1)"}
FIGURES = {1: ["learning_curves.png"], 2: ["wd_vs_standard.png"], 3: ["loss_vs_N.png"], 4: ["ensemble.png"],
           5: ["distill.png"], 6: ["efficiency.png", "own/loss_vs_N.png", "own/data_scaling.png", "mini/loss_vs_N.png"],
           7: ["floor.png"]}


# ----------------------------------------------------------------------------------------------
# Running an exercise

def run_exercise(n, S, out, say=print):
    for k in NEEDS.get(n, []):
        if not os.path.exists(os.path.join(paths(out, k), "results.json")):
            raise CourseError(f"exercise {n} builds on exercise {k}'s runs: run python course/run.py {k} first "
                              f"(or --all)")
    cmds = commands(n, S, out)
    os.makedirs(paths(out, n), exist_ok=True)   # ensemble.py --eval --out needs the folder to exist
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0, timing = time.time(), []
    for c in cmds:
        reused = bool(c.out) and os.path.exists(os.path.join(c.out, "summary.json"))
        say(f"\n$ {c.shell()}", flush=True)
        t = time.time()
        rc = subprocess.call([sys.executable, *map(str, c.argv)], cwd=REPO, env=env)
        if rc != 0:
            raise CourseError(f"exercise {n}: the command above failed (exit {rc}); fix what it says and rerun "
                              f"(finished runs are kept)")
        timing.append(dict(cmd=c.shell(), wall_s=time.time() - t, reused_run=reused,
                           run_wall_s=summary(c)["wall_s"] if c.out else None))
    r = analyze(n, S, out, cmds)
    r["wall_s"] = time.time() - t0
    r["commands"] = timing
    r["size"] = S.name
    os.makedirs(paths(out, n), exist_ok=True)
    with open(os.path.join(paths(out, n), "results.json"), "w") as f:
        json.dump(r, f, indent=1)
    say(f"\nexercise {n}: {r['wall_s']:.0f} s; results in {os.path.relpath(paths(out, n), REPO)}/results.json, "
        f"figures {', '.join(FIGURES[n])}")
    return r


def machine():
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return dict(cpu=cpu, cores=os.cpu_count(), threads=int(os.environ.get("OMP_NUM_THREADS", "0")) or None,
                torch=torch.__version__, python=platform.python_version(), dtype="float32", device="cpu")


def git_commit():
    """HEAD, with "+modified" when a tracked file outside course/, tests/ and the READMEs differs from it:
    the tools that produce the numbers (course/run.py's own edits only change analysis and rendering)."""
    try:
        head = subprocess.check_output(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, text=True).strip()
        changed = subprocess.check_output(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                           ":!course", ":!tests", ":!README.md"], cwd=REPO, text=True).strip()
        return head + ("+modified" if changed else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def record(n, r, keep_times=False):
    """Put exercise n's quoted numbers, its times and the machine into expected.json. keep_times: the
    entry's times and machine stay (a rerun that found every run finished measures nothing)."""
    exp = load(EXPECTED) if os.path.exists(EXPECTED) else {"exercises": {}}
    # the seed noise every block states: the committed mini's fresh seeds, as they stand at recording
    exp["noise"] = dict(seed_sd=seed_sd_mini(), source=f"{MINI_POINTS}: pooled sd of fresh seeds at one config "
                        "(report.seed_noise)", recorded=datetime.date.today().isoformat())
    old = exp["exercises"].get(str(n))
    if keep_times:
        if not old:
            raise CourseError(f"--keep_times: exercise {n} has no recorded times to keep")
        old["results"] = {k: r[k] for k in QUOTED[n]}
        with open(EXPECTED, "w") as f:
            json.dump(exp, f, indent=1)
            f.write("\n")
        return
    seeds = sorted({int(c.argv[c.argv.index("--seed") + 1]) for c in commands(n, FULL, "course/out") if c.out})
    reused = [t for t in r["commands"] if t["reused_run"]]
    exp["exercises"][str(n)] = dict(
        results={k: r[k] for k in QUOTED[n]}, wall_s=r["wall_s"],
        # a run an earlier exercise trained is found finished: from scratch add its own training time
        reused_runs=len(reused), reused_runs_wall_s=sum(t["run_wall_s"] for t in reused),
        seeds=seeds, git=git_commit(), recorded=datetime.date.today().isoformat(), machine=machine())
    with open(EXPECTED, "w") as f:
        json.dump(exp, f, indent=1)
        f.write("\n")


# ----------------------------------------------------------------------------------------------
# The handout's generated blocks: the commands and the expected numbers, between markers

def fmt(v, p=3):
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{p}f}"


def slash(d, p=3):
    return " / ".join(fmt(v, p) for v in d.values())


def expected_lines(n, e, noise):
    """The expected-results block of exercise n, from its expected.json entry."""
    r, m = e["results"], e["machine"]
    threads = f"{m['threads']} thread" if m["threads"] == 1 else f"{m['threads'] or 'default'} threads"
    head = (f"Recorded {e['recorded']} (git {e['git']}) on {m['cpu']} ({m['cores']} cores, a VM), {threads}, "
            f"torch {m['torch']}, {m['device']} {m['dtype']}, seeds {', '.join(map(str, e['seeds']))}"
            f"{SEED_NOTE.get(n, '')}: **{(e['wall_s'] + e['reused_runs_wall_s']) / 60:.1f} min**")
    if e["reused_runs"]:
        head += (f" in all ({e['wall_s'] / 60:.1f} min here, plus {e['reused_runs_wall_s'] / 60:.1f} min for "
                 f"{e['reused_runs']} runs an earlier invocation of the same commands trained and this one found finished)")
    head += (f". Seed noise: sd {fmt(noise['seed_sd'])} nats between seeds of one config, measured by the "
             f"committed mini (fresh seeds 1-3 at each searched point, D = 256 KiB){NOISE_NOTE.get(n, '')}; "
             f"a difference under about two of those is not a finding.")
    rows = []
    if n in (1, 2):
        eps = " / ".join(r["val_loss"])
        rows += [(f"val loss at {eps} epochs (D = {r['D']:,})", slash(r["val_loss"]))]
        if n == 1:
            rows += [(f"train loss at {eps} epochs", slash(r["train_loss"]))]
        rows += [("best epochs -> val loss", f"{r['best_epochs']} -> {fmt(r['best_val'])}"),
                 ("longest run minus best", f"{r['longest_minus_best']:+.3f}")]
        if n == 1:
            rows += [("longest run's own curve: lowest val at epoch", fmt(r["longest_curve_min_epoch"], 1)),
                     ("... then val rises by / train falls by", f"{r['longest_curve_rise']:+.3f} / "
                                                                f"{r['longest_train_drop_after_min']:.3f}")]
        else:
            rows += [("standard recipe's best (exercise 1) -> regularized best",
                      f"{fmt(r['standard_best_val'])} -> {fmt(r['best_val'])} (gain {r['gain_over_standard']:.3f})"),
                     (f"decay budget sum(lr_t wd) at {eps} epochs", slash(r["decay_budget"], 2)),
                     ("decay per step at peak lr (lr x wd)", f"{r['decay_per_step_at_peak']:.2%}"),
                     (f"longest run: {r['steps_longest']:,} steps, weights shrink by exp(-budget)",
                      f"{r['shrink_longest']:.4f}"),
                     (f"paper's 300m point ({r['paper_steps']:,} steps, lr 3e-3, wd 1.6): budget",
                      fmt(r["paper_decay_budget"], 1)),
                     ("wd that gives the longest run the paper's budget", fmt(r["wd_for_paper_budget"], 1))]
    elif n == 3:
        ms = list(r["val_loss"])
        rows += [(f"your val loss, wd 1.6, 16 epochs: {' / '.join(ms)} (D = {r['D']:,})", slash(r["val_loss"])),
                 (f"gain from {ms[0]} to {ms[-1]}, regularized", f"{r['gain_regularized']:+.3f}"),
                 ("committed mini, wd 0.1, 16 epochs (seeds 0 / 1)",
                  "; ".join(f"{m}: {slash(v)}" for m, v in r["committed_standard"].items())),
                 (f"gain from {ms[0]} to {ms[-1]}, wd 0.1 (seed 0)", f"{r['gain_standard_seed0']:+.3f}"),
                 ("your runs vs the committed runs of the same command (max abs diff)",
                  "-" if r["reproduces_committed_max_abs_diff"] is None else f"{r['reproduces_committed_max_abs_diff']:.1e}"),
                 ("mini standard recipe at its searched epochs, 5 sizes small to large (a fresh seed, not the search's seed 0)",
                  slash(r["mini_standard_searched"])),
                 ("seed-to-seed sd (pooled, committed mini)", fmt(r["seed_sd"]))]
    elif n == 4:
        rows += [("members (seed 0 / seed 1)", " / ".join(fmt(v) for v in r["member_losses"])),
                 ("2-member ensemble, logit averaging / probability averaging",
                  f"{fmt(r['ensemble_logits'])} / {fmt(r['ensemble_probs'])}"),
                 ("best member minus ensemble: logits / probs", f"{r['gain_logits']:+.3f} / {r['gain_probs']:+.3f}"),
                 ("probs minus logits", f"{r['probs_minus_logits']:+.4f}")]
    elif n == 5:
        rows += [("member mean / best member / ensemble (teacher)",
                  f"{fmt(r['member_mean'])} / {fmt(r['member_best'])} / {fmt(r['ensemble'])}"),
                 ("student (one tiny-67k)", fmt(r["student_val"])),
                 ("share of the ensemble's gain the student keeps", f"{r['gain_kept']:.0%}"),
                 ("student minus best member", f"{r['student_minus_best_member']:+.3f}"),
                 ("steps: student / one member", f"{r['student_steps']:,} / {r['member_steps']:,}"),
                 ("teacher tokens sampled / passes the student made over them",
                  f"{r['teacher_tokens']:,} / {r['teacher_passes']:.1f}")]
    elif n == 6:
        def fitrow(f):
            ci = f"[{fmt(f['E_ci'][0])}, {fmt(f['E_ci'][1])}]"
            return (f"E = {fmt(f['E'])} {ci}, alpha {fmt(f['alpha'])}, identified: "
                    f"{'yes' if f['identified'] else 'no'}" + ("" if f["monotone"] else ", not monotone"))
        o = r["own_efficiency"]
        rows += [(f"your regularized N fit ({r['own_N_fit']['n']} sizes, D = {FULL.D_small // 1024}K)", fitrow(r["own_N_fit"])),
                 (f"your standard data law ({r['own_data_law']['n']} budgets, tiny-67k)", fitrow(r["own_data_law"])),
                 (f"data efficiency: your regularized {o['of']} at D = {FULL.D_small // 1024}K (the lowest of the "
                  f"three sizes' runs) {fmt(o['loss'])} vs standard {fmt(o['baseline_loss'])}",
                  f"{o['multiplier']:.2f}x")]
        rows += [(f"committed mini, {f['recipe']} ({f['n']} sizes)", fitrow(f)) for f in r["mini_N_fits"]]
        p = r["paper"]
        rows += [("paper (D = 200M, nats/token): standard best, E regularized / ensemble / joint",
                  f"{p['standard_best']} ; {p['regularized_E']} / {p['ensemble_E']} / {p['joint_E']}"),
                 ("paper: data efficiency regularized / joint",
                  f"{p['efficiency_regularized']}x / {p['efficiency_joint']}x")]
    elif n == 7:
        L, A = r["losses"], r["above_bayes"]
        rows += [("Bayes-optimal given D / true source on these val tokens (entropy rate)",
                  f"{fmt(r['bayes'])} / {fmt(r['entropy'])} ({fmt(r['entropy_rate'])})"),
                 ("val loss: standard (wd 0.1) / its seed 1 / regularized (wd 1.6) / ensemble of the two standard",
                  slash(L)),
                 ("above the Bayes floor: same order", " / ".join(f"{v:+.3f}" for v in A.values())),
                 ("train loss of the standard run", fmt(r["train_loss_standard"])),
                 ("share of the standard recipe's gap to Bayes the ensemble closes", f"{r['share_of_gap_closed']:.0%}")]
    lines = [head, "", "| quantity | expected |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    return lines


def render(exp=None):
    """The handout with every generated block rewritten from expected.json and commands(); returns text."""
    exp = exp or (load(EXPECTED) if os.path.exists(EXPECTED) else {"exercises": {}})
    with open(HANDOUT) as f:
        text = f.read()
    for n in range(1, 8):
        cmds = ["```bash"] + [c.shell(width=96) for c in commands(n, FULL, "course/out")] + ["```"]
        text = replace_block(text, f"ex{n} commands", cmds)
        e = exp["exercises"].get(str(n))
        text = replace_block(text, f"ex{n} expected",
                             expected_lines(n, e, exp["noise"]) if e else
                             [f"(not recorded yet: python course/run.py --record {n})"])
    return replace_block(text, "overview", overview_lines(exp))


def overview_lines(exp):
    """One row per exercise: what it trains, what it needs, its recorded minutes."""
    rows = ["| exercise | trains | needs | minutes (recorded) |", "|---|---|---|---|"]
    for n in range(1, 8):
        cmds = commands(n, FULL, "course/out")
        runs = [c for c in cmds if c.out]
        Ds = sorted({int(c.argv[c.argv.index("--train_tokens") + 1]) for c in runs if "--train_tokens" in c.argv})
        what = f"{len(runs)} run(s)" + (f" at D = {', '.join(f'{D // 1024}K' for D in Ds)}" if Ds else "")
        what += "".join(f", {t}" for t, k in (("an ensemble evaluation", "ensemble.py"), ("2 fits", "fit.py"),
                                                ("a generated source", "-m")) if any(c.argv[0] == k for c in cmds))
        if n == 5:
            what = "a teacher corpus and one student at D = 256K"
        e = exp["exercises"].get(str(n))
        mins = f"{(e['wall_s'] + e['reused_runs_wall_s']) / 60:.1f}" if e else "not recorded"
        needs = ", ".join(map(str, NEEDS.get(n, []))) or "-"
        rows.append(f"| {n} | {what} | {needs} | {mins} |")
    return rows


def replace_block(text, name, lines):
    begin, end = f"<!-- generated: {name} -->", f"<!-- end generated: {name} -->"
    if text.count(begin) != 1 or text.count(end) != 1:
        raise CourseError(f"{HANDOUT} must hold exactly one '{begin}' ... '{end}' pair")
    a = text.index(begin) + len(begin)
    b = text.index(end)
    return text[:a] + "\n" + "\n".join(lines) + "\n" + text[b:]


# ----------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("exercises", nargs="*", type=int, help="exercise numbers (1-7)")
    ap.add_argument("--all", action="store_true", help="run exercises 1..7 in order")
    ap.add_argument("--show", action="store_true", help="print the commands only")
    ap.add_argument("--record", action="store_true", help="run, then write expected.json and the handout's blocks")
    ap.add_argument("--render", action="store_true", help="rewrite the handout's blocks from expected.json")
    ap.add_argument("--keep_times", action="store_true",
                    help="with --record: keep the recorded times (the runs exist; only the analysis changed)")
    ap.add_argument("--small", action="store_true", help="the CI size (also ICGPT_COURSE_SMALL=1)")
    ap.add_argument("--dataset", default=None, help="the Shakespeare dataset (default shakespeare_byte)")
    ap.add_argument("--out", default=os.path.join("course", "out"), help="output folder (default course/out)")
    ap.error = lambda msg: (print(f"error: {msg}; see course/run.py -h", file=sys.stderr), sys.exit(2))
    args = ap.parse_args(argv)
    small = args.small or os.environ.get("ICGPT_COURSE_SMALL", "") not in ("", "0")
    S = SMALL if small else FULL
    if args.dataset:
        S = replace(S, dataset=args.dataset)
    todo = list(range(1, 8)) if args.all else args.exercises
    try:
        bad = [n for n in todo if not 1 <= n <= 7]
        if bad:
            raise CourseError(f"no exercise {bad[0]}; the exercises are 1-7")
        if args.render:
            text = render()              # read the handout before opening it for writing
            with open(HANDOUT, "w") as f:
                f.write(text)
            print(f"rewrote the generated blocks of {os.path.relpath(HANDOUT)}")
            return
        if not todo:
            raise CourseError("name an exercise (1-7), or pass --all or --render")
        if args.record and (small or args.dataset or os.path.abspath(args.out) != os.path.join(COURSE, "out")):
            raise CourseError("--record writes the handout's expected numbers: only the full size, the default "
                              "dataset and the default --out")
        if args.show:
            for n in todo:
                print(f"# exercise {n}\n" + "\n".join(c.shell() for c in commands(n, S, args.out)))
            return
        for n in todo:
            r = run_exercise(n, S, args.out)
            if args.record:
                record(n, r, keep_times=args.keep_times)
        if args.record:
            text = render()              # read the handout before opening it for writing
            with open(HANDOUT, "w") as f:
                f.write(text)
            print(f"recorded exercise(s) {', '.join(map(str, todo))} in {os.path.relpath(EXPECTED)} and the handout")
    except CourseError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    os.chdir(REPO)            # the commands name repository files (train.py, results/mini/...)
    sys.path.insert(0, REPO)  # analyze() imports train and report
    main()
