"""The embedded default dataset: a random sparse order-k Markov source with known limits.

Why synthetic: on real text nobody knows the lowest achievable loss. Here we do, twice over:

  entropy      the source's own -log p(next | previous k tokens). No predictor does better on
               average; its long-run mean is the entropy rate H = sum_c pi(c) H(p_c).
  bayes(D)     the loss of the Bayes-optimal predictor given the first D training tokens (the
               best any learner can do from that data, on average over sources from the prior).
               bayes(D) - H > 0 is the price of finite data; the paper's question -- how close
               can unlimited compute get with fixed data -- becomes "how close to bayes(D)".

The source. Vocabulary V, order k, support size s, Dirichlet concentration alpha. For each
context c (the previous k tokens; V^k of them) draw a support S_c of s distinct symbols uniformly
from V, then p_c ~ Dirichlet(alpha * 1_s) on S_c. The context chain (c -> last k-1 tokens of c
followed by x) must have exactly one recurrent class (one sink among its strongly connected
components); otherwise we redraw with the next seed. Transient contexts are fine: the stream
starts from a context drawn from the stationary distribution pi, so it is stationary from token 0.

The Bayes predictor. With n_c(x) the train counts of x after c, n_c = sum_x n_c(x) and m_c the
number of distinct symbols seen after c:
    Q(x|c) = (n_c(x) + alpha) / (n_c + s alpha)                          if n_c(x) > 0
    Q(x|c) = (s - m_c) / (V - m_c) * alpha / (n_c + s alpha)             otherwise
(a seen symbol is surely in S_c; the (s - m_c) unseen members of S_c share the remaining
Dirichlet mass and, by symmetry, are equally likely to be any of the V - m_c unseen symbols).

Window edges. A model sees windows of T+1 tokens and predicts token t from tokens 0..t-1 of its
window, so the first k-1 targets have fewer than k tokens of context. We LEAVE THOSE OUT of the
model's val loss and of both limits alike: meta["eval_skip"] = k - 1.

The dataset's vocabulary is V + 1: token V is the end-of-document token every tokenizer has. The
Markov stream never emits it, but it exists so that sampling from an empty context is defined.

    python -m data.synthetic                      # (re)make data/synthetic with the defaults
    python -m data.synthetic --V 64 --out data/synthetic_small
"""

import argparse
import hashlib
import json
import os
import sys
import time
from bisect import bisect_right
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from .format import DATA_ROOT, Dataset, DataError, OneLineParser, range_error, write_dataset

# Defaults. An order-1 source over V = 1,024 symbols, s = 32 successors per symbol: 1,024 x 31 =
# ~32K free probabilities to learn from D tokens, so at the trainer's D = 250K (~244 observations
# per context) the data, not compute, limits the loss. Measured (H = 2.501 nats): bayes(D) - H =
# 0.115, 0.054, 0.025, 0.012 nats at D = 250K, 500K, 1M, 2M. Why k = 1: with k = 2 (a random
# trigram table) every lower-order marginal is nearly uniform, so a small transformer sees no
# gradient signal until it has memorized pairs and its loss sits at log V for hundreds of steps;
# with k = 1 each context is learned as soon as it is seen, and capacity (the rank of the
# embedding -> logits map) limits small models, which is what gives a clean curve in N.
# alpha = 0.3 makes each p_c peaked rather than flat. 128K val tokens measure a loss to ~0.003.
# shift > 0 makes a related source for continued pre-training (sweep.py's cpt preset): the source of
# `seed` with that fraction of its contexts' next-symbol distributions redrawn (support and
# probabilities, from the same prior) with shift_seed. The rest is the base source's, so what a model
# learned there partly transfers; the limits below stay exact for the shifted source (bayes(D) is a
# learner's that starts from the prior, which a model pretrained on the base can beat).
DEFAULT = dict(V=1024, k=1, s=32, alpha=0.3, n_train=2_097_152, n_val=131_072, seed=1234, shift=0.0, shift_seed=0)
# the ranges draw_source and build accept (the command line refuses anything else in one line)
RANGES = dict(V=">= 2", k=">= 1", s=">= 1", alpha="> 0", n_train=">= 2", n_val=">= 2", seed=">= 0",
              shift="[0, 1]", shift_seed=">= 0")
REPORT_D = (250_000, 500_000, 1_000_000, 2_000_000)  # limits stored in meta for convenience
MAX_CONTEXTS = 2**20


