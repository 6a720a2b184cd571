"""Streaming prepare: a corpus of any size -> llm.c token shards, in bounded memory, resumable.

    python -m data.prepare CORPUS_DIR --tokenizer path/to/tokenizer.model --out data/dclm_llama3 \
        --max_tokens 2000000000

data/prepare.py calls prepare_stream() for JSONL input or whenever --shard_tokens, --max_tokens or
--val_tokens is given; small text corpora keep its in-memory path (train.bin / val.bin).

Input. A folder, searched recursively (files in path order, hidden ones skipped), or one file:
    *.jsonl, *.jsonl.gz, *.jsonl.zst   one document per line, its "text" field (DCLM's format;
                                       .zst needs `pip install zstandard`)
    *.txt, *.txt.gz                    one document per file

Split. A document goes to val when a keyed hash of its text (key: --seed) falls below
--val_fraction, until val holds --val_tokens tokens; after that every document goes to train, and
reading stops once train holds --max_tokens. A document's split depends only on its text, the
seed and how full val is, so exact duplicates never straddle the two while val is filling.

Shards. Each split is its documents, each followed by the end-of-document token, cut into shards
of exactly --shard_tokens tokens (the last one shorter), train_000000.bin, ... and val_000000.bin,
...: llm.c's format (shards.py), uint16 or uint32 by vocabulary. A document can run on into the
next shard; readers see the shards as one stream (shards.TokenStream), so that costs nothing.

Memory. Two shard buffers (one per split; pages are touched only as they fill, so a small val
costs its size) plus one batch of --batch_bytes of text in flight: bounded by the shard size, not
the corpus. 100M-token shards of uint32 are 400 MB each.

Resume. Work happens in OUT.partial/: finished shards (each written to a temporary name, then
renamed) and state.json, rewritten (also by rename) whenever a shard is finished. state.json says
where in the input each split's unfinished shard begins (file, document, tokens of that document
already in a shard) and the counts up to there. Rerunning the same command re-reads the input from
the earliest of those points and carries on; a finished shard is never rewritten. At the end
meta.json is written and OUT.partial is renamed to OUT.
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import shards
from .format import DataError, read_meta, token_dtype

# Defaults, in one place (data/prepare.py's flags use them).
SHARD_TOKENS = 100_000_000     # llm.c's FineWeb shard size: 200 MB of uint16, 400 MB of uint32
VAL_TOKENS = 10_000_000        # val stops growing here; train.py evaluates on at most --val_tokens
BATCH_BYTES = 4 << 20          # text tokenized at once: enough documents for tiktoken's threads,
                               # small enough that its Python lists of ids (~30 bytes/id) stay small
PROGRESS_EVERY_S = 10
JSONL_EXT = (".jsonl", ".jsonl.gz", ".jsonl.zst")
TEXT_EXT = (".txt", ".txt.gz")
SPLITS = ("train", "val")


# ----------------------------------------------------------------------------------------------
# reading documents

def input_files(path):
    """The corpus files under path (or path itself), sorted by their path relative to it."""
    if os.path.isfile(path):
        if not path.endswith(JSONL_EXT + TEXT_EXT):
            raise DataError(f"{path} is not {', '.join(JSONL_EXT + TEXT_EXT)}; pass such a file "
                            f"or a folder of them")
        return [path]
    if not os.path.isdir(path):
        raise DataError(f"no input {path!r}: pass a folder of .jsonl/.txt files (or one file)")
    files = []
    for root, dirs, names in os.walk(path):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files += [os.path.join(root, n) for n in names
                  if n.endswith(JSONL_EXT + TEXT_EXT) and not n.startswith(".")]
    if not files:
        raise DataError(f"{path} holds no {', '.join(JSONL_EXT + TEXT_EXT)} files")
    return sorted(files, key=lambda f: os.path.relpath(f, path))


def is_streaming_input(path):
    """JSONL input is always streamed (it is how large corpora come)."""
    if os.path.isfile(path):
        return path.endswith(JSONL_EXT)
    if os.path.isdir(path):
        for _, _, names in os.walk(path):
            if any(n.endswith(JSONL_EXT) for n in names):
                return True
    return False


def open_raw(path):
    """(the file on disk, for progress by compressed bytes; the decompressed byte stream)."""
    raw = open(path, "rb")
    if path.endswith(".gz"):
        return raw, gzip.GzipFile(fileobj=raw)
    if path.endswith(".zst"):
        try:
            import zstandard
        except ImportError:
            raw.close()
            raise DataError(f"{path} is zstd-compressed: `pip install zstandard` to read it, or "
                            f"decompress the corpus first (unzstd)") from None
        return raw, io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw))
    return raw, raw


def documents(files, start, where):
    """Yield (file index, document index in file, text) from position start = (file, doc) on.
    Documents before start are skipped without being parsed. where["raw"] is the open file."""
    first_file, first_doc = start
    for fi in range(first_file, len(files)):
        path, skip = files[fi], first_doc if fi == first_file else 0
        raw, stream = open_raw(path)
        where["file"], where["raw"] = fi, raw
        with raw, stream:
            if path.endswith(TEXT_EXT):
                if skip == 0:
                    yield fi, 0, _utf8(stream.read(), path)
                continue
            doc = 0
            for lineno, line in enumerate(stream, 1):
                if not line.strip():
                    continue  # blank lines are not documents
                if doc >= skip:
                    yield fi, doc, _jsonl_text(line, path, lineno)
                doc += 1


def _utf8(raw, path, lineno=None):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        at = f" line {lineno}" if lineno else ""
        raise DataError(f"{path}{at} is not UTF-8 (byte {e.start}); convert it first, e.g. "
                        f"iconv -f latin1 -t utf-8") from None


def _jsonl_text(line, path, lineno):
    try:
        obj = json.loads(line)
    except ValueError as e:
        raise DataError(f"{path} line {lineno} is not JSON ({str(e).split(':')[0]}); each line "
                        f"must be an object with a \"text\" field") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
        raise DataError(f"{path} line {lineno} has no \"text\" string; each line must be an "
                        f"object like {{\"text\": \"...\"}}")
    return obj["text"]


def batches(docs, batch_bytes):
    """Lists of (file, doc, text) holding about batch_bytes of text each."""
    batch, size = [], 0
    for item in docs:
        batch.append(item)
        size += len(item[2])
        if size >= batch_bytes:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def is_val_text(text_bytes, key, val_fraction):
    """A keyed hash of the text, as a number in [0, 1), below val_fraction."""
    h = hashlib.blake2b(text_bytes, digest_size=8, key=key).digest()
    return int.from_bytes(h, "little") < val_fraction * 2**64


# ----------------------------------------------------------------------------------------------
# writing shards

class SplitWriter:
    """One split's shard buffer: fills it, writes each full shard, remembers where in the input
    the unfinished shard began (so a resumed run can rebuild it from there)."""

    def __init__(self, folder, split, shard_tokens, dtype, done):
        self.folder, self.split, self.S, self.dtype = folder, split, shard_tokens, dtype
        self.done = done                      # [[file name, tokens], ...] of finished shards
        self.buf = np.empty(shard_tokens, dtype)  # pages are committed only as they are filled
        self.n = 0
        self.start = None                     # input position of self.buf[0], None: the next doc

    def add(self, tokens, pos, offset=0):
        """Append a document's tokens (from token `offset` of it on); pos = its input position
        and the totals before it. Returns whether a shard was finished."""
        finished, i = False, 0
        if self.n == 0:
            self.start = dict(pos, skip=offset)
        while i < len(tokens):
            take = min(self.S - self.n, len(tokens) - i)
            self.buf[self.n:self.n + take] = tokens[i:i + take]
            self.n, i = self.n + take, i + take
            if self.n == self.S:
                self.flush()
                finished = True
                self.start = dict(pos, skip=offset + i) if i < len(tokens) else None
        return finished

    def flush(self):
        if self.n == 0:
            return
        name = f"{self.split}_{len(self.done):06d}.bin"
        shards.write_shard(os.path.join(self.folder, name), self.buf[:self.n], self.dtype)
        self.done.append([name, int(self.n)])
        self.n = 0


def _write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def _fingerprint(path, files):
    """The input by its files' relative names and sizes (hashing terabytes would take hours)."""
    h = hashlib.sha256()
    for f in files:
        h.update(os.path.relpath(f, path if os.path.isdir(path) else os.path.dirname(path)).encode())
        h.update(b"\0" + str(os.path.getsize(f)).encode() + b"\0")
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# the prepare

