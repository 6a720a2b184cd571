"""Turn text into a token dataset (train.bin, val.bin, meta.json; see dataset.py).

    python -m data.prepare shakespeare --tokenizer byte        # -> data/shakespeare_byte
    python -m data.prepare shakespeare --tokenizer r50k_base   # -> data/shakespeare_gpt2
    python -m data.prepare DIR_OF_TXT --tokenizer byte --out data/NAME [--val_fraction 0.1]
    python -m data.prepare FILE.txt --tokenizer byte --out data/NAME
    python -m data.prepare CORPUS --tokenizer path/to/tokenizer.model --out data/dclm_llama3 \
        --max_tokens 2000000000      # a folder of JSONL (.gz/.zst): streamed into shards

Tokenizers: byte, a tiktoken name (r50k_base), or a tiktoken-format BPE file such as Llama 3's
tokenizer.model with --pattern llama3 (the default) or gpt2 (tokenizer.py).

Large corpora. JSONL input, or any input with --shard_tokens / --max_tokens / --val_tokens, is
streamed into llm.c shards in bounded memory, resumably: see stream.py. What follows is the
in-memory path for small text corpora, which writes train.bin and val.bin.

Documents. Each document is followed by the tokenizer's end-of-document token, and the
train/val split is by whole documents, so no document is ever cut in two and val text never
leaks into train. What a document is depends on the input:

  shakespeare  the 42 works of $ICGPT_SHARED/data/shakespeare/shakespeare.txt (or --source),
               found by their "by William Shakespeare" line. Val is five whole plays chosen to
               represent the corpus -- two comedies, two tragedies, a history, ~11% of the
               tokens -- and never the sonnets or poems, whose style differs (--val_docs to
               choose others).
  a folder     each .txt file, in name order; val = random files (--seed) until they hold at
               least --val_fraction of the tokens, or the files named by --val_docs.
  a file       one document with no structure to split on, so we cut it once, at the paragraph
               break (a blank line; failing that, a line break) nearest to 1 - val_fraction of
               its characters: the head is the train document, the tail the val document.
"""

import argparse
import hashlib
import os
import re
import sys

import numpy as np

from . import stream
from .format import DATA_ROOT, DataError, OneLineParser, file_sha256, range_error, shared_dir, write_dataset
from .tokenizer import DEFAULT_PATTERN, PATTERNS, get_tokenizer

# The works by genre (Folio categories; Troilus, a "problem play", counted with the tragedies).
GENRES = {
    "comedy": ["alls_well_that_ends_well", "as_you_like_it", "comedy_of_errors",
               "loves_labours_lost", "measure_for_measure", "merchant_of_venice",
               "merry_wives_of_windsor", "midsummer_nights_dream", "much_ado_about_nothing",
               "taming_of_the_shrew", "twelfth_night", "two_gentlemen_of_verona"],
    "tragedy": ["antony_and_cleopatra", "coriolanus", "hamlet", "julius_caesar", "lear",
                "macbeth", "othello", "romeo_and_juliet", "timon_of_athens",
                "tragedy_of_titus_andronicus", "troilus_and_cressida"],
    "history": ["henry_iv_part_1", "henry_iv_part_2", "henry_v", "henry_vi_part_1",
                "henry_vi_part_2", "henry_vi_part_3", "henry_viii", "john", "richard_ii",
                "richard_iii"],
    "romance": ["cymbeline", "pericles", "tempest", "winters_tale"],
    "poem": ["lovers_complaint", "passionate_pilgrim", "phoenix_and_the_turtle",
             "rape_of_lucrece", "sonnets"],
}
SHAKESPEARE_VAL = ["julius_caesar", "macbeth", "midsummer_nights_dream", "richard_ii",
                   "twelfth_night"]


def read_text(path):
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8"), raw
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text (byte {e.start}); convert it first, e.g. "
                        f"iconv -f latin1 -t utf-8")


# ----------------------------------------------------------------------------------------------
# documents: a list of (name, text)

def shakespeare_works(text, slugs=None):
    """Split the concatenated works at their title lines (the line before "by William ...")."""
    lines = text.split("\n")
    line_start = np.cumsum([0] + [len(line) + 1 for line in lines])
    starts, titles = [], []
    for i, line in enumerate(lines):
        if line.strip() == "by William Shakespeare":
            j = i - 1
            while j > 0 and not lines[j].strip():
                j -= 1
            starts.append(int(line_start[j]))
            titles.append(lines[j].strip())
    if len(starts) < 2:
        raise DataError("found fewer than two 'by William Shakespeare' lines; is --source the "
                        "shakespeare.txt corpus?")
    starts[0] = 0  # anything before the first title belongs to the first work
    ends = starts[1:] + [len(text)]
    if slugs is None or len(slugs) != len(starts):
        slugs = [re.sub(r"[^a-z0-9]+", "_", t.lower()).strip("_") for t in titles]
    return [(slug, text[a:b].strip("\n") + "\n") for slug, a, b in zip(slugs, starts, ends)]


