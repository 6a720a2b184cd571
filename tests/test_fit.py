"""Tests for fit.py: exact recovery, interval coverage, the Chinchilla termination pitfall, published
data, data efficiency, flags; and for report.py's points and its CLI (python fit.py RUNS). Run: OPENBLAS_NUM_THREADS=1 python -m pytest -q tests/test_fit.py"""
import os
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: many small fits on 2 cores; a spinning BLAS thread doubles their time
import csv
import itertools
import json
import math
import subprocess
import sys
import time

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import huber, logsumexp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import fit  # noqa: E402
import report  # noqa: E402

# The paper's grids (sections 5-7 of the paper): N and D in billions, K = ensemble size.
GRIDS = {"N": [0.15, 0.3, 0.6, 1.4], "K": list(range(1, 9)), "D": [0.2, 0.4, 0.8, 1.6]}
TRUE = (0.5, 0.4, 3.2)  # A, alpha, E
# Besiroglu et al. (2024) refit of the Chinchilla runs, and Hoffmann et al.'s (2022) published fit.
BESIROGLU = dict(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)
HOFFMANN = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def law(x, A=TRUE[0], alpha=TRUE[1], E=TRUE[2]):
    return A / np.asarray(x, float) ** alpha + E


def rel_err(f, truth=TRUE):
    return max(abs(f.A / truth[0] - 1), abs(f.alpha / truth[1] - 1), abs(f.E / truth[2] - 1))


@pytest.mark.parametrize("grid", ["N", "K", "D"])
@pytest.mark.parametrize("method", ["huber", "curve_fit"])
def test_noise_free_points_on_paper_grids_give_back_the_exact_law(grid, method):
    x = GRIDS[grid]
    f = fit.fit_power_law(x, law(x), method=method, n_boot=50)
    print(f"{grid} {method}: relative error {rel_err(f):.1e}")
    assert rel_err(f) < 1e-4
    assert f.loo_error is not None and abs(f.loo_error) < 1e-4  # the held-out largest x is predicted too
    assert f.E_ci[0] <= f.E <= f.E_ci[1]


def test_paper_K_fit_with_scipy_defaults_recovers_the_law():
    # The paper's K fits used curve_fit with no p0 and no bounds.
    x = GRIDS["K"]
    f = fit.fit_power_law(x, law(x), method="curve_fit", p0=None, bounds=None, n_boot=0)
    assert rel_err(f) < 1e-4


def test_fit_works_in_any_x_units_and_reports_A_in_those_units():
    x_raw = np.array(GRIDS["N"]) * 1e9  # raw parameter counts instead of billions
    f = fit.fit_power_law(x_raw, law(GRIDS["N"]), n_boot=0)
    assert f.alpha == pytest.approx(TRUE[1], rel=1e-6) and f.E == pytest.approx(TRUE[2], rel=1e-6)
    assert f.A == pytest.approx(TRUE[0] * 1e9 ** TRUE[1], rel=1e-5)
    assert f.predict(x_raw) == pytest.approx(law(GRIDS["N"]), rel=1e-9)


def test_batched_bootstrap_solver_agrees_with_the_point_fit():
    # The bootstrap refits replicates with the batched solver; it must find the same optimum.
    rng = np.random.default_rng(3)
    x = np.array(GRIDS["K"], float)
    x0 = math.exp(np.log(x).mean())
    Y = law(x) + rng.normal(0, 0.005, (5, len(x)))
    ref = [fit.fit_power_law(x, y, n_boot=0, loo=False) for y in Y]
    start = np.tile(fit._to_theta(0.3, 0.7, 3.0, x0), (len(Y), 1))
    th, _ = fit._lm(start, np.log(x / x0)[None], Y)
    A, alpha, E = fit._from_theta(th, x0)
    assert E == pytest.approx([r.E for r in ref], abs=1e-4)
    assert alpha == pytest.approx([r.alpha for r in ref], abs=1e-3)


def test_bootstrap_interval_for_E_covers_the_true_E_about_as_often_as_its_level():
    # Known sigma, the paper's 4-point N grid, 150 noisy replications: a 90% interval should
    # contain E = 3.2 in about 90% of them (binomial sd 2.4%; band about +-3 sd).
    x, sigma, R = GRIDS["N"], 0.01, 150
    rng = np.random.default_rng(2025)
    t0, hits = time.time(), 0
    for r in range(R):
        f = fit.fit_power_law(x, law(x) + rng.normal(0, sigma, len(x)), sigma=sigma, n_boot=200, seed=r,
                              level=0.9, loo=False)
        hits += f.E_ci[0] <= TRUE[2] <= f.E_ci[1]
    print(f"coverage of the 90% interval: {hits / R:.3f} over {R} replications ({time.time() - t0:.1f} s)")
    assert 0.82 <= hits / R <= 0.97


