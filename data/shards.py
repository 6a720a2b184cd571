"""llm.c / modded-nanogpt token shards: read (and, for tests and conversions, write) them.

A shard is a 256 x int32 header -- magic 20240520, version 1, number of tokens -- followed by the
tokens as uint16. These shards are GPT-2 tokenized (r50k_base, vocab 50,257, end of text 50,256),
the format of the FineWeb and TinyStories files people already have on disk. Train shards are
the files whose name contains "train", val shards "val"; they are read in name order.
"""

import glob
import hashlib
import os

import numpy as np

from .dataset import Dataset, DataError, _memmap, check_token_ids

MAGIC, VERSION, HEADER_INTS = 20240520, 1, 256
HEADER_BYTES = HEADER_INTS * 4
GPT2_META = {"tokenizer": "r50k_base", "vocab_size": 50257, "eot_token": 50256, "dtype": "uint16"}


def write_shard(file, tokens):
    """Write tokens (ids < 65,536) as one llm.c shard."""
    header = np.zeros(HEADER_INTS, dtype=np.int32)
    header[:3] = MAGIC, VERSION, len(tokens)
    with open(file, "wb") as f:
        f.write(header.tobytes())
        f.write(np.asarray(tokens, dtype=np.uint16).tobytes())


def read_shard(file):
    """The tokens of one shard as a read-only memmap; DataError naming the file if it is bad."""
    size = os.path.getsize(file)
    if size < HEADER_BYTES:
        raise DataError(f"{file} is {size} bytes, shorter than the 1024-byte llm.c header; "
                        f"the shard is truncated: download or write it again")
    header = np.fromfile(file, dtype=np.int32, count=HEADER_INTS)
    if header[0] != MAGIC:
        raise DataError(f"{file} has magic {header[0]}, not {MAGIC}: not an llm.c token shard "
                        f"(move it out of the shard folder or glob)")
    if header[1] != VERSION:
        raise DataError(f"{file} is shard version {header[1]}, only version {VERSION} "
                        f"(uint16 tokens) is supported; re-export it as version 1")
    return _memmap(file, np.uint16, int(header[2]), offset=HEADER_BYTES)


def find_shards(spec):
    """The .bin files of a folder or glob that look like train or val shards (name order)."""
    pattern = os.path.join(spec, "*.bin") if os.path.isdir(spec) else spec
    files = sorted(f for f in glob.glob(pattern) if os.path.isfile(f))
    return [f for f in files if "train" in os.path.basename(f) or "val" in os.path.basename(f)]


def load_shards(files, name):
    """A GPT-2 Dataset from shard files; name (the spec) only labels errors."""
    train_files = [f for f in files if "train" in os.path.basename(f)]
    val_files = [f for f in files if "val" in os.path.basename(f) and f not in train_files]
    if not train_files or not val_files:
        raise DataError(f"{name}: found {len(train_files)} train and {len(val_files)} val "
                        f"shards; need at least one of each (names containing 'train' / 'val')")
    for f in train_files + val_files:   # cheap on the memmap, and names the bad shard
        check_token_ids(read_shard(f), GPT2_META["vocab_size"], f)
    train, val = _concat(map(read_shard, train_files)), _concat(map(read_shard, val_files))
    folder = os.path.dirname(os.path.abspath(files[0]))
    meta = {"name": os.path.basename(folder), **GPT2_META,
            "train_tokens": len(train), "val_tokens": len(val),
            # hashing gigabytes on every load is too slow: the fingerprint covers each shard's
            # name, size and header, which changes whenever a shard is replaced or re-exported
            "source_sha256": _fingerprint(train_files + val_files),
            "train_shards": [os.path.basename(f) for f in train_files],
            "val_shards": [os.path.basename(f) for f in val_files]}
    return Dataset(train, val, meta, folder)


def _concat(arrays):
    """One shard stays a memmap; several are copied into one array (fine for small datasets)."""
    arrays = list(arrays)
    if len(arrays) == 1:
        return arrays[0]
    out = np.concatenate(arrays)
    out.flags.writeable = False
    return out


def _fingerprint(files):
    h = hashlib.sha256()
    for f in files:
        h.update(os.path.basename(f).encode())
        h.update(str(os.path.getsize(f)).encode())
        with open(f, "rb") as fh:
            h.update(fh.read(HEADER_BYTES))
    return h.hexdigest()
