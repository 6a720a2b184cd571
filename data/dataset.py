"""Loading a dataset by name, and cutting its tokens into training windows.

The format (meta.json + train.bin/val.bin, or meta.json + llm.c shards) is described in
format.py. Raw files and shards are memory-mapped read-only, so a run never copies the data into
RAM and never changes it by accident; many shards read as one token stream (shards.TokenStream).
`load_dataset` also reads bare llm.c / modded-nanogpt `.bin` shards (see shards.py) and builds the
default synthetic dataset on first use (see synthetic.py).
"""

import glob
import json
import os
import sys

import numpy as np

from . import shards
# re-exported: older code imports these from data.dataset
from .format import (DATA_ROOT, REPO, REQUIRED_META, Dataset, DataError, OneLineParser,  # noqa: F401
                     check_token_ids, memmap, meta_fingerprint, range_error, read_meta, shared_dir, token_dtype,
                     write_dataset)


# ----------------------------------------------------------------------------------------------
# loading

def load_dataset(spec="synthetic", root=DATA_ROOT):
    """Open a dataset by name, folder or shard glob (see the module docstring of data/)."""
    if spec == "synthetic" and not os.path.exists(os.path.join(root, "synthetic")):
        from . import synthetic  # generated on first use, in seconds (imported late: scipy)
        print(f"data: generating the default synthetic dataset in {root}/synthetic "
              f"(first use)", file=sys.stderr)
        synthetic.generate(os.path.join(root, "synthetic"))

    path = _resolve(spec, root)
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "meta.json")):
        return _load_ours(path)
    files = shards.find_shards(path)
    if files:
        return shards.load_shards(files, name=spec)
    if os.path.isdir(path):
        raise DataError(f"{path} is not a dataset: it needs meta.json, train.bin and val.bin "
                        f"(made by python -m data.prepare) or llm.c shards named *train*.bin "
                        f"and *val*.bin")
    if os.path.isdir(path + ".partial"):
        raise DataError(f"{path} is still being prepared (or was interrupted): its shards so far "
                        f"are in {path}.partial; rerun the same prepare command to finish it")
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
    if "train_shards" in meta:  # the streaming prepare's layout: llm.c shards listed in meta
        return shards.load_sharded_dataset(path, meta)
    try:
        train = memmap(os.path.join(path, "train.bin"), meta["dtype"], int(meta["train_tokens"]))
        val = memmap(os.path.join(path, "val.bin"), meta["dtype"], int(meta["val_tokens"]))
    except DataError:
        raise
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}/meta.json has a bad dtype or token count ({e}); recreate the dataset") from None
    for file, tokens in ((os.path.join(path, "train.bin"), train), (os.path.join(path, "val.bin"), val)):
        check_token_ids(tokens, meta["vocab_size"], file)
    return Dataset(train, val, meta, os.path.abspath(path))


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