def test_sigma_is_estimated_with_a_floor_when_not_given():
    x = GRIDS["N"]
    f = fit.fit_power_law(x, law(x), n_boot=50)  # zero residuals: the floor, not certainty
    assert f.sigma_source == "floor" and f.sigma == pytest.approx(0.005)
    y = law(x) + np.array([0.03, -0.03, 0.03, -0.03])
    g = fit.fit_power_law(x, y, n_boot=50)
    assert g.sigma_source == "residuals" and g.sigma > 0.005
    assert (g.E_ci[1] - g.E_ci[0]) > (f.E_ci[1] - f.E_ci[0])


def test_well_determined_E_is_identified_and_unidentified_E_says_so_in_plain_words():
    K = GRIDS["K"]
    good = fit.fit_power_law(K, law(K, 0.5, 1.0, 3.2), sigma=0.002)
    assert good.identified and good.warning is None
    # A slow power law over one decade with realistic noise: the points say little about E.
    x = GRIDS["N"]
    bad = fit.fit_power_law(x, law(x, 1.0, 0.1, 2.5) + np.array([0.004, -0.004, 0.004, -0.004]), sigma=0.01)
    print(bad.warning)
    assert not bad.identified
    assert "not identified" in bad.warning or "far above the asymptote" in bad.warning


def test_loss_rising_with_size_is_flagged_not_silently_fitted():
    # The standard recipe overfits: loss falls, then rises with N (paper section 1).
    f = fit.fit_power_law(GRIDS["N"], [3.90, 3.80, 3.76, 3.84])
    assert not f.monotone and not f.identified
    assert "rises" in f.warning and "3.84" in f.warning
    ok = fit.fit_power_law(GRIDS["N"], law(GRIDS["N"]), n_boot=0)
    assert ok.monotone
    # the report fits N in billions but words the note in parameters, which a reader knows
    named = fit.fit_power_law(GRIDS["N"], [3.90, 3.80, 3.76, 3.84], n_boot=0, x_name="N", x_scale=1e9)
    assert f"at N={GRIDS['N'][2] * 1e9:,.0f}" in named.warning and "x=" not in named.warning


def test_too_few_points_or_bad_method_raise():
    with pytest.raises(ValueError):
        fit.fit_power_law([1, 2], [3.0, 2.9])
    with pytest.raises(ValueError):
        fit.fit_power_law([1, 2, 3], [3.0, 2.9, 2.8], method="lsq")


def test_data_efficiency_is_one_at_baseline_grows_as_loss_falls_and_is_infinite_past_E():
    base = (0.5, 0.4, 3.2)
    one = fit.data_efficiency(base, 3.75, 3.75)
    assert float(one) == pytest.approx(1.0) and one.warning is None
    losses = [3.74, 3.6, 3.5, 3.4, 3.3, 3.21]
    eff = [float(fit.data_efficiency(base, L, 3.75)) for L in losses]
    assert all(b > a > 1 for a, b in zip(eff, eff[1:])), eff
    # The formula: D(L) = (A / (L - E))^(1/alpha), ratio of the two.
    assert eff[2] == pytest.approx(((3.75 - 3.2) / (3.5 - 3.2)) ** (1 / 0.4))
    for L in (3.2, 3.1):
        past = fit.data_efficiency(base, L, 3.75)
        assert math.isinf(past.value) and "asymptote" in past.warning
    # A PowerLawFit works as the law, and a worse loss needs less data (< 1).
    f = fit.fit_power_law(GRIDS["D"], law(GRIDS["D"]), n_boot=0)
    assert float(fit.data_efficiency(f, 3.8, 3.75)) < 1
    with pytest.raises(ValueError):
        fit.data_efficiency(base, 3.5, 3.1)  # baseline below its own law's asymptote


def _two_step_points(sigma, rng):
    N = GRIDS["N"]
    EN = law(N, 0.1, 0.5, 3.1)  # E_N = 0.1 / N^0.5 + 3.1, so the joint limit is 3.1
    return [(n, k, 0.3 / k ** 0.6 + e + rng.normal(0, sigma)) for n, e in zip(N, EN) for k in range(1, 9)], EN


