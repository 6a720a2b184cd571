"""The on-disk dataset format, and the few names every data module shares (no imports from the
rest of data/, so shards.py, synthetic.py, tokenizer.py and dataset.py all build on it without
import circles).

A dataset is a folder with meta.json (what the tokens mean: tokenizer, vocab_size, eot_token,
dtype, counts, provenance) and its tokens, in one of two layouts:

    train.bin, val.bin          raw tokens, no header (python -m data.prepare on a small corpus)
    train_*.bin, val_*.bin      llm.c shards, meta["train_shards"] / ["val_shards"] lists them
                                in order (the streaming prepare of a large corpus; shards.py)

Everything that can go wrong with user input raises `DataError`, a one-line message that names
the problem and the fix; the command-line tools print it and exit with status 2.
"""

import argparse
import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_ROOT = os.path.join(REPO, "data")


def file_sha256(path):
    """The SHA-256 of a file, read in 1 MiB blocks (a corpus or checkpoint need not fit in memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def meta_fingerprint(meta):
    """A dataset's identity in one short hash: every field of its meta.json (the source's SHA-256, the
    tokenizer, the split and the token counts), so two preparations of the same text the same way
    agree and a re-prepared or replaced corpus differs. A summary.json records it as data_fingerprint."""
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]


def shared_dir():
    """The shared folder with corpora and the tokenizer cache (never committed)."""
    return os.environ.get("ICGPT_SHARED", os.path.join(REPO, "..", "shared"))


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (no usage dump) and exit code 2: the parser of
    every command-line tool in the project (train.py re-exports it). `ranges` maps a flag's dest to
    its allowed range (see range_error); every numeric flag is checked right after parsing."""
    def __init__(self, *args, ranges=None, **kw):
        super().__init__(*args, **kw)
        self.ranges = dict(ranges or {})

    def parse_known_args(self, args=None, namespace=None):
        ns, rest = super().parse_known_args(args, namespace)
        msg = range_error(vars(ns), self.ranges)
        if msg:
            self.error(msg)
        return ns, rest

    def error(self, message):
        self.exit(2, f"error: {message}; see {self.prog} -h\n")


def in_range(value, spec):
    """Whether a number lies in `spec`: '> a', '>= a', or an interval '[a, b)', '(a, b]', '[a, b]',
    '(a, b)'. Written so that NaN is never in range (every comparison with NaN is False)."""
    spec = spec.strip()
    if spec.startswith(">="):
        return value >= float(spec[2:])
    if spec.startswith(">"):
        return value > float(spec[1:])
    lo, hi = (float(x) for x in spec[1:-1].split(","))
    return ((value >= lo) if spec[0] == "[" else (value > lo)) and ((value <= hi) if spec[-1] == "]" else (value < hi))


def range_error(values, ranges):
    """The one-line complaint about the first value outside its range (values: name -> number; None
    means 'not given' and passes), or None. Floats must also be finite: inf epochs would never end."""
    for name, spec in ranges.items():
        v = values.get(name)
        if v is None or isinstance(v, (bool, str)):   # not given, a switch, or a word like "auto"
            continue
        finite = math.isfinite(v) if isinstance(v, float) else True
        if not (finite and in_range(v, spec)):
            where = spec if spec.startswith(">") else f"in {spec}"
            return f"--{name} must be {'a finite number ' if isinstance(v, float) else ''}{where} (got {v})"
    return None


class DataError(ValueError):
    """A one-line, user-facing message: what is wrong and how to fix it."""


REQUIRED_META = ("name", "tokenizer", "vocab_size", "eot_token", "dtype",
                 "train_tokens", "val_tokens", "source_sha256")


@dataclass
class Dataset:
    train: np.ndarray  # 1-D read-only token ids (memmap where possible)
    val: np.ndarray
    meta: dict
    path: str

    def __repr__(self):  # the default would print the arrays
        return (f"Dataset({self.meta['name']!r}, {len(self.train):,} train + {len(self.val):,} val "
                f"tokens, vocab {self.meta['vocab_size']}, {self.path})")


