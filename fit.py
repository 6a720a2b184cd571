"""
Scaling-law fits for "Pre-training under infinite compute" (Kim et al. 2025): the asymptote E of a
power law with an interval, the two-step joint limit, data efficiency, and Chinchilla's law. The
fitting algorithm only; report.py turns run points into these fits, tables, figures and findings.

PART 1, the paper's fit (sections 6-7 of the paper). A recipe is judged by the asymptote E of
    L(x) = A / x^alpha + E        x = parameters N (billions), ensemble size K, or data D (billions)
fitted with scipy.optimize.curve_fit in linear space, unweighted (p0 = [1, 0.5, 2], bounds >= 0
for N and D; scipy's defaults for K). The joint limit takes two steps: for each N fit loss vs K
to get E_N, then fit E_N vs N. Data efficiency inverts the standard recipe's data law
D(L) = (A / (L - E))^(1/alpha). The paper reports no error bars, and with 4 points per fit E is
often weakly identified. Part 1 is that curve_fit call (fit_power_law(method="curve_fit") runs it).

PART 2, what this project adds, and why:
- method="huber" (default): the Chinchilla objective (Hoffmann et al. 2022, approach 3): summed
  Huber loss (delta 1e-3) between log L and logaddexp(a - alpha log x, e), A = e^a, E = e^e,
  minimised from a grid of starts. Besiroglu et al. (2024) found the original Chinchilla fit had
  stopped early: an unscaled sum of Huber terms with delta 1e-3 is ~1e-3 in size, so L-BFGS-B's
  default tolerances (absolute change 2e-9, gradient 1e-5) are met long before the optimum. We
  divide the objective by delta (it is then ~ sum |log residual|) and set tight tolerances.
  Every fit normalises x by its geometric mean internally (so tiny models in "billions" or raw
  token counts work alike) and reports A in the caller's units.
- Optimisation runs in two stages: a batched Levenberg-Marquardt / IRLS solver in numpy that fits
  thousands of starts or replicate data sets at once (`_lm`), then L-BFGS-B polishes the best
  starts. The same batched solver refits the bootstrap replicates, so intervals are cheap.
- Uncertainty: a parametric bootstrap (4-6 points leave too few residuals to resample). Replicate
  losses y* = fitted curve + N(0, sigma^2) are refitted with the same objective; E_ci is the
  percentile interval of the refitted E at `level`. With known sigma it covers the true E about as
  often as `level` says (tests/test_fit.py measures it; the "basic" interval, 2E - quantiles, did
  worse when E is weakly identified: 0.80 at level 0.9 for K = 1..8). sigma is the
  per-point noise of a loss: pass it from replicate seeds when you have them (report.py pools the
  seed-to-seed spread of identical configs); otherwise it is the residual RMS with n - 3 degrees
  of freedom, floored at `sigma_floor` = 0.005 nats so that a lucky 4-point fit cannot claim
  certainty. `shared_sigma` adds noise common to every point of a curve (a subset-averaged K curve
  whose points all average the same members). curve_fit's covariance is not used: on the paper's
  4-point N grid (sigma 0.01) its nominal 90% interval for E covered the truth in 67% of 400
  trials; the bootstrap, 89% of 200.
- Honest flags: `identified=False` with a plain-words `warning` when E's interval is wider than
  the spread of the losses, reaches E = 0, or the data stop far above E; `monotone=False` when the
  loss rises with x (the standard recipe overfitting), which a power law cannot describe.
- joint_asymptote: the paper's two steps, with a joint bootstrap that carries step 1's uncertainty
  into E. data_efficiency: the paper's inversion, infinite (with a warning) below the law's E.
- fit_chinchilla: L = E + A/N^alpha + B/D^beta on the same objective, Hoffmann's 4,500-start grid
  run through the batched solver (seconds, not minutes), then L-BFGS-B on the best starts.

    python fit.py RUNS... [--out DIR]      # the report: report.py's command line (see there)
"""
import os
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: on 2 cores a spinning BLAS thread doubles the time of many small fits
import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import curve_fit, minimize

# =============================================================================
# PART 1. The paper's fit: L(x) = A / x^alpha + E by scipy's curve_fit, as the authors ran it