def prepare_stream(input, tok, out, tok_meta, shard_tokens=SHARD_TOKENS, val_fraction=0.1,
                   val_tokens=VAL_TOKENS, max_tokens=None, seed=0, force=False,
                   batch_bytes=BATCH_BYTES, log=None):
    """Tokenize the corpus at `input` into shards in folder `out` (see the module docstring);
    tok_meta: the tokenizer's entries for meta.json. Returns out."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if shard_tokens < 1 or (max_tokens is not None and max_tokens < 1) or val_tokens < 0:
        raise DataError("--shard_tokens and --max_tokens must be >= 1, --val_tokens >= 0")
    if not 0 <= val_fraction < 1:
        raise DataError(f"--val_fraction {val_fraction} must be in [0, 1)")
    out = os.path.abspath(out)
    files = input_files(input)
    # what the tokens depend on (the tokenizer file by its hash, not by where it lies)
    settings = {**{k: v for k, v in tok_meta.items() if k != "tokenizer_file"},
                "vocab_size": tok.vocab_size, "eot_token": tok.eot,
                "input_files": len(files), "input_fingerprint": _fingerprint(input, files),
                "shard_tokens": shard_tokens, "val_fraction": val_fraction,
                "val_tokens_max": val_tokens, "max_tokens": max_tokens, "seed": seed}
    old = read_meta(out) if os.path.exists(out) else None
    if old is not None and old.get("prepare_settings") == settings:
        log(f"prepare: {out} is already there, made with these settings")
        return out
    if os.path.exists(out) and not force:
        raise DataError(f"{out} already exists and holds a different dataset; delete it or "
                        f"pass --force to replace it")
    if os.path.exists(out) and old is None and os.listdir(out):
        raise DataError(f"{out} exists and is not a dataset folder (no meta.json); refusing to "
                        f"replace it: choose another --out")

    run = _Run(out + ".partial", files, tok, settings, log)
    run.go(batch_bytes)
    meta = {"name": os.path.basename(out), **tok_meta, "vocab_size": tok.vocab_size,
            "eot_token": tok.eot, "dtype": run.dtype,
            "train_tokens": run.totals["train"], "val_tokens": run.totals["val"],
            "source": os.path.basename(os.path.normpath(input)),
            # one hash of everything the tokens depend on (input files by name and size,
            # tokenizer file, split and size settings): equal hashes, equal datasets
            "source_sha256": hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest(),
            "documents": run.totals["documents"], "empty_documents_dropped": run.totals["empty"],
            "split": f"whole documents, by a hash of their text keyed by seed {seed}: val "
                     f"fraction {val_fraction} until val holds {val_tokens:,} tokens",
            "shard_tokens": shard_tokens,
            "train_shards": [name for name, _ in run.done["train"]],
            "val_shards": [name for name, _ in run.done["val"]],
            "prepare_settings": settings}
    _write_json(os.path.join(run.folder, "meta.json"), meta)
    if os.path.exists(out):  # --force: move the old one aside, delete it only at the end
        os.rename(out, out + ".old")
        os.rename(run.folder, out)
        shutil.rmtree(out + ".old")
    else:
        os.rename(run.folder, out)
    os.remove(os.path.join(out, "state.json"))  # kept until now: a crash before is resumable
    run.progress(final=True)
    return out


class _Run:
    """One (possibly resumed) pass over the input into OUT.partial."""

    def __init__(self, folder, files, tok, settings, log):
        self.folder, self.files, self.tok, self.settings, self.log = folder, files, tok, settings, log
        self.dtype = token_dtype(tok.vocab_size)
        self.state_file = os.path.join(folder, "state.json")
        self.totals = {"train": 0, "val": 0, "documents": 0, "empty": 0}  # before self.next
        self.next = {"file": 0, "doc": 0}     # the document after the last one consumed
        self.resume = {s: None for s in SPLITS}  # per split: first document not yet in a shard
        self.done = {"train": [], "val": []}
        if os.path.exists(self.state_file):
            with open(self.state_file) as f:
                state = json.load(f)
            changed = [k for k in settings if state["settings"].get(k) != settings[k]]
            if changed:
                raise DataError(f"{folder} was started with other settings ({changed[0]} "
                                f"differs); rerun with the same input and flags, or delete it "
                                f"to start over")
            self.done = state["shards"]
            # each split resumes at its unfinished shard's first document, or, if its last
            # shard ended on a document boundary, at the state's next document
            self.resume = {s: state["resume"][s] or {**state["next"], "skip": 0} for s in SPLITS}
            first = min(self.resume.values(), key=lambda p: (p["file"], p["doc"]))
            self.next, self.totals = {"file": first["file"], "doc": first["doc"]}, dict(first["totals"])
            log(f"prepare: resuming {folder}: {len(self.done['train'])} train + "
                f"{len(self.done['val'])} val shards are done; re-reading from file "
                f"{first['file'] + 1}/{len(files)}, document {first['doc']}")
        else:
            os.makedirs(folder, exist_ok=True)
        S = settings["shard_tokens"]
        self.writers = {s: SplitWriter(folder, s, S, self.dtype, self.done[s]) for s in SPLITS}
        self.key = settings["seed"].to_bytes(8, "little", signed=True)
        self.eot = np.array([tok.eot], dtype=self.dtype)
        self.where = {"file": self.next["file"], "raw": None}
        self.sizes = [os.path.getsize(f) for f in files]
        self.t0 = self.last_log = time.time()
        self.tokens_now = 0
        self.bytes0 = sum(self.sizes[:self.next["file"]])
        if not os.path.exists(self.state_file):
            self.save_state()  # from the start: a rerun with other settings is refused

    def full(self):
        m = self.settings["max_tokens"]
        return m is not None and self.totals["train"] >= m

    def go(self, batch_bytes):
        docs = documents(self.files, (self.next["file"], self.next["doc"]), self.where)
        with ThreadPoolExecutor(1) as pool:  # tokenize batch i while reading batch i+1
            pending = None
            for batch in ([] if self.full() else batches(docs, batch_bytes)):
                future = pool.submit(self.tok.encode_docs, [text for _, _, text in batch])
                if pending is not None and self.consume(*pending):
                    pending = None
                    break
                pending = (batch, future)
                self.maybe_progress()
            if pending is not None:
                self.consume(*pending)
        docs.close()
        for s in SPLITS:  # the last, shorter shards; recorded one by one, so never redone
            if self.writers[s].n:
                self.writers[s].flush()
                self.save_state()

    def consume(self, batch, future):
        """Add a tokenized batch document by document; True once train holds max_tokens."""
        for (fi, di, text), ids in zip(batch, future.result()):
            pos = {"file": fi, "doc": di, "totals": dict(self.totals)}
            self.next = {"file": fi, "doc": di + 1}
            self.totals["documents"] += 1
            if not text:
                self.totals["empty"] += 1
                continue
            n = len(ids) + 1
            split = "val" if (self.totals["val"] < self.settings["val_tokens_max"] and
                              is_val_text(text.encode("utf-8"), self.key,
                                          self.settings["val_fraction"])) else "train"
            r, self.tokens_now = self.resume[split], self.tokens_now + n
            if r is not None and (fi, di) < (r["file"], r["doc"]):
                self.totals[split] += n  # already in a finished shard (a resumed run)
                continue
            offset = r["skip"] if r is not None and (fi, di) == (r["file"], r["doc"]) else 0
            self.resume[split] = None
            tokens = np.concatenate([np.asarray(ids, dtype=self.dtype), self.eot])
            finished = self.writers[split].add(tokens[offset:], pos, offset)
            self.totals[split] += n
            if finished:
                self.save_state()
                self.maybe_progress()
            if self.full():
                return True
        return False

    def save_state(self):
        _write_json(self.state_file, {
            "settings": self.settings, "shards": self.done,
            "next": {**self.next, "totals": self.totals},
            "resume": {s: w.start if w.n else None for s, w in self.writers.items()}})

    def maybe_progress(self):
        if time.time() - self.last_log > PROGRESS_EVERY_S:
            self.progress()
            self.last_log = time.time()

    def progress(self, final=False):
        dt = max(time.time() - self.t0, 1e-9)
        rate, raw = self.tokens_now / dt, self.where["raw"]
        done_files = self.where["file"] + (1 if raw is not None and raw.closed else 0)
        pos = sum(self.sizes[:done_files]) + (raw.tell() if raw and not raw.closed else 0)
        total = max(sum(self.sizes), 1)
        speed = (pos - self.bytes0) / dt
        etas = [(total - pos) / speed] if speed > 0 else []
        if self.settings["max_tokens"] and rate > 0:
            etas.append(max(self.settings["max_tokens"] - self.totals["train"], 0) / rate)
        eta = f", ETA {_hms(min(etas))}" if etas and not final else ""
        t = self.totals
        self.log(f"prepare: {t['train'] + t['val']:,} tokens (train {t['train']:,}, val "
                 f"{t['val']:,}) in {len(self.done['train'])}+{len(self.done['val'])} shards, "
                 f"{rate / 1e6:.2f}M tok/s, input {100 * min(pos / total, 1):.1f}% of "
                 f"{total / 1e9:.2f} GB{eta}" + (f" ({_hms(dt)})" if final else ""))


def _hms(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"