def load_shakespeare(source):
    """The works of shakespeare.txt, named by the works.txt beside it if there is one."""
    text, raw = read_text(source)
    works_txt = os.path.join(os.path.dirname(source), "works.txt")
    slugs = open(works_txt).read().split() if os.path.exists(works_txt) else None
    return shakespeare_works(text, slugs), raw


def folder_documents(path):
    files = sorted(f for f in os.listdir(path) if f.endswith(".txt"))
    if len(files) < 2:
        raise DataError(f"{path} has {len(files)} .txt files; a folder needs at least two "
                        f"documents (one for train, one for val), or pass a single file")
    docs, raws = [], []
    for f in files:
        text, raw = read_text(os.path.join(path, f))
        docs.append((os.path.splitext(f)[0], text))
        raws.append(f.encode() + b"\0" + raw)  # name and bytes: renaming a file changes the hash
    return docs, b"\0".join(raws)


def paragraph_cut(text, val_fraction):
    """The paragraph (else line) start nearest to (1 - val_fraction) of the text."""
    target = len(text) * (1 - val_fraction)
    for pattern in (r"\n\s*\n(?=\S)", r"\n(?=\S)"):  # after a blank line; after a line break
        cuts = [m.end() for m in re.finditer(pattern, text)]
        if cuts:
            return min(cuts, key=lambda c: abs(c - target))
    raise DataError("the input file has no line breaks to split it at; pass a folder of "
                    ".txt documents instead")


# ----------------------------------------------------------------------------------------------
# the split

def choose_val(names, sizes, val_fraction, seed):
    """Random documents until they hold val_fraction of the tokens; at least one stays train."""
    rng = np.random.default_rng(seed)
    chosen, total, held = [], sum(sizes), 0
    for i in rng.permutation(len(names))[:-1]:
        if held >= val_fraction * total:
            break
        chosen.append(names[i])
        held += sizes[i]
    return chosen


def join(token_docs, eot):
    """Each document followed by eot, so every document boundary is marked."""
    parts = []
    for doc in token_docs:
        parts += [doc, np.array([eot], dtype=doc.dtype)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint32)


def tokenizer_meta(tok, tokenizer):
    """meta.json's tokenizer entries: the name, and for a BPE file where it is, its pattern and
    hash (so the dataset can be decoded later, and a changed file is noticed)."""
    if not hasattr(tok, "file"):
        return {"tokenizer": "byte" if tokenizer == "byte" else tok.name}
    return {"tokenizer": tok.name, "tokenizer_file": tok.file, "tokenizer_pattern": tok.pattern,
            "tokenizer_sha256": file_sha256(tok.file)}


def default_out(input, tokenizer):
    tok_name = {"r50k_base": "gpt2"}.get(tokenizer, tokenizer)
    stem = "shakespeare" if input == "shakespeare" else \
        os.path.splitext(os.path.basename(os.path.normpath(input)))[0]
    return os.path.join(DATA_ROOT, f"{stem}_{tok_name}")


def prepare(input, tokenizer="byte", out=None, val_fraction=0.1, val_docs=None, seed=0,
            source=None, force=False, pattern=None, shard_tokens=None, max_tokens=None,
            val_tokens=None, extra_meta=None):
    """Tokenize input into a dataset folder; returns its path. See the module docstring.
    extra_meta: more meta.json entries (fetch.py records where a downloaded corpus came from)."""
    bad = range_error(dict(val_fraction=val_fraction, seed=seed), RANGES)
    if bad:
        raise DataError(bad)
    tok = get_tokenizer("r50k_base" if tokenizer == "gpt2" else tokenizer, pattern)
    out = out or default_out(input, tok.name if hasattr(tok, "file") else tokenizer)
    if stream.is_streaming_input(input) or (shard_tokens, max_tokens, val_tokens) != (None,) * 3:
        if input == "shakespeare" or val_docs:
            raise DataError("--val_docs and the shakespeare corpus are for the in-memory path; "
                            "drop --shard_tokens/--max_tokens/--val_tokens")
        return stream.prepare_stream(
            input, tok, out, tokenizer_meta(tok, tokenizer),
            shard_tokens=shard_tokens or stream.SHARD_TOKENS, val_fraction=val_fraction,
            val_tokens=stream.VAL_TOKENS if val_tokens is None else val_tokens,
            max_tokens=max_tokens, seed=seed, force=force)
    extra = {}

    if input == "shakespeare":
        source = source or os.path.join(shared_dir(), "data", "shakespeare", "shakespeare.txt")
        if not os.path.exists(source):
            raise DataError(f"no Shakespeare corpus at {source}; set ICGPT_SHARED or pass "
                            f"--source PATH/shakespeare.txt")
        docs, raw = load_shakespeare(source)
        val_docs = val_docs or SHAKESPEARE_VAL
        extra["split"] = "whole works held out (default: two comedies, two tragedies, a history)"
    elif os.path.isdir(input):
        docs, raw = folder_documents(input)
        extra["split"] = "whole documents held out" + ("" if val_docs else
                                                       f" at random (seed {seed})")
    elif os.path.isfile(input):
        if val_docs:
            raise DataError("--val_docs needs documents: pass a folder of .txt files, not a file")
        text, raw = read_text(input)
        cut = paragraph_cut(text, val_fraction)
        stem = os.path.splitext(os.path.basename(input))[0]
        docs = [(f"{stem}[head]", text[:cut]), (f"{stem}[tail]", text[cut:])]
        if not text[:cut].strip() or not text[cut:].strip():
            raise DataError(f"{input} is too short to split into train and val; pass more text")
        val_docs = [docs[1][0]]
        extra["split"] = f"one document cut at the paragraph break at character {cut}"
    else:
        raise DataError(f"no input {input!r}: pass 'shakespeare', a .txt file or a folder of "
                        f".txt files")

    names = [name for name, _ in docs]
    token_docs = tok.encode_docs([text for _, text in docs])
    if val_docs is None:
        val_docs = choose_val(names, [len(t) + 1 for t in token_docs], val_fraction, seed)
    unknown = sorted(set(val_docs) - set(names))
    if unknown:
        raise DataError(f"--val_docs names unknown documents {unknown}; the documents are "
                        f"{', '.join(names[:8])}{', ...' if len(names) > 8 else ''}")
    is_val = [name in val_docs for name in names]
    if all(is_val):
        raise DataError("every document is in val; leave at least one for training")
    train = join([t for t, v in zip(token_docs, is_val) if not v], tok.eot)
    val = join([t for t, v in zip(token_docs, is_val) if v], tok.eot)

    meta = {"name": os.path.basename(os.path.normpath(out)), **tokenizer_meta(tok, tokenizer),
            "vocab_size": tok.vocab_size, "eot_token": tok.eot,
            "source": "shakespeare" if input == "shakespeare" else os.path.basename(input),
            "source_sha256": hashlib.sha256(raw).hexdigest(),
            "documents": len(docs),
            "val_fraction": round(len(val) / (len(train) + len(val)), 5),
            **extra,
            "val_documents": [n for n, v in zip(names, is_val) if v],
            "train_documents": [n for n, v in zip(names, is_val) if not v],
            **(extra_meta or {})}
    return write_dataset(out, train, val, meta, force=force)