PAPER_P0 = (1.0, 0.5, 2.0)      # the authors' start for the N and D fits (A, alpha, E)
PAPER_BOUNDS = (0, np.inf)      # and every parameter >= 0; their K fits pass neither (scipy's defaults)


def paper_fit(x, y, p0=PAPER_P0, bounds=PAPER_BOUNDS):
    """The paper's recipe: unweighted linear-space least squares, x as given. p0 or bounds None:
    scipy's defaults. Returns (A, alpha, E); raises RuntimeError or ValueError when it fails."""
    kw = {}
    if p0 is not None:
        kw["p0"] = list(p0)
    if bounds is not None:
        kw["bounds"] = bounds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "covariance could not be estimated": we do not use it
        popt, _ = curve_fit(lambda x, A, alpha, E: A / x ** alpha + E, x, y, maxfev=20000, **kw)
    return popt

# =============================================================================
# PART 2. What this project adds: the Huber objective on log losses and its batched solver,
# bootstrap intervals (also with noise shared by a curve's points), identification flags, the
# joint limit with an interval, data efficiency, and Chinchilla's two-variable law.

DELTA = 1e-3          # Huber delta on log-loss residuals (Hoffmann et al.)
ALPHA_MAX = 10.0      # exponents are kept in [0, ALPHA_MAX]
E_LOG_MIN = -50.0     # e = log E >= -50: E = 0 for practical purposes

# -----------------------------------------------------------------------------
# the model in log space, batched: log L = logsumexp(a_1 - alpha_1 log x_1, ..., e)

def _lse(theta, logx):
    """theta (B, 2m+1) rows [a_1, alpha_1, ..., a_m, alpha_m, e]; logx (m, n).
    Returns log L (B, n) and its Jacobian (B, n, 2m+1)."""
    m, n = logx.shape
    T = np.empty((theta.shape[0], m + 1, n))
    for j in range(m):
        T[:, j] = theta[:, 2 * j, None] - theta[:, 2 * j + 1, None] * logx[j]
    T[:, m] = theta[:, -1, None]
    tmax = T.max(1, keepdims=True)
    w = np.exp(T - tmax)
    z = w.sum(1, keepdims=True)
    s = (tmax + np.log(z))[:, 0]
    w /= z  # softmax weights: d logL / d(term j)
    J = np.empty((theta.shape[0], n, 2 * m + 1))
    for j in range(m):
        J[:, :, 2 * j] = w[:, j]
        J[:, :, 2 * j + 1] = -w[:, j] * logx[j]
    J[:, :, -1] = w[:, m]
    return s, J


def _fgh(theta, logx, Y, space="log", delta=DELTA, hess=True):
    """Objective per row, gradient, and Gauss-Newton/IRLS Hessian.
    space="log": sum Huber(log L - log y) / delta  (the Chinchilla objective, scaled so it is O(1));
    space="lin": 0.5 sum (L - y)^2                 (curve_fit's unweighted least squares)."""
    s, J = _lse(theta, logx)
    if space == "log":
        r = s - np.log(Y)
        a = np.abs(r)
        inside = a <= delta
        f = np.where(inside, 0.5 * r * r / delta, a - 0.5 * delta).sum(-1)
        psi = np.where(inside, r / delta, np.sign(r))
        W = np.where(inside, 1.0 / delta, 1.0 / np.maximum(a, delta))  # IRLS weight psi(r)/r
    else:
        p = np.exp(s)
        J = J * p[..., None]
        r = p - Y
        f = 0.5 * (r * r).sum(-1)
        psi, W = r, np.ones_like(r)
    g = np.einsum("bn,bnp->bp", psi, J)
    H = np.einsum("bn,bnp,bnq->bpq", W, J, J) if hess else None
    return f, g, H


def _clip(theta):
    theta[:, 1:-1:2] = np.clip(theta[:, 1:-1:2], 0.0, ALPHA_MAX)
    theta[:, -1] = np.maximum(theta[:, -1], E_LOG_MIN)
    return theta


