"""llm.c / modded-nanogpt token shards: read and write them, and read many as one token stream.

A shard is a 256 x int32 header -- magic, version, number of tokens -- followed by the tokens.
Two kinds, as llm.c writes them (dev/data/data_common.py):

    magic 20240520, version 1   uint16 tokens (GPT-2 BPE; FineWeb10B, TinyStories, ...)
    magic 20240801, version 7   uint32 tokens (Llama 3's 128,256 ids, any vocab > 65,536)

Shard files found without a meta.json are taken to be llm.c's exports: uint16 ones GPT-2's
(r50k_base, vocab 50,257, end of text 50,256), uint32 ones Llama 3's (vocab 128,256, end of text
128,001). Train shards are the files whose name contains "train", val shards
"val", read in name order. A folder made by the streaming prepare (stream.py) has a meta.json
that names its tokenizer and lists its shards.

Many shards, one stream. `TokenStream` indexes the memory-mapped shards as the concatenation of
their tokens, without copying them: windows DO cross shard boundaries, exactly as they would in
the concatenated array, so D tokens over 20 shards give the same windows as over one file (and a
shard boundary, which the streaming prepare places wherever a shard fills up, means nothing to
the model: documents are marked by their end-of-document tokens, not by files). The RAM it costs
is the page cache the kernel can drop, plus one small offsets array.
"""

import glob
import hashlib
import os

import numpy as np

from .format import Dataset, DataError, check_token_ids, memmap

HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
KINDS = {  # dtype -> (magic, version), llm.c's two kinds
    "uint16": (20240520, 1),
    "uint32": (20240801, 7),
}
MAGIC, VERSION = KINDS["uint16"]
# what bare shards (no meta.json) hold: llm.c writes its GPT-2 exports as uint16 and its Llama 3
# exports (Llama 3.1's tokenizer: same 128,000 BPE ranks and the same two first special tokens) as uint32
BARE_META = {"uint16": {"tokenizer": "r50k_base", "vocab_size": 50257, "eot_token": 50256,
                        "dtype": "uint16"},
             "uint32": {"tokenizer": "llama3", "vocab_size": 128256, "eot_token": 128001,
                        "dtype": "uint32"}}
GPT2_META = BARE_META["uint16"]


def write_shard(file, tokens, dtype="uint16"):
    """Write tokens as one llm.c shard (uint16 ids < 65,536, or uint32), via a temporary file and
    a rename, so a shard that exists under its name is always complete."""
    magic, version = KINDS[dtype]
    tokens = np.asarray(tokens)
    header = np.zeros(HEADER_INTS, dtype=np.int32)
    header[:3] = magic, version, len(tokens)
    tmp = f"{file}.tmp"
    with open(tmp, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype(dtype, copy=False).tobytes())
    os.replace(tmp, file)


def read_shard(file):
    """The tokens of one shard as a read-only memmap; DataError naming the file if it is bad."""
    size = os.path.getsize(file)
    if size < HEADER_BYTES:
        raise DataError(f"{file} is {size} bytes, shorter than the 1024-byte llm.c header; "
                        f"the shard is truncated: download or write it again")
    header = np.fromfile(file, dtype=np.int32, count=HEADER_INTS)
    kind = {magic: (dtype, version) for dtype, (magic, version) in KINDS.items()}.get(int(header[0]))
    if kind is None:
        raise DataError(f"{file} has magic {header[0]}, not {MAGIC} or {KINDS['uint32'][0]}: not "
                        f"an llm.c token shard (move it out of the shard folder or glob)")
    dtype, version = kind
    if header[1] != version:
        raise DataError(f"{file} is shard version {header[1]} with magic {header[0]}; only "
                        f"version {version} ({dtype} tokens) is supported: re-export it")
    return memmap(file, dtype, int(header[2]), offset=HEADER_BYTES)


