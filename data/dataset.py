"""Token datasets on disk: the format, loading, and cutting tokens into training windows.

A dataset is a folder with three files:

    meta.json   what the tokens mean (tokenizer, vocab_size, eot_token, dtype, counts, provenance)
    train.bin   the training tokens, raw, no header, dtype from meta.json
    val.bin     the validation tokens, same layout

Raw files are memory-mapped read-only, so a run never copies the data into RAM and never
changes it by accident. `load_dataset` also reads llm.c / modded-nanogpt `.bin` shards (see
shards.py) and builds the default synthetic dataset on first use (see synthetic.py).

Everything that can go wrong with user input raises `DataError`, a one-line message that names
the problem and the fix; the command-line tools print it and exit with status 2.
"""

import argparse
import glob
import json
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_ROOT = os.path.join(REPO, "data")


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
        old = _read_meta_or_none(out)
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
        if _read_meta_or_none(out) != meta:
            raise


def _read_meta_or_none(path):
    try:
        with open(os.path.join(path, "meta.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------------------------
# loading

def load_dataset(spec="synthetic", root=DATA_ROOT):
    """Open a dataset by name, folder or shard glob (see the module docstring of data/)."""
    if spec == "synthetic" and not os.path.exists(os.path.join(root, "synthetic")):
        from . import synthetic  # generated on first use, in seconds
        print(f"data: generating the default synthetic dataset in {root}/synthetic "
              f"(first use)", file=sys.stderr)
        synthetic.generate(os.path.join(root, "synthetic"))

    path = _resolve(spec, root)
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "meta.json")):
        return _load_ours(path)
    from . import shards
    files = shards.find_shards(path)
    if files:
        return shards.load_shards(files, name=spec)
    if os.path.isdir(path):
        raise DataError(f"{path} is not a dataset: it needs meta.json, train.bin and val.bin "
                        f"(made by python -m data.prepare) or llm.c shards named *train*.bin "
                        f"and *val*.bin")
    raise DataError(f"no dataset {spec!r} (looked for {path}); {_how_to_create(spec)}")


def _resolve(spec, root):
    """A bare name means root/<name>; anything else is a path or a glob."""
    if os.sep not in spec and not glob.has_magic(spec):
        under_root = os.path.join(root, spec)
        if os.path.exists(under_root) or not os.path.isdir(spec):
            return under_root
    return spec


def _how_to_create(spec):
    recipes = {
        "shakespeare_byte": "python -m data.prepare shakespeare --tokenizer byte",
        "shakespeare_gpt2": "python -m data.prepare shakespeare --tokenizer r50k_base",
        "synthetic": "python -m data.synthetic",
    }
    name = os.path.basename(os.path.normpath(spec))
    if name in recipes:
        return f"create it with `{recipes[name]}`"
    return (f"create it with `python -m data.prepare INPUT --tokenizer byte --out data/{name}` "
            f"or pass a folder of llm.c shards")


def _load_ours(path):
    with open(os.path.join(path, "meta.json")) as f:
        try:
            meta = json.load(f)
        except ValueError as e:
            raise DataError(f"{path}/meta.json is not valid JSON ({e}); recreate the dataset") from None
    if not isinstance(meta, dict):
        raise DataError(f"{path}/meta.json holds no object; recreate the dataset")
    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise DataError(f"{path}/meta.json lacks {', '.join(missing)}; recreate the dataset")
    try:
        train = _memmap(os.path.join(path, "train.bin"), meta["dtype"], int(meta["train_tokens"]))
        val = _memmap(os.path.join(path, "val.bin"), meta["dtype"], int(meta["val_tokens"]))
    except DataError:
        raise
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}/meta.json has a bad dtype or token count ({e}); recreate the dataset") from None
    for file, tokens in ((os.path.join(path, "train.bin"), train), (os.path.join(path, "val.bin"), val)):
        check_token_ids(tokens, meta["vocab_size"], file)
    return Dataset(train, val, meta, os.path.abspath(path))


def check_token_ids(tokens, vocab_size, file):
    """Token ids >= the vocabulary would fail deep inside the embedding (an IndexError, or garbage on a
    GPU); one pass of max() over the memmap when a file is opened names the file instead."""
    if len(tokens) and int(tokens.max()) >= vocab_size:
        raise DataError(f"{file} holds token id {int(tokens.max())}, outside the vocabulary of {vocab_size}; "
                        f"the file does not belong to this tokenizer: recreate it")


def _memmap(file, dtype, n_tokens, offset=0):
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


# ----------------------------------------------------------------------------------------------
# windows: a sequence of T+1 tokens gives T (input, target) pairs. Consecutive windows share one
# token (window i = tokens[i*T : i*T + T + 1]), so every token but the first is a target once.

class Windows:
    """The first n windows of T+1 tokens of `tokens`, gathered on demand (no copy of the data)."""

    def __init__(self, tokens, n, T):
        assert n >= 0 and (n == 0 or n * T + 1 <= len(tokens))
        self.tokens, self.n, self.T = tokens, n, T
        self.offsets = np.arange(T + 1, dtype=np.int64)

    def __len__(self):
        return self.n

    def get(self, idx):
        """Windows number idx (an int array) as an int64 array of shape (len(idx), T+1)."""
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            raise IndexError(f"window index out of range 0..{self.n - 1}")
        return self.tokens[idx[:, None] * self.T + self.offsets].astype(np.int64)


class Samples:
    """A teacher corpus from distill.py: samples of T+1 tokens laid end to end. Unlike Windows,
    consecutive rows share no boundary token (each starts at its own end-of-document token)."""
    def __init__(self, tokens, T):
        self.rows = tokens[:len(tokens) // (T + 1) * (T + 1)].reshape(-1, T + 1)   # (n, T+1), no copy

    def __len__(self):
        return len(self.rows)

    def get(self, idx):
        return self.rows[np.asarray(idx, dtype=np.int64)].astype(np.int64)        # (len(idx), T+1)


def train_sequences(tokens, D, T, name="the dataset"):
    """The first D tokens as (D - 1) // T windows of T+1 tokens."""
    if D > len(tokens):
        raise DataError(f"--train_tokens {D} exceeds the {len(tokens)} train tokens in {name}; "
                        f"use at most {len(tokens)}")
    if D < T + 1:
        raise DataError(f"--train_tokens {D} is shorter than one sequence of T+1 = {T + 1} "
                        f"tokens; use at least {T + 1} or a shorter --seq_len")
    return Windows(tokens, (D - 1) // T, T)


def val_windows(tokens, T, max_tokens=None):
    """The first min(len, max_tokens) val tokens as non-overlapping windows, int64 (n, T+1)."""
    m = len(tokens) if max_tokens is None else min(len(tokens), max_tokens)
    n = (m - 1) // T
    if n < 1:
        raise DataError(f"only {m} val tokens, fewer than one sequence of {T + 1}; "
                        f"use a shorter --seq_len or a dataset with more val tokens")
    return Windows(tokens, n, T).get(np.arange(n))