def test_joint_asymptote_takes_the_two_step_limit():
    pts, EN = _two_step_points(0.0, np.random.default_rng(0))
    j = fit.joint_asymptote(pts, n_boot=100)
    assert j.E_N == pytest.approx(list(EN), rel=1e-5)
    assert j.E == pytest.approx(3.1, rel=1e-4)
    assert j.E_ci[0] <= j.E <= j.E_ci[1]


def test_joint_interval_propagates_noise_from_the_first_step():
    # If the interval ignored the K-fits' uncertainty it would not grow with their noise.
    pts, EN = _two_step_points(0.0, np.random.default_rng(0))
    small = fit.joint_asymptote(pts, n_boot=200, sigma=0.001)
    large = fit.joint_asymptote(pts, n_boot=200, sigma=0.004)
    w = lambda j: j.E_ci[1] - j.E_ci[0]
    print(f"joint E interval width: sigma 0.001 -> {w(small):.4f}, 0.004 -> {w(large):.4f}")
    assert w(large) > 2 * w(small) > 0
    assert all(lo <= e <= hi for (lo, hi), e in zip(small.E_N_ci, EN))


# -------------------------------------------------------------------------- Chinchilla

def chinchilla_grid():
    N, D = [a.ravel() for a in np.meshgrid(np.geomspace(5e7, 1e10, 8), np.geomspace(1e9, 3e11, 8))]
    b = BESIROGLU
    return N, D, b["E"] + b["A"] / N ** b["alpha"] + b["B"] / D ** b["beta"]


def unscaled_huber_objective(N, D, L):
    """The objective as Hoffmann et al. / Besiroglu et al. wrote it: a plain sum of Huber terms."""
    lN, lD, lL = np.log(N), np.log(D), np.log(L)

    def obj(p):
        a, b, e, alpha, beta = p
        return huber(1e-3, logsumexp([a - alpha * lN, b - beta * lD, np.full_like(lN, e)], axis=0) - lL).sum()
    return obj


def test_default_lbfgsb_on_unscaled_huber_stops_early_but_our_fits_do_not():
    # Noise-free Chinchilla-like data (optimum: objective 0 at the true parameters). From each
    # start of a subgrid of Hoffmann et al.'s grid, run L-BFGS-B with default tolerances on the
    # plain summed Huber objective (as Hoffmann et al.), and our L-BFGS-B (objective / delta,
    # tight tolerances) from the same start. Count starts where the default run claims success
    # far from the truth but ours, from the same point, reaches it: that is stopping early, not a
    # local minimum.
    N, D, L = chinchilla_grid()
    obj, logx = unscaled_huber_objective(N, D, L), np.log(np.stack([N, D]))
    starts = list(itertools.product([0.0, 10.0, 20.0], [0.0, 10.0, 20.0], [-0.5, 0.5], [0.5, 1.0], [0.5, 1.0]))
    early = []
    for a, b, e, alpha, beta in starts:
        r = minimize(obj, [a, b, e, alpha, beta], method="L-BFGS-B")  # default tolerances
        far = abs(r.x[3] - BESIROGLU["alpha"]) > 0.02 or abs(math.exp(r.x[2]) - BESIROGLU["E"]) > 0.05
        th, _ = fit._polish(np.array([a, alpha, b, beta, e]), logx, L)
        ours = abs(th[1] - BESIROGLU["alpha"]) < 1e-4 and abs(math.exp(th[4]) - BESIROGLU["E"]) < 1e-3
        early.append(r.success and far and ours)
    print(f"default L-BFGS-B stopped early (reporting success) from {sum(early)} of {len(starts)} starts")
    assert sum(early) >= len(starts) / 3
    f = fit.fit_chinchilla(N, D, L)
    assert f.alpha == pytest.approx(BESIROGLU["alpha"], rel=1e-4) and f.E == pytest.approx(BESIROGLU["E"], rel=1e-4)


def test_fit_chinchilla_recovers_known_parameters_on_a_synthetic_grid():
    N, D, L = chinchilla_grid()
    f = fit.fit_chinchilla(N, D, L)
    print(f"fit_chinchilla: {f.n_starts} starts, {len(L)} points, {f.seconds:.2f} s")
    for k, v in BESIROGLU.items():
        assert getattr(f, k) == pytest.approx(v, rel=1e-4), k
    # with 0.2% noise, still close
    Ln = L * np.exp(np.random.default_rng(0).normal(0, 0.002, L.shape))
    g = fit.fit_chinchilla(N, D, Ln)
    assert g.alpha == pytest.approx(BESIROGLU["alpha"], abs=0.02) and g.E == pytest.approx(BESIROGLU["E"], abs=0.05)