def _lm(theta, logx, Y, space="log", delta=DELTA, iters=400):
    """Batched Levenberg-Marquardt (IRLS for the Huber objective): fits every row of theta
    against the matching row of Y at once. A step is kept only if it lowers that row's
    objective, so each row decreases monotonically; a row stops when its relative progress
    falls below 1e-14 or its damping explodes (a bound or a kink it cannot improve on)."""
    theta = _clip(np.array(theta, float))
    B, P = theta.shape
    Y = np.broadcast_to(Y, (B, logx.shape[1]))
    f, g, H = _fgh(theta, logx, Y, space, delta)
    lam = np.full(B, 1e-2)
    act = np.arange(B)
    eye = np.eye(P)[None]
    for _ in range(iters):
        if act.size == 0:
            break
        d = np.diagonal(H[act], axis1=1, axis2=2)
        damp = lam[act, None] * d + 1e-12 * d.max(1, keepdims=True) + 1e-300
        step = np.linalg.solve(H[act] + eye * damp[:, None, :], -g[act][..., None])[..., 0]
        new = _clip(theta[act] + step)
        fn, gn, Hn = _fgh(new, logx, Y[act], space, delta)
        ok = np.isfinite(fn) & (fn < f[act])
        rel = (f[act] - fn) / np.maximum(np.abs(f[act]), 1e-300)
        i = act[ok]
        theta[i], f[i], g[i], H[i] = new[ok], fn[ok], gn[ok], Hn[ok]
        lam[act] = np.where(ok, np.maximum(lam[act] * 0.2, 1e-12), lam[act] * 10.0)
        act = act[~((ok & (rel < 1e-14)) | (lam[act] > 1e10))]
    return theta, f


def _polish(theta0, logx, y, delta=DELTA):
    """L-BFGS-B on the delta-scaled objective with tight tolerances (the Besiroglu et al. fix)."""
    P = theta0.size
    bnds = [(None, None) if (j % 2 == 0) else (0.0, ALPHA_MAX) for j in range(P - 1)] + [(E_LOG_MIN, None)]

    def fg(t):
        f, g, _ = _fgh(t[None], logx, y[None], "log", delta, hess=False)
        return f[0], g[0]
    r = minimize(fg, theta0, jac=True, method="L-BFGS-B", bounds=bnds,
                 options=dict(ftol=1e-15, gtol=1e-12, maxiter=5000, maxfun=20000))
    return r.x, float(r.fun)


def _huber_fit(logu, y, delta=DELTA):
    """Global Huber fit of one power law from a data-adaptive grid of starts: for each start
    exponent and each trial E below the smallest loss, log(y - E) = a - alpha log u gives a."""
    starts = []
    for alpha in (0.1, 0.25, 0.5, 1.0, 2.0, 4.0):
        for frac in (1e-3, 0.5, 0.8, 0.95, 0.99):
            E = frac * y.min()
            starts.append([np.median(np.log(y - E) + alpha * logu), alpha, math.log(E)])
    th, f = _lm(np.array(starts), logu[None], y, "log", delta=delta, iters=40)
    keep = np.argsort(f)[:3]  # the few best starts run to convergence, then L-BFGS-B checks them
    th, f = _lm(th[keep], logu[None], y, "log", delta=delta)
    best = None
    for i in range(len(f)):
        t, fv = _polish(th[i], logu[None], y, delta)
        if fv > f[i]:  # L-BFGS-B may stop at a kink; keep LM's point then
            t, fv = th[i], f[i]
        if best is None or fv < best[1]:
            best = (t, fv)
    return best[0]


# -----------------------------------------------------------------------------
# one power law, L(x) = A / x^alpha + E, with an interval and flags

@dataclass
class PowerLawFit:
    A: float                      # in the caller's units of x
    alpha: float
    E: float
    E_ci: tuple                   # (low, high) at `level`; (nan, nan) when not computed
    method: str
    n: int
    level: float = 0.9
    sigma: float = float("nan")   # noise per point used by the bootstrap (nats)
    sigma_source: str = ""        # "given", "residuals" or "floor"
    identified: bool = True
    monotone: bool = True
    warning: str = None
    loo_error: float = None       # predicted - actual loss at the largest x, fitted without it
    x: list = field(default_factory=list, repr=False)
    y: list = field(default_factory=list, repr=False)
    E_boot: np.ndarray = field(default=None, repr=False)

    def predict(self, x):
        return self.A / np.asarray(x, float) ** self.alpha + self.E

    def to_dict(self):
        d = {k: getattr(self, k) for k in ("A", "alpha", "E", "method", "n", "level", "sigma", "sigma_source",
                                           "identified", "monotone", "warning", "loo_error")}
        d["E_ci"] = list(self.E_ci)
        d["x"], d["y"] = list(map(float, self.x)), list(map(float, self.y))
        return d