@dataclass
class Source:
    V: int
    k: int
    s: int
    alpha: float
    seed: int
    support: np.ndarray  # (V^k, s) int64: S_c, the symbols that can follow context c
    probs: np.ndarray    # (V^k, s) float64: p_c on S_c, rows sum to 1
    shift: float = 0.0   # the fraction of contexts redrawn from the source of `seed` (0: none)
    shift_seed: int = 0

    def next_context(self, ctx, x):
        """Drop the oldest token of context ctx (base-V digits), append x."""
        return (ctx % self.V ** (self.k - 1)) * self.V + x


def draw_source(V, k, s, alpha, seed, shift=0.0, shift_seed=0):
    if range_error(dict(V=V, k=k, s=s, alpha=alpha, seed=seed, shift=shift, shift_seed=shift_seed), RANGES) \
            or not (s <= V and V ** k <= MAX_CONTEXTS):
        raise DataError(f"bad synthetic parameters V={V} k={k} s={s} alpha={alpha} shift={shift}: need "
                        f"1 <= s <= V, k >= 1, alpha > 0, 0 <= shift <= 1 and V^k <= {MAX_CONTEXTS}")
    rng = np.random.default_rng([seed, 0])
    n_ctx = V ** k
    # s distinct symbols per context, uniformly: the first s of a random permutation of V
    support = np.argsort(rng.random((n_ctx, V)), axis=1)[:, :s].astype(np.int64)
    probs = rng.dirichlet(np.full(s, alpha), size=n_ctx)
    if shift > 0:   # redraw round(shift * V^k) contexts, chosen uniformly, from the same prior
        rng = np.random.default_rng([seed, 2, shift_seed])
        redo = rng.choice(n_ctx, size=round(shift * n_ctx), replace=False)
        support[redo] = np.argsort(rng.random((len(redo), V)), axis=1)[:, :s]
        probs[redo] = rng.dirichlet(np.full(s, alpha), size=len(redo))
    return Source(V, k, s, alpha, seed, support, probs, shift, shift_seed)


def transition_matrix(src):
    """The sparse context-to-context transition matrix P[c, c'] (only edges with p > 0)."""
    n_ctx = src.V ** src.k
    rows = np.repeat(np.arange(n_ctx), src.s)
    cols = src.next_context(rows, src.support.ravel())
    keep = src.probs.ravel() > 0
    return sp.csr_matrix((src.probs.ravel()[keep], (rows[keep], cols[keep])), shape=(n_ctx, n_ctx))


def recurrent_class(P):
    """Boolean mask of the one recurrent class of the chain P, or None if it has several.

    The recurrent classes of a finite chain are the sink components of its graph of strongly
    connected components (no edge leaves them). Exactly one sink = one recurrent class, so the
    stationary distribution is unique and the stream's statistics do not depend on its start.
    """
    n_comp, label = connected_components(P, directed=True, connection="strong")
    src, dst = P.nonzero()
    leaves = np.zeros(n_comp, dtype=bool)
    leaves[label[src][label[src] != label[dst]]] = True  # components with an outgoing edge
    sinks = np.flatnonzero(~leaves)
    return (label == sinks[0]) if len(sinks) == 1 else None


def stationary(P, recurrent, tol=1e-13, max_iter=100_000):
    """pi = pi P by power iteration on the lazy chain (I + P)/2: same pi, and it converges even
    if the chain is periodic. Starting on the recurrent class keeps transient contexts at 0."""
    pi = recurrent / recurrent.sum()
    PT = P.T.tocsr()
    for _ in range(max_iter):
        new = 0.5 * (pi + PT @ pi)
        if np.abs(new - pi).sum() < tol:
            return new / new.sum()
        pi = new
    raise DataError("the synthetic chain mixes too slowly to find its stationary distribution; "
                    "use a larger s or a smaller V^k")


def entropy_rate(src, pi):
    """H = sum_c pi(c) H(p_c), in nats per token."""
    p = src.probs
    h = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=1)
    return float(pi @ h)


def make_source(V, k, s, alpha, seed, max_tries=100, shift=0.0, shift_seed=0):
    """Draw sources with seeds seed, seed+1, ... until one is ergodic; returns (src, pi). A shifted
    source starts from the base source of `seed` as it was drawn (the same retries) and retries
    shift_seed, shift_seed+1, ... instead."""
    if shift > 0:
        base = make_source(V, k, s, alpha, seed, max_tries)[0].seed
    for t in range(max_tries):
        src = draw_source(V, k, s, alpha, base, shift, shift_seed + t) if shift > 0 else \
            draw_source(V, k, s, alpha, seed + t)
        P = transition_matrix(src)
        recurrent = recurrent_class(P)
        if recurrent is not None:
            return src, stationary(P, recurrent)
    raise DataError(f"no ergodic source in {max_tries} draws with V={V} k={k} s={s}; "
                    f"use a larger s")