@pytest.fixture(scope="module")
def epoch_runs():
    path = os.path.join(ROOT, "tests", "fixtures", "chinchilla_epoch_runs.csv")
    with open(path) as fh:
        rows = [r for r in csv.DictReader(line for line in fh if not line.startswith("#")) if r["excluded"] == "0"]
    N = np.array([float(r["N"]) for r in rows])
    D = np.array([float(r["C"]) for r in rows]) / (6 * N)
    return N, D, np.array([float(r["loss"]) for r in rows])


@pytest.fixture(scope="module")
def epoch_fit(epoch_runs):
    return fit.fit_chinchilla(*epoch_runs)


def test_fit_chinchilla_reproduces_the_besiroglu_refit_on_epoch_data(epoch_runs, epoch_fit):
    f = epoch_fit
    print(f"Epoch data ({len(epoch_runs[0])} runs): E={f.E:.4f} A={f.A:.1f} B={f.B:.1f} alpha={f.alpha:.4f} "
          f"beta={f.beta:.4f} in {f.seconds:.1f} s (published: {BESIROGLU})")
    assert len(epoch_runs[0]) == 240
    assert f.E == pytest.approx(BESIROGLU["E"], abs=0.01)
    assert f.alpha == pytest.approx(BESIROGLU["alpha"], abs=0.005)
    assert f.beta == pytest.approx(BESIROGLU["beta"], abs=0.005)
    assert f.A == pytest.approx(BESIROGLU["A"], rel=0.1) and f.B == pytest.approx(BESIROGLU["B"], rel=0.1)


def test_default_lbfgsb_on_epoch_data_reports_success_short_of_the_optimum(epoch_runs, epoch_fit):
    # From this grid start it stops near Hoffmann et al.'s published (1.69, 406.4, 410.7, 0.34, 0.28).
    r = minimize(unscaled_huber_objective(*epoch_runs), [6.0, 6.0, 0.5, 0.3, 0.3], method="L-BFGS-B")
    a, b, e, alpha, beta = r.x
    print(f"default L-BFGS-B on Epoch data: E={math.exp(e):.3f} A={math.exp(a):.1f} B={math.exp(b):.1f} "
          f"alpha={alpha:.3f} beta={beta:.3f}; objective {r.fun / epoch_fit.objective:.3f}x ours; published {HOFFMANN}")
    assert r.success and r.fun > 1.05 * epoch_fit.objective

# -------------------------------------------------------------------------- CLI

def write_runs(root):
    """A fake sweep on one dataset: standard (overfits at the largest N), regularized, 3 data budgets,
    2 seeds, ensembles for 3 sizes, a student; a learning-curve log the loader must ignore; and
    runs on another dataset (much lower losses) that must never be pooled with the first."""
    rng = np.random.default_rng(0)
    Ns, Ds = [1e6, 2e6, 4e6, 8e6], [1e6, 2e6, 4e6]
    for rec, E in (("standard", 1.6), ("regularized", 1.45)):
        for D in Ds:
            for N in Ns:
                for seed in (0, 1):
                    loss = 0.05 / (N / 1e9) ** 0.4 * (D / 1e6) ** -0.2 + E * (D / 1e6) ** -0.05 + rng.normal(0, 0.004)
                    if rec == "standard" and N == 8e6:
                        loss += 0.3  # overfitting
                    d = dict(recipe=rec, dataset="shakespeare", tokenizer="byte", vocab=257, N=N, N_nonembed=0.8 * N, D=D, epochs=16, lr=3e-3,
                             wd=0.1 if rec == "standard" else 0.8, batch_size=32, seq_len=256, seed=seed, data_seed=seed,
                             steps=100, val_loss=loss, train_loss=1.0, wall_s=1.0, hardware="cpu")
                    p = os.path.join(root, f"{rec}-D{D:g}-N{N:g}-s{seed}")
                    os.makedirs(p)
                    with open(os.path.join(p, "summary.json"), "w") as fh:
                        json.dump(d, fh)
    for N in Ns[:3]:
        EN = 0.04 / (N / 1e9) ** 0.4 + 1.3
        p = os.path.join(root, f"ens-N{N:g}")
        os.makedirs(p)
        with open(os.path.join(p, "ensemble.json"), "w") as fh:
            json.dump(dict(kind="ensemble", recipe="ensemble", dataset="shakespeare", tokenizer="byte", N=N, D=1e6,
                           K=5, combine="logits",
                           losses={str(k): 0.1 / k ** 0.7 + EN for k in range(1, 6)}, member_losses=[], members=[]), fh)
    os.makedirs(os.path.join(root, "student"))
    with open(os.path.join(root, "student", "summary.json"), "w") as fh:
        json.dump(dict(recipe="distill", dataset="shakespeare", tokenizer="byte", N=2e6, D=1e6, val_loss=1.9, seed=0), fh)
    for N in Ns:
        os.makedirs(os.path.join(root, f"other-N{N:g}"))
        with open(os.path.join(root, f"other-N{N:g}", "summary.json"), "w") as fh:
            json.dump(dict(recipe="standard", dataset="synthetic", tokenizer="synthetic", N=N, D=1e6,
                           val_loss=0.5 + 0.01 / (N / 1e9) ** 0.3, seed=0), fh)
    with open(os.path.join(root, "student", "metrics.jsonl"), "w") as fh:
        fh.write('{"step": 10, "val_loss": 3.0}\n')