class TokenStream:
    """Several 1-D token arrays (memmapped shards) read as their concatenation, without a copy.

    Supports what the trainer and Windows use: len(), integer arrays of positions of any shape
    (gathered shard by shard), ints and slices (those copy only what they select), np.asarray
    (copies everything: fine for a val split, not for a big train split).
    """

    def __init__(self, parts):
        self.parts = [p for p in parts if len(p)]
        dtypes = {p.dtype for p in self.parts}
        if len(dtypes) > 1:
            raise DataError(f"the shards mix token types {sorted(map(str, dtypes))}; "
                            f"export them all with one tokenizer")
        self.dtype = dtypes.pop() if dtypes else np.dtype("uint16")
        # starts[i] = position of part i's first token in the stream; starts[-1] = the length
        self.starts = np.cumsum([0] + [len(p) for p in self.parts]).astype(np.int64)
        self.shape, self.ndim = (int(self.starts[-1]),), 1

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        if isinstance(key, slice):
            return self.gather(np.arange(*key.indices(len(self))))
        if isinstance(key, (int, np.integer)):
            return self.gather(np.asarray(key))[()]
        return self.gather(np.asarray(key))

    def gather(self, pos):
        """Tokens at the int array `pos` (any shape), from whichever shards hold them. Rows (the
        last axis: a window) that lie inside one shard are gathered from it in one go; only rows
        that cross a shard boundary are split position by position."""
        pos = np.asarray(pos, dtype=np.int64)
        n = len(self)
        if pos.size and (pos.min() < -n or pos.max() >= n):
            raise IndexError(f"token position out of range 0..{n - 1}")
        if pos.size and pos.min() < 0:
            pos = np.where(pos < 0, pos + n, pos)
        rows = pos.reshape(-1, pos.shape[-1] if pos.ndim else 1)
        out = np.empty(rows.shape, dtype=self.dtype)
        if rows.size == 0:
            return out.reshape(pos.shape)
        part_of = lambda p: np.searchsorted(self.starts, p, side="right") - 1  # noqa: E731
        first, last = part_of(rows.min(axis=1)), part_of(rows.max(axis=1))
        inside = first == last
        for i in np.unique(first[inside]):
            r = np.flatnonzero(inside & (first == i))
            out[r] = self.parts[i][rows[r] - self.starts[i]]
        for r in np.flatnonzero(~inside):  # a window across a boundary: a few per epoch
            which = part_of(rows[r])
            for i in np.unique(which):
                sel = which == i
                out[r, sel] = self.parts[i][rows[r, sel] - self.starts[i]]
        return out.reshape(pos.shape)

    def __array__(self, dtype=None, copy=None):
        out = np.concatenate(self.parts) if self.parts else np.zeros(0, self.dtype)
        return out if dtype is None else out.astype(dtype)

    def tolist(self):
        return np.asarray(self).tolist()

    def __repr__(self):
        return f"TokenStream({len(self):,} {self.dtype} tokens in {len(self.parts)} shards)"


def stream(files):
    """The tokens of shard files, in the given order: the memmap itself for one file (the fast
    path), a TokenStream over all of them for several."""
    parts = [read_shard(f) for f in files]
    return parts[0] if len(parts) == 1 else TokenStream(parts)


def find_shards(spec):
    """The .bin files of a folder or glob that look like train or val shards (name order)."""
    pattern = os.path.join(spec, "*.bin") if os.path.isdir(spec) else spec
    files = sorted(f for f in glob.glob(pattern) if os.path.isfile(f))
    return [f for f in files if "train" in os.path.basename(f) or "val" in os.path.basename(f)]


def load_shards(files, name):
    """A Dataset from bare llm.c shard files (no meta.json); name only labels errors."""
    train_files = [f for f in files if "train" in os.path.basename(f)]
    val_files = [f for f in files if "val" in os.path.basename(f) and f not in train_files]
    if not train_files or not val_files:
        raise DataError(f"{name}: found {len(train_files)} train and {len(val_files)} val "
                        f"shards; need at least one of each (names containing 'train' / 'val')")
    for f in train_files + val_files:   # cheap on the memmap, and names the bad shard
        t = read_shard(f)
        check_token_ids(t, BARE_META[t.dtype.name]["vocab_size"], f)
    train, val = stream(train_files), stream(val_files)
    if train.dtype != val.dtype:
        raise DataError(f"{name}: the train shards hold {train.dtype} tokens, the val shards "
                        f"{val.dtype}; export both with one tokenizer")
    folder = os.path.dirname(os.path.abspath(files[0]))
    meta = {"name": os.path.basename(folder), **BARE_META[train.dtype.name],
            "train_tokens": len(train), "val_tokens": len(val),
            "source_sha256": fingerprint(train_files + val_files),
            "train_shards": [os.path.basename(f) for f in train_files],
            "val_shards": [os.path.basename(f) for f in val_files]}
    return Dataset(train, val, meta, folder)


def load_sharded_dataset(path, meta):
    """A Dataset from a folder with meta.json and the shards it lists (the streaming prepare's)."""
    splits = {}
    for split in ("train", "val"):
        files = [os.path.join(path, f) for f in meta[f"{split}_shards"]]
        missing = [f for f in files if not os.path.exists(f)]
        if missing:
            raise DataError(f"{missing[0]} is missing; rerun the prepare command to recreate it")
        for f in files:                 # cheap on the memmap, and names the bad shard
            check_token_ids(read_shard(f), meta["vocab_size"], f)
        tokens = stream(files) if files else np.zeros(0, meta["dtype"])
        if len(tokens) != meta[f"{split}_tokens"] or (len(tokens) and tokens.dtype != meta["dtype"]):
            raise DataError(f"{path}: the {split} shards hold {len(tokens)} {tokens.dtype} tokens "
                            f"but meta.json says {meta[f'{split}_tokens']} {meta['dtype']}; the "
                            f"dataset is damaged: recreate it")
        splits[split] = tokens
    return Dataset(splits["train"], splits["val"], meta, os.path.abspath(path))


def fingerprint(files):
    """Hashing gigabytes on every load is too slow: this covers each file's name, size and first
    KiB (a shard's header), which changes whenever a shard is replaced or re-exported."""
    h = hashlib.sha256()
    for f in files:
        h.update(os.path.basename(f).encode())
        h.update(str(os.path.getsize(f)).encode())
        with open(f, "rb") as fh:
            h.update(fh.read(HEADER_BYTES))
    return h.hexdigest()