RANGES = dict(val_fraction="(0, 1)", seed=">= 0", shard_tokens=">= 1", max_tokens=">= 1", val_tokens=">= 0")


def main(argv=None):
    ap = OneLineParser(description=__doc__.split("\n\n")[0], ranges=RANGES)
    ap.add_argument("input", help="'shakespeare', a .txt file, a folder of .txt files, or a "
                                  "folder of .jsonl(.gz/.zst) files (streamed into shards)")
    ap.add_argument("--tokenizer", default="byte", help="byte, a tiktoken encoding (r50k_base), "
                                                         "or a tiktoken-format BPE file")
    ap.add_argument("--pattern", default=None, choices=sorted(PATTERNS),
                    help=f"split pattern and special tokens of a BPE file (default "
                         f"{DEFAULT_PATTERN})")
    ap.add_argument("--out", default=None, help="dataset folder (default data/<input>_<tokenizer>)")
    ap.add_argument("--val_fraction", type=float, default=0.1,
                    help="share of tokens held out (folder: whole files; file: the tail; "
                         "shakespeare uses its fixed list of plays instead; streaming: the share "
                         "of documents, by a hash of their text, until --val_tokens)")
    ap.add_argument("--val_docs", default=None, help="comma-separated document names for val")
    ap.add_argument("--seed", type=int, default=0, help="picks the random val documents")
    ap.add_argument("--source", default=None, help="shakespeare.txt, if not under $ICGPT_SHARED")
    ap.add_argument("--force", action="store_true", help="replace a different existing dataset")
    ap.add_argument("--shard_tokens", type=float, default=None,
                    help=f"stream into llm.c shards of this many tokens (default "
                         f"{stream.SHARD_TOKENS:.0e} when streaming)")
    ap.add_argument("--max_tokens", type=float, default=None,
                    help="streaming: stop reading once train holds this many tokens")
    ap.add_argument("--val_tokens", type=float, default=None,
                    help=f"streaming: val stops growing at this many tokens (default "
                         f"{stream.VAL_TOKENS:.0e})")
    args = ap.parse_args(argv)
    val_docs = args.val_docs.split(",") if args.val_docs else None
    count = {k: None if v is None else int(v) for k, v in   # 1e8 and 100000000 both work
             (("shard_tokens", args.shard_tokens), ("max_tokens", args.max_tokens),
              ("val_tokens", args.val_tokens))}
    try:
        path = prepare(args.input, args.tokenizer, args.out, args.val_fraction, val_docs,
                       args.seed, args.source, args.force, args.pattern, **count)
        from .dataset import load_dataset
        meta = load_dataset(path).meta
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    where = (f"in {len(meta['train_shards'])}+{len(meta['val_shards'])} shards" if
             "train_shards" in meta else f"val: {', '.join(meta['val_documents'])}")
    print(f"wrote {path}: {meta['train_tokens']:,} train + {meta['val_tokens']:,} val tokens "
          f"({meta['tokenizer']}, vocab {meta['vocab_size']}); {where}")


if __name__ == "__main__":
    main()