def test_cli_writes_fits_json_and_plots_from_a_folder_of_summaries(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    write_runs(str(runs))
    t0 = time.time()
    p = subprocess.run([sys.executable, os.path.join(ROOT, "fit.py"), str(runs), "--out", str(out)],
                       capture_output=True, text=True, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    print(p.stdout[-3000:], f"CLI wall time {time.time() - t0:.2f} s")
    assert p.returncode == 0, p.stderr
    js = json.loads((out / "fits.json").read_text())
    by = {(f["recipe"].replace(" [shakespeare/byte]", ""), f["D"], f["axis"]): f for f in js["fits"]}
    assert by[("regularized", 0.001, "N (billions)")]["n"] == 4
    std = by[("standard", 0.001, "N (billions)")]
    assert std["monotone"] is False and "rises" in std["warning"]
    assert min(std["y"]) > 1.0  # the other dataset's losses (~0.5) were not pooled in
    assert by[("standard [synthetic/synthetic]", 0.001, "N (billions)")]["n"] == 4
    assert js["sigma_seed"] is not None and 0.001 < js["sigma_seed"] < 0.02  # pooled from the two seeds
    assert len(js["joint"]) == 1 and len(js["joint"][0]["E_N"]) == 3
    assert {d["recipe"] for d in js["data_laws"]} == {"standard [shakespeare/byte]", "regularized [shakespeare/byte]"}
    assert any(e["recipe"] == "distill [shakespeare/byte]" for e in js["efficiency"])
    assert not any("synthetic" in e["recipe"] for e in js["efficiency"])  # no standard data law there
    for name in ("loss_vs_N.png", "loss_vs_K.png", "data_scaling.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [f for f in os.listdir(out) if ".tmp" in f]  # atomic writes left no temporaries
    assert "report in" in p.stdout


@pytest.mark.parametrize("case", ["missing", "empty", "corrupt", "no_points"])
def test_cli_bad_input_exits_2_with_one_line_naming_the_problem(tmp_path, capsys, case):
    target = tmp_path / "runs"
    if case == "missing":
        target = tmp_path / "nope"
    elif case == "empty":
        target.mkdir()
    elif case == "corrupt":
        (target / "a").mkdir(parents=True)
        (target / "a" / "summary.json").write_text('{"recipe": "standard", "N": 1e6,')
    else:
        target = tmp_path / "points.csv"
        target.write_text("step,val_loss\n1,3.0\n")
    rc = report.main([str(target), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    print(err)
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("fit.py: ")
    assert ("summary.json" in err) if case in ("corrupt", "empty") else (os.path.basename(str(target)) in err)
    assert not (tmp_path / "out" / "fits.json").exists()


def test_seed_noise_is_robust_to_one_diverged_seed():
    rng = np.random.default_rng(0)
    groups = [list(2.0 + 0.01 * rng.standard_normal(4)) for _ in range(30)]
    clean = report.seed_noise(groups)
    assert 0.007 < clean < 0.013                              # recovers sd 0.01
    groups[0][1] += 1.0                                       # one run diverged
    assert abs(report.seed_noise(groups) - clean) < 0.002        # a plain pooled sd would jump ~10x
    assert report.seed_noise([[2.0], [2.1]]) is None             # no repeated config: unknown


def test_reported_point_is_the_seed0_search_choice_scored_by_its_fresh_seeds():
    by_seed = {("reg", 1.0, 2.0, "a"): {0: 1.90, 1: 2.00, 2: 2.02},    # lucky seed 0
               ("reg", 1.0, 2.0, "b"): {0: 1.95, 1: 1.96},
               ("reg", 1.0, 2.0, "c"): {1: 1.50}}                      # no seed 0: the search never saw it
    assert report.searched_point(by_seed, "reg", 1.0, 2.0) == (pytest.approx(2.01), 2)
    only0 = {("std", 1.0, 2.0, "a"): {0: 2.2}, ("std", 1.0, 2.0, "b"): {0: 2.1}}
    assert report.searched_point(only0, "std", 1.0, 2.0) == (2.1, 1)
    student = {("distill", 1.0, 2.0, "a"): {0: 1.90, 1: 2.00}}         # one config: seed 0 won nothing
    assert report.searched_point(student, "distill", 1.0, 2.0) == (pytest.approx(1.95), 2)
    noseed = {("x", None, 2.0, "a"): {None: 2.3}, ("x", None, 2.0, "b"): {None: 2.4}}
    assert report.searched_point(noseed, "x", None, 2.0) == (2.3, 1)


def test_noise_shared_by_every_point_widens_the_asymptote_interval():
    import fit
    K = np.arange(1, 9)
    y = 0.2 / K ** 0.9 + 1.8
    alone = fit.fit_power_law(K, y, sigma=0.002, n_boot=200)
    shared = fit.fit_power_law(K, y, sigma=0.002, shared_sigma=0.02, n_boot=200)
    w = lambda f: f.E_ci[1] - f.E_ci[0]
    assert w(shared) > 3 * w(alone)
    assert w(shared) > 2 * 1.645 * 0.02 * 0.8          # at least about the shared offset's own 90% width


def test_fit_imports_only_numpy_scipy_and_the_standard_library():
    # fit.py is the algorithm alone: no torch and no project module (report.py imports fit, never back)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import fit; "
            "print(sorted(m for m in ('torch', 'data', 'report', 'train', 'sweep', 'matplotlib') if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code, ROOT], capture_output=True, text=True,
                       env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


def test_each_budget_is_fitted_with_its_own_seed_noise():
    # seed noise depends on D (the mini: 0.020 at 64K, 0.012 at 256K): pooling every budget's seeds
    # would widen (or narrow) one budget's intervals with another's noise
    sys.path.insert(0, ROOT)
    import report
    rows = []
    # two budgets with 5 replicated configs (their own sd), one with 4 (too few: the pool)
    for D, noise, sizes in ((1e-4, 0.1, 5), (4e-4, 0.005, 5), (2e-4, 0.3, 4)):
        for i, N in enumerate((1e-4, 2e-4, 4e-4, 8e-4, 1.6e-3)[:sizes]):
            for s in (0, 1):
                rows.append(dict(recipe="regularized", D=D, N=N, config=("8", "0.003", "1.6"), seed=s, std="standard",
                                 loss=1.5 + 1e-3 / N ** 0.5 + (noise if (s + i) % 2 else -noise), diverged=False, run=f"r{i}{s}"))
    js = report.fit_all(rows, [], n_boot=50)[0]
    at = dict(map(tuple, js["sigma_seed_at_D"]))
    assert set(at) == {1e-4, 4e-4}                     # the 4-config budget has no sd of its own
    assert at[4e-4] < 0.02 and at[1e-4] > 0.1 and js["sigma_seed"] > 0.12   # each its own, not the pool
    fits = {f["D"]: f for f in js["fits"]}
    # one config per size, so both seeds make each point (a mean of 2): sd / sqrt(2); the pool where none
    assert all(math.isclose(fits[D]["sigma"], at[D] / math.sqrt(2)) for D in (1e-4, 4e-4))
    assert math.isclose(fits[2e-4]["sigma"], js["sigma_seed"] / math.sqrt(2))
    # the findings table judges by the main budget's own sd (the budget with the most runs: 1e-4 here)
    table = report.findings(rows, [], js)
    assert f"pooled seed sd at the main budget = {at[1e-4]:.4f} nats" in table
    assert "over every budget" in report.findings(rows, [], dict(js, sigma_seed_at_D=[]))