def source_from_meta(meta):
    """Rebuild the exact source of a synthetic dataset (a pure function of its parameters)."""
    p = meta["synthetic"]
    return draw_source(p["V"], p["k"], p["s"], p["alpha"], p["seed_used"], p.get("shift", 0.0),
                       p.get("shift_seed_used", 0))


# ----------------------------------------------------------------------------------------------
# sampling

def sample(src, pi, n, seed, stream=1):
    """n tokens of the chain, started from a context drawn from pi (so stationary throughout).

    A plain Python loop over per-context cumulative distributions: each step is one bisect and
    a few integer operations (~1 us/token), and nothing vectorizes a Markov chain's dependence
    of each step on the last.
    """
    rng = np.random.default_rng([seed, stream])  # its own stream, apart from the source's [seed, 0]
    V, k = src.V, src.k
    ctx = int(rng.choice(len(pi), p=pi))
    first = [(ctx // V ** (k - 1 - i)) % V for i in range(k)]  # the context's k tokens
    cdf = np.cumsum(src.probs, axis=1)
    cdf[:, -1] = 1.0  # guard against rounding: u < 1 always lands inside the row
    cdf, support = cdf.tolist(), src.support.tolist()  # Python lists index ~10x faster
    u = rng.random(max(n - k, 0)).tolist()
    mod = V ** (k - 1)
    out = first[:n]
    for ui in u:
        x = support[ctx][bisect_right(cdf[ctx], ui)]
        out.append(x)
        ctx = (ctx % mod) * V + x
    return np.array(out, dtype=np.int64)


# ----------------------------------------------------------------------------------------------
# the two limits

def contexts_and_targets(tokens, V, k):
    """For rows of tokens (1-D or 2-D), the context index and target of every position >= k."""
    tokens = np.atleast_2d(np.asarray(tokens, dtype=np.int64))
    T1 = tokens.shape[1]
    ctx = np.zeros((tokens.shape[0], max(T1 - k, 0)), dtype=np.int64)
    for i in range(k):
        ctx = ctx * V + tokens[:, i:T1 - k + i]
    return ctx.ravel(), tokens[:, k:].ravel()


def true_prob(src, ctx, x):
    """p_true(x | ctx), vectorized."""
    return np.sum(src.probs[ctx] * (src.support[ctx] == x[:, None]), axis=1)


class BayesPredictor:
    """Q(x | c) from the counts of a training token stream (formula in the module docstring)."""

    def __init__(self, train, V, k, s, alpha):
        self.V, self.s, self.alpha = V, s, alpha
        ctx, x = contexts_and_targets(train, V, k)
        self.pairs, self.pair_counts = np.unique(ctx * V + x, return_counts=True)
        self.n_c = np.bincount(ctx, minlength=V ** k)
        self.m_c = np.bincount(self.pairs // V, minlength=V ** k)

    def prob(self, ctx, x):
        ctx, x = np.asarray(ctx, dtype=np.int64), np.asarray(x, dtype=np.int64)
        pair = ctx * self.V + x
        i = np.minimum(np.searchsorted(self.pairs, pair), len(self.pairs) - 1)
        n_cx = np.where(self.pairs[i] == pair, self.pair_counts[i], 0) if len(self.pairs) else 0
        n_c, m_c, a = self.n_c[ctx], self.m_c[ctx], self.alpha
        seen = (n_cx + a) / (n_c + self.s * a)
        unseen = (self.s - m_c) / (self.V - m_c) * a / (n_c + self.s * a)
        return np.where(n_cx > 0, seen, unseen)


def limits(dataset, train_tokens, windows):
    """The entropy and Bayes limits on exactly the targets the model is scored on.

    windows: int array (n, T+1) of val windows; the model predicts windows[:, 1:] from
    windows[:, :-1] and skips the first eval_skip = k-1 targets of each window, as do we.
    Returns mean nats/token: entropy (-log p_true), bayes (-log Q from train[:train_tokens]),
    the closed-form entropy_rate, and the number of positions averaged over.
    """
    meta = dataset.meta
    if "synthetic" not in meta:
        raise DataError(f"{meta['name']} is not a synthetic dataset: its limits are unknown")
    if train_tokens > len(dataset.train):
        raise DataError(f"--train_tokens {train_tokens} exceeds the {len(dataset.train)} train "
                        f"tokens in {meta['name']}; use at most {len(dataset.train)}")
    src = source_from_meta(meta)
    windows = np.asarray(windows, dtype=np.int64)
    if windows.max() >= src.V:
        raise DataError("val windows contain the eot token, which the Markov source never emits")
    ctx, x = contexts_and_targets(windows, src.V, src.k)  # = targets windows[:, 1 + (k-1):]
    bayes = BayesPredictor(dataset.train[:train_tokens], src.V, src.k, src.s, src.alpha)
    return {"entropy": float(-np.mean(np.log(true_prob(src, ctx, x)))),
            "bayes": float(-np.mean(np.log(bayes.prob(ctx, x)))),
            "entropy_rate": meta["synthetic"]["entropy_rate"],
            "positions": int(len(x))}


# ----------------------------------------------------------------------------------------------
# the dataset

def build(V, k, s, alpha, n_train, n_val, seed, shift=0.0, shift_seed=0):
    """Tokens and meta of a synthetic dataset: one chain, val = its last n_val tokens."""
    src, pi = make_source(V, k, s, alpha, seed, shift=shift, shift_seed=shift_seed)
    # a shifted source's stream is sampled apart from its base's (which uses stream 1)
    stream = sample(src, pi, n_train + n_val, src.seed, stream=1 if not shift else 3 + src.shift_seed)
    params = dict(V=V, k=k, s=s, alpha=alpha, n_train=n_train, n_val=n_val, seed=seed)
    if shift > 0:   # (unshifted sources keep the fingerprint they always had)
        params.update(shift=shift, shift_seed=shift_seed)
    meta = {
        "name": "synthetic", "tokenizer": "synthetic", "vocab_size": V + 1, "eot_token": V,
        # the source is a pure function of its parameters, so they are what we fingerprint
        "source_sha256": hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest(),
        "eval_skip": k - 1,
        "synthetic": {
            **params, "seed_used": src.seed, **({"shift_seed_used": src.shift_seed} if shift > 0 else {}),
            "entropy_rate": entropy_rate(src, pi),
            "recurrent_contexts": int(np.count_nonzero(pi > 0)),
            "note": (f"token {V} is the end-of-document token: never in the stream, there so "
                     f"sampling from an empty context is defined. Limits leave out the first "
                     f"eval_skip = k-1 targets of each window."),
        },
    }
    return stream[:n_train], stream[n_train:], meta


def report_limits(train, val, meta):
    """entropy and bayes(D) over the whole val stream (all positions with k tokens before)."""
    ds = Dataset(train, val, meta, "")
    return {str(D): {key: round(v, 5) for key, v in limits(ds, D, val[None, :]).items()
                     if key in ("entropy", "bayes")}
            for D in REPORT_D if D <= len(train)}


def generate(out, force=False, **params):
    """Build and atomically write a synthetic dataset (DEFAULT parameters unless overridden)."""
    params = {**DEFAULT, **params}
    train, val, meta = build(**params)
    meta["name"] = os.path.basename(os.path.normpath(out))
    meta["synthetic"]["limits_on_val"] = report_limits(train, val, meta)
    return write_dataset(out, train, val, meta, force=force)


def main(argv=None):
    ap = OneLineParser(description="Generate a synthetic Markov dataset.", ranges=RANGES)
    ap.add_argument("--out", default=os.path.join(DATA_ROOT, "synthetic"))
    for key, value in DEFAULT.items():
        ap.add_argument(f"--{key}", type=type(value), default=value)
    ap.add_argument("--force", action="store_true", help="replace a different existing dataset")
    args = vars(ap.parse_args(argv))
    out, force = args.pop("out"), args.pop("force")
    try:
        t0 = time.time()
        path = generate(out, force=force, **args)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    with open(os.path.join(path, "meta.json")) as f:
        syn = json.load(f)["synthetic"]
    print(f"wrote {path} in {time.time() - t0:.1f}s; entropy rate H = {syn['entropy_rate']:.4f}")
    for D, lim in syn["limits_on_val"].items():
        print(f"  D = {int(D):>9,}: bayes {lim['bayes']:.4f}  entropy {lim['entropy']:.4f}  "
              f"bayes - H = {lim['bayes'] - syn['entropy_rate']:.4f}")


if __name__ == "__main__":
    main()