def token_dtype(vocab_size):
    """uint16 holds ids 0..65535, so it fits any vocabulary of at most 65,536 tokens."""
    return "uint16" if vocab_size <= 2**16 else "uint32"


# ----------------------------------------------------------------------------------------------
# writing: always into a temporary folder next to the target, then one rename, so a crash or an
# error never leaves a half-written dataset where a loader would find it.

def write_dataset(out, train, val, meta, force=False):
    """Write train/val tokens and meta.json to folder `out` atomically; returns `out`.

    meta must have the REQUIRED_META keys except the counts and dtype, which are filled in here.
    If `out` already holds a dataset with the same meta, nothing is written; a different one is
    replaced only with force=True.
    """
    out = os.path.abspath(out)
    meta = dict(meta)
    meta["dtype"] = token_dtype(meta["vocab_size"])
    meta["train_tokens"], meta["val_tokens"] = int(len(train)), int(len(val))
    missing = [key for key in REQUIRED_META if key not in meta]
    assert not missing, f"meta lacks {missing}"
    for split, tokens in (("train", train), ("val", val)):
        if len(tokens) and (int(np.min(tokens)) < 0 or int(np.max(tokens)) >= meta["vocab_size"]):
            raise DataError(f"{split} tokens fall outside 0..{meta['vocab_size'] - 1}; "
                            f"the tokenizer and vocab_size disagree")
    if os.path.exists(out):
        old = read_meta(out)
        if old == meta:
            return out  # already there, identical: a second run is a no-op
        if not force:
            raise DataError(f"{out} already exists and holds a different dataset; "
                            f"delete it or pass --force to replace it")
        if old is None and os.listdir(out):  # --force replaces datasets, not any folder
            raise DataError(f"{out} exists and is not a dataset folder (no meta.json); "
                            f"refusing to replace it: choose another --out")

    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.tmp-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the dataset should not be
    try:
        np.asarray(train).astype(meta["dtype"]).tofile(os.path.join(tmp, "train.bin"))
        np.asarray(val).astype(meta["dtype"]).tofile(os.path.join(tmp, "val.bin"))
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump(meta, f, indent=2)
            f.write("\n")
        _swap_into_place(tmp, out, meta, force)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful rename
    return out


def _swap_into_place(tmp, out, meta, force):
    if force and os.path.exists(out):  # move the old one aside first, delete it only at the end
        old = tmp + ".old"
        os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old)
        return
    try:
        os.rename(tmp, out)
    except OSError:
        # Another process (say another DDP rank) finished the same dataset first. Fine if it
        # is identical; the caller's tmp folder is removed either way.
        if read_meta(out) != meta:
            raise


def read_meta(path):
    """meta.json of folder path, or None where there is none (or it is unreadable)."""
    try:
        with open(os.path.join(path, "meta.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def memmap(file, dtype, n_tokens, offset=0):
    dtype = np.dtype(dtype)
    if not os.path.exists(file):
        raise DataError(f"{file} is missing; recreate the dataset")
    expected = offset + n_tokens * dtype.itemsize
    if os.path.getsize(file) != expected:
        raise DataError(f"{file} has {os.path.getsize(file)} bytes but its header/meta says "
                        f"{n_tokens} tokens of {dtype.name} ({expected} bytes); the file is "
                        f"damaged or truncated: recreate it")
    if n_tokens == 0:  # numpy cannot map an empty file
        empty = np.zeros(0, dtype)
        empty.flags.writeable = False
        return empty
    return np.memmap(file, dtype=dtype, mode="r", offset=offset, shape=(n_tokens,))


def check_token_ids(tokens, vocab_size, file):
    """Token ids >= the vocabulary would fail deep inside the embedding (an IndexError, or garbage on a
    GPU); one pass of max() over the memmap when a file is opened names the file instead."""
    if len(tokens) and int(tokens.max()) >= vocab_size:
        raise DataError(f"{file} holds token id {int(tokens.max())}, outside the vocabulary of {vocab_size}; "
                        f"the file does not belong to this tokenizer: recreate it")