def _to_theta(A, alpha, E, x0):
    """user (A, alpha, E) -> internal log-space parameters with x normalised by x0."""
    return np.array([math.log(A) - alpha * math.log(x0), alpha, math.log(E)])


def _from_theta(th, x0):
    a, alpha, e = th[..., 0], th[..., 1], th[..., 2]
    return np.exp(a + alpha * math.log(x0)), alpha, np.exp(e)


def fit_power_law(x, y, method="huber", n_boot=400, seed=0, p0=PAPER_P0, bounds=PAPER_BOUNDS,
                  sigma=None, level=0.9, sigma_floor=0.005, delta=DELTA, loo=True, shared_sigma=0.0,
                  x_name="x", x_scale=1.0):
    """Fit L(x) = A/x^alpha + E. method "huber" (Chinchilla objective, default) or "curve_fit"
    (the paper's, paper_fit; p0 and bounds apply only to it, None gives scipy's defaults). sigma: noise per
    point (scalar or array, nats) for the parametric bootstrap; None estimates it from residuals
    with a floor. shared_sigma: noise common to every point (one offset per bootstrap replicate), as
    for a subset-averaged K curve whose points all average the same members. x_name and x_scale only
    word the notes (report.py fits N in billions and passes "N", 1e9: the notes then read in parameters).
    Returns a PowerLawFit
    with E_ci, identified/monotone flags and a warning."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    order = np.argsort(x)
    x, y = x[order], y[order]
    n = len(x)
    if n < 3 or np.unique(x).size < 3:
        raise ValueError(f"a power law needs >= 3 distinct x, got {np.unique(x).size}")
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("x and losses must be positive")
    x0 = float(np.exp(np.log(x).mean()))
    logu = np.log(x / x0)
    notes = []

    # Loss rising with x is not a power law: say so instead of fitting it silently.
    ux, inv = np.unique(x, return_inverse=True)
    ym = np.bincount(inv, y) / np.bincount(inv)  # mean loss per distinct x (repeated seeds)
    rises = np.nonzero(np.diff(ym) > 0)[0]
    monotone = rises.size == 0
    if not monotone:
        i = rises[0]
        at = lambda v: f"{x_name}={v * x_scale:,.0f}" if x_scale > 1 else f"{x_name}={v:.4g}"   # noqa: E731
        notes.append(f"loss rises with {x_name} (from {ym[i]:.4g} at {at(ux[i])} to {ym[i+1]:.4g} at {at(ux[i+1])}): "
                     "not a falling power law (overfitting?); the fitted E is not meaningful")

    if method == "huber":
        th = _huber_fit(logu, y, delta)
        A, alpha, E = (float(v) for v in _from_theta(th, x0))
    elif method == "curve_fit":
        try:
            A, alpha, E = (float(v) for v in paper_fit(x, y, p0, bounds))
        except (RuntimeError, ValueError) as err:
            nan = float("nan")
            return PowerLawFit(nan, nan, nan, (nan, nan), method, n, level, identified=False, monotone=monotone,
                               warning=f"curve_fit failed: {err}", x=list(x), y=list(y))
        th = _to_theta(A, alpha, E, x0) if A > 0 and E > 0 else None
    else:
        raise ValueError(f"method must be 'huber' or 'curve_fit', got {method!r}")
    fit = PowerLawFit(A, alpha, E, (float("nan"),) * 2, method, n, level, monotone=monotone, x=list(x), y=list(y))

    # Noise model for the bootstrap.
    resid = y - fit.predict(x)
    if sigma is not None:
        sig = np.broadcast_to(np.asarray(sigma, float), (n,))[order] if np.ndim(sigma) else np.full(n, float(sigma))
        fit.sigma_source = "given"
    else:
        s = math.sqrt((resid ** 2).sum() / (n - 3)) if n > 3 else 0.0
        sig, fit.sigma_source = np.full(n, max(s, sigma_floor)), ("residuals" if s > sigma_floor else "floor")
    fit.sigma = float(np.sqrt(np.mean(sig ** 2)))

    # Parametric bootstrap: simulate from the fit, refit every replicate in one batched solve.
    if n_boot and th is not None:
        rng = np.random.default_rng(seed)
        noise = rng.standard_normal((n_boot, n)) * sig + rng.standard_normal((n_boot, 1)) * shared_sigma
        Y = np.maximum(fit.predict(x) + noise, 1e-6 * y.min())
        tb, _ = _lm(np.tile(th, (n_boot, 1)), logu[None], Y, "log" if method == "huber" else "lin", delta)
        Eb = np.exp(tb[:, 2])
        Eb = Eb[np.isfinite(Eb)]
        fit.E_boot = Eb
        fit.E_ci = tuple(float(q) for q in np.quantile(Eb, [(1 - level) / 2, (1 + level) / 2]))  # percentile interval
    elif n_boot:
        notes.append("fit left the positive region (A or E <= 0): no interval")

    # Is E pinned down? Plain-words reasons when not.
    spread = y.max() - y.min()
    lo, hi = fit.E_ci
    if not np.isfinite(E) or (n_boot and not (np.isfinite(lo) and np.isfinite(hi))):
        notes.append("E is not identified: no finite estimate or interval")
    elif n_boot:
        if hi - lo > spread:
            notes.append(f"E is not identified: its {level:.0%} interval [{lo:.4g}, {hi:.4g}] is wider than "
                         f"the whole spread of the losses ({spread:.3g})")
        elif lo <= 1e-3 * max(E, 1e-12) or np.mean(fit.E_boot < 1e-6 * y.min()) > (1 - level) / 2:
            notes.append("E is not identified: the interval reaches E = 0")
    if np.isfinite(E) and y.min() - E > 3 * spread:
        notes.append(f"the data stop far above the asymptote (smallest loss - E = {y.min() - E:.3g}, "
                     f"{(y.min() - E) / spread:.1f}x the spread of the losses): E is an extrapolation")
    fit.identified = monotone and not any(s.startswith(("E is not", "the data stop", "fit left")) for s in notes)

    # Leave-one-out extrapolation: fit without the largest x, predict it.
    if loo and n - 1 >= 3 and np.unique(x[:-1]).size >= 3:
        sub = fit_power_law(x[:-1], y[:-1], method, n_boot=0, p0=p0, bounds=bounds, delta=delta, loo=False)
        fit.loo_error = float(sub.predict(x[-1]) - y[-1]) if np.isfinite(sub.E) else None
    fit.warning = "; ".join(notes) or None
    return fit

# -----------------------------------------------------------------------------
# the two-step joint limit (N -> inf of the K -> inf asymptotes)

@dataclass
class JointFit:
    N: list                 # model sizes with a K-fit
    E_N: list               # K -> inf asymptote per N
    E_N_ci: list            # its interval from the joint bootstrap
    per_n: list             # the PowerLawFit in K for each N
    limit: PowerLawFit      # the fit of E_N vs N (its E is the joint asymptote)
    E: float
    E_ci: tuple
    identified: bool
    warning: str = None

    def to_dict(self):
        return dict(N=self.N, E_N=self.E_N, E_N_ci=self.E_N_ci, per_n=[f.to_dict() for f in self.per_n],
                    limit=self.limit.to_dict(), E=self.E, E_ci=list(self.E_ci), identified=self.identified,
                    warning=self.warning)


def joint_asymptote(points, method="huber", n_boot=400, seed=0, sigma=None, level=0.9, sigma_floor=0.005,
                    shared_sigma=0.0, n_scale=1.0):
    """points: rows (N, K, loss). Step 1: for each N fit loss vs K -> E_N. Step 2: fit E_N vs N -> E.
    The interval comes from a joint parametric bootstrap: every replicate simulates all the K-curves
    from the fitted two-step model (K-curve shape per N, E_N on the step-2 curve) plus noise sigma
    per point and shared_sigma per curve (the members a curve's points share), then refits both
    steps, so step-1 uncertainty propagates into E. With method="curve_fit" the
    K-fits use scipy's defaults (no p0, no bounds) and the N-fit the paper's p0 and bounds. n_scale
    only words the notes (N in billions with n_scale 1e9: the notes name N in parameters)."""
    P = np.asarray(points, float)
    Ns = np.unique(P[:, 0])
    kw = dict(p0=None, bounds=None) if method == "curve_fit" else {}  # the paper's K fits
    per = [fit_power_law(P[P[:, 0] == N, 1], P[P[:, 0] == N, 2], method, n_boot=0, loo=False, x_name="K", **kw)
           for N in Ns if np.unique(P[P[:, 0] == N, 1]).size >= 3]
    Ns = np.array([N for N in Ns if np.unique(P[P[:, 0] == N, 1]).size >= 3])
    if len(per) < 3:
        raise ValueError(f"the joint limit needs >= 3 model sizes with >= 3 ensemble sizes each, got {len(per)}")
    EN = np.array([f.E for f in per])
    limit = fit_power_law(Ns, EN, method, n_boot=0, loo=False, x_name="N", x_scale=n_scale)
    if sigma is None:  # pooled residuals of all K-fits, floored
        res = np.concatenate([np.array(f.y) - f.predict(f.x) for f in per])
        dof = sum(f.n - 3 for f in per)
        sigma = max(math.sqrt((res ** 2).sum() / dof) if dof > 0 else 0.0, sigma_floor)
    notes = [(f"N={N * n_scale:,.0f}" if n_scale > 1 else f"N={N:.4g}") + f": {f.warning}"
             for N, f in zip(Ns, per) if f.warning]
    if limit.warning:
        notes.append(f"E_N vs N: {limit.warning}")
    E, ci, EN_ci = limit.E, (float("nan"),) * 2, [(float("nan"),) * 2] * len(per)
    if n_boot and np.all(np.array([f.A for f in per] + [f.E for f in per] + [limit.A, limit.E]) > 0):
        rng = np.random.default_rng(seed)
        space = "log" if method == "huber" else "lin"
        EN_true = limit.predict(Ns)  # step-2 curve: the model the replicates are drawn from
        EN_b = np.empty((n_boot, len(per)))
        for j, f in enumerate(per):
            k, x0 = np.array(f.x), math.exp(np.log(f.x).mean())
            mu = f.A / k ** f.alpha + EN_true[j]
            noise = rng.standard_normal((n_boot, len(k))) * sigma + rng.standard_normal((n_boot, 1)) * shared_sigma
            Y = np.maximum(mu + noise, 1e-6)
            th0 = _to_theta(f.A, f.alpha, EN_true[j], x0)
            tb, _ = _lm(np.tile(th0, (n_boot, 1)), np.log(k / x0)[None], Y, space)
            EN_b[:, j] = np.exp(tb[:, 2])
        x0 = math.exp(np.log(Ns).mean())
        tb, _ = _lm(np.tile(_to_theta(limit.A, limit.alpha, limit.E, x0), (n_boot, 1)),
                    np.log(Ns / x0)[None], EN_b, space)
        Eb = np.exp(tb[:, 2])
        q = [(1 - level) / 2, (1 + level) / 2]
        ci = tuple(np.quantile(Eb, q))
        EN_ci = [tuple(np.quantile(EN_b[:, j], q)) for j in range(len(per))]
        spread = EN.max() - EN.min()
        if ci[1] - ci[0] > max(spread, 1e-12) or ci[0] <= 0:
            notes.append(f"joint E is not identified: its {level:.0%} interval [{ci[0]:.4g}, {ci[1]:.4g}] is wider "
                         f"than the spread of the E_N ({spread:.3g}) or reaches 0")
    identified = limit.identified and all(f.identified for f in per) and not any("joint E" in s for s in notes)
    return JointFit(list(map(float, Ns)), list(map(float, EN)), [list(map(float, c)) for c in EN_ci], per, limit,
                    float(E), tuple(map(float, ci)), identified, "; ".join(notes) or None)

# -----------------------------------------------------------------------------
# data efficiency

@dataclass
class Efficiency:
    value: float        # D_base(loss) / D_base(baseline_loss); math.inf when loss <= E of the baseline law
    D_loss: float       # data the baseline law needs to reach `loss` (units of the law's x)
    D_baseline: float   # data it needs to reach `baseline_loss`
    warning: str = None

    def __float__(self):
        return float(self.value)


def data_efficiency(baseline_law, loss, baseline_loss):
    """How many times more data the baseline recipe needs to reach `loss` than to reach its own
    measured `baseline_loss` (paper: D_std(L*) / D_std(L_std(D)); 3.43 -> 2.29x, 3.17 -> 5.17x at
    200M). baseline_law: a PowerLawFit, (A, alpha, E) or a dict. Returns an Efficiency; its value is
    math.inf, with a warning, when loss <= E (the baseline never gets there with any amount of data;
    the authors' code returns NaN)."""
    if isinstance(baseline_law, dict):
        A, alpha, E = baseline_law["A"], baseline_law["alpha"], baseline_law["E"]
    elif isinstance(baseline_law, PowerLawFit):
        A, alpha, E = baseline_law.A, baseline_law.alpha, baseline_law.E
    else:
        A, alpha, E = baseline_law
    if baseline_loss <= E:
        raise ValueError(f"baseline_loss {baseline_loss} is at or below the baseline law's asymptote {E}: "
                         "the law does not describe the baseline; refit it")
    D_of = lambda L: (A / (L - E)) ** (1.0 / alpha)
    Db = D_of(baseline_loss)
    if loss <= E:
        return Efficiency(math.inf, math.inf, Db, f"loss {loss:.4g} is at or below the baseline law's asymptote "
                          f"E={E:.4g}: no amount of baseline data reaches it (infinite efficiency)")
    return Efficiency(D_of(loss) / Db, D_of(loss), Db)

# -----------------------------------------------------------------------------
# Chinchilla's additive law L(N, D) = E + A/N^alpha + B/D^beta (approach 3)

@dataclass
class ChinchillaFit:
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    objective: float    # summed Huber(delta) of log residuals, unscaled, as Hoffmann et al. report it
    n_starts: int
    seconds: float

    def predict(self, N, D):
        return self.E + self.A / np.asarray(N, float) ** self.alpha + self.B / np.asarray(D, float) ** self.beta


def fit_chinchilla(N, D, L, delta=DELTA, keep=32, n_polish=3):
    """Hoffmann et al.'s grid of 4,500 starts (a, b in {0, 5, ..., 25}, e in {-1, -.5, ..., 1},
    alpha, beta in {0, .5, ..., 2}, raw units), all run at once by the batched solver for 30 steps;
    the `keep` best continue to convergence and L-BFGS-B polishes the best `n_polish`."""
    t0 = time.time()
    N, D, L = (np.asarray(v, float) for v in (N, D, L))
    n0, d0 = math.exp(np.log(N).mean()), math.exp(np.log(D).mean())
    logx = np.stack([np.log(N / n0), np.log(D / d0)])
    g = np.array(np.meshgrid(np.arange(0, 30, 5.0), np.arange(0, 30, 5.0), np.arange(-1, 1.5, 0.5),
                             np.arange(0, 2.5, 0.5), np.arange(0, 2.5, 0.5), indexing="ij")).reshape(5, -1).T
    a, b, e, al, be = g.T
    th = np.stack([a - al * math.log(n0), al, b - be * math.log(d0), be, e], 1)  # grid in normalised units
    th, f = _lm(th, logx, L, "log", delta=delta, iters=30)
    best = np.argsort(f)[:keep]
    th, f = _lm(th[best], logx, L, "log", delta=delta)
    res = []
    for i in np.argsort(f)[:n_polish]:
        t, fv = _polish(th[i], logx, L, delta)
        res.append((fv, t) if fv <= f[i] else (f[i], th[i]))
    fv, t = min(res, key=lambda r: r[0])
    a, al, b, be, e = t
    return ChinchillaFit(float(np.exp(e)), float(np.exp(a + al * math.log(n0))), float(np.exp(b + be * math.log(d0))),
                         float(al), float(be), float(fv * delta), len(g), time.time() - t0)


if __name__ == "__main__":          # the report's command line lives in report.py (it imports this file)
    import sys
    import report
    sys.exit(report.main(prog="fit.py"))
