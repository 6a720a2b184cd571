"""Paper-scale data: BPE files (Llama 3's format), the streaming prepare into shards (bounded
memory, resumable), and many shards read lazily as one stream."""

import base64
import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from data import DataError, get_tokenizer, load_dataset, shards, train_sequences  # noqa: E402
from data import prepare, stream  # noqa: E402
from data.format import shared_dir  # noqa: E402
from data.tokenizer import bpe_file  # noqa: E402

R50K_FILE = os.path.join(shared_dir(), "tiktoken_cache", "0ea1e91bbb3a60f729a8dc8f777fd2fc07cd8df4")
MERGES = [b"th", b"he", b"the", b" t", b" the", b"in", b"an", b"nd", b" and", b"er", b" a"]
WORDS = "the quick brown fox and the lazy dog were in the garden and then there were none".split()


def write_bpe(path, extra=()):
    """A tiny tiktoken-format file: the 256 bytes, then MERGES (rank = line number)."""
    tokens = [bytes([b]) for b in range(256)] + MERGES + list(extra)
    with open(path, "wb") as f:
        for rank, t in enumerate(tokens):
            f.write(base64.b64encode(t) + b" " + str(rank).encode() + b"\n")
    return str(path)


def make_docs(n, seed=0, words=(5, 60)):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, rng.integers(*words))) + f" #{i} caf\u00e9 \u2603"
            for i in range(n)]


def write_jsonl(path, docs, opener=open):
    with opener(path, "wt") as f:
        for d in docs:
            f.write(json.dumps({"text": d, "url": "x"}) + "\n")


def documents_of(tokens, eot):
    """Split a token array at eot; every document must end with one."""
    tokens = np.asarray(tokens)
    ends = np.flatnonzero(tokens == eot)
    assert len(tokens) == 0 or ends[-1] == len(tokens) - 1
    return [tokens[a + 1 if i else 0:b] for i, (a, b) in enumerate(zip([0, *ends[:-1]], ends))]


# ----------------------------------------------------------------------------------------------
# BPE files

def test_a_tiktoken_format_file_round_trips_with_either_pattern(tmp_path):
    path = write_bpe(tmp_path / "tiny.model")
    text = "the theme and then \u2014 caf\u00e9 \U0001F600 <|endoftext|> <|end_of_text|>\n\n  12345"
    for pattern, n_special, eot in (("gpt2", 1, 267), ("llama3", 256, 268)):
        tok = bpe_file(path, pattern)
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        assert (tok.vocab_size, tok.eot) == (267 + n_special, eot)
        assert tok.eot not in ids and max(ids) < 267  # special-looking text is ordinary text
        assert tok.encode("the") == [258] and tok.encode(" and") == [264]  # the merges apply
    # a dataset records the file, so its meta alone gives the tokenizer back
    meta = prepare.tokenizer_meta(bpe_file(path, "gpt2"), path)
    assert meta["tokenizer_file"] == os.path.abspath(path) and meta["tokenizer_pattern"] == "gpt2"
    assert get_tokenizer(meta).encode(text) == bpe_file(path, "gpt2").encode(text)


def test_llama3_special_tokens_make_128256_ids_stored_as_uint32(tmp_path):
    # 128,000 ranks: the bytes and MERGES, then filler 3-byte tokens (never produced by merges)
    n_fill = 128_000 - 256 - len(MERGES)
    filler = [bytes([1 + i // 65536 % 200, i // 256 % 256, i % 256]) + b"\xff" for i in range(n_fill)]
    path = write_bpe(tmp_path / "tokenizer.model", filler)
    tok = bpe_file(path, "llama3")
    assert (tok.vocab_size, tok.eot) == (128_256, 128_001)
    assert tok.enc.encode("<|begin_of_text|><|eot_id|>", allowed_special="all") == [128_000, 128_009]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    docs = make_docs(50)
    write_jsonl(corpus / "part.jsonl", docs)
    out = prepare.prepare(str(corpus), path, str(tmp_path / "big"), shard_tokens=500)
    ds = load_dataset(out)
    assert ds.meta["dtype"] == "uint32" and ds.meta["vocab_size"] == 128_256
    assert ds.meta["eot_token"] == 128_001 and ds.meta["tokenizer"] == "llama3"
    first = os.path.join(out, ds.meta["train_shards"][0])
    assert np.fromfile(first, np.int32, 3).tolist()[:2] == [20240801, 7]  # llm.c's uint32 kind
    got = [tok.decode(d) for split in (ds.train, ds.val) for d in documents_of(split, tok.eot)]
    assert sorted(got) == sorted(docs)


@pytest.mark.skipif(not os.path.exists(R50K_FILE), reason="no shared tiktoken cache")
def test_the_r50k_base_file_with_the_gpt2_pattern_is_gpt2s_bpe():
    tok, ref = bpe_file(R50K_FILE, "gpt2"), get_tokenizer("r50k_base")
    text = "Now is the winter of our discontent\n\n  Made glorious summer -- 1234 caf\u00e9's"
    assert tok.encode(text) == ref.encode(text) and tok.decode(ref.encode(text)) == text
    assert (tok.vocab_size, tok.eot) == (ref.vocab_size, ref.eot) == (50257, 50256)


def test_a_file_that_is_not_tiktoken_format_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"model": {"type": "BPE"}}\n')
    gappy = tmp_path / "gappy.model"
    gappy.write_bytes(b"".join(base64.b64encode(bytes([b])) + b" %d\n" % (2 * b) for b in range(256)))
    with pytest.raises(DataError, match="not a tiktoken-format BPE file"):
        bpe_file(str(bad))
    with pytest.raises(DataError, match="ranks are not 0..255"):
        bpe_file(str(gappy))
    with pytest.raises(SystemExit) as exit:
        prepare.main([str(tmp_path), "--tokenizer", str(bad), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert exit.value.code == 2 and err.startswith("error: ") and "\n" not in err
    assert "tokenizer.json line 1" in err


# ----------------------------------------------------------------------------------------------
# the streaming prepare

@pytest.fixture
def corpus(tmp_path):
    """Plain, gzipped and nested JSONL plus a .txt file: 1,201 documents."""
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    docs = make_docs(1200)
    write_jsonl(root / "a.jsonl", docs[:500])
    write_jsonl(root / "sub" / "b.jsonl.gz", docs[500:], opener=gzip.open)
    (root / "c.txt").write_text("a whole file is one document\n")
    return root, docs[:500] + ["a whole file is one document\n"] + docs[500:]


def test_streamed_shards_hold_every_document_once_split_whole(corpus, tmp_path):
    root, docs = corpus
    out = prepare.prepare(str(root), "byte", str(tmp_path / "ds"), shard_tokens=4096,
                          val_fraction=0.2, val_tokens=10**9)
    ds = load_dataset(out)
    meta = ds.meta
    assert len(meta["train_shards"]) > 10 and meta["documents"] == len(docs)
    sizes = [len(shards.read_shard(os.path.join(out, f))) for f in meta["train_shards"]]
    assert set(sizes[:-1]) == {4096} and 0 < sizes[-1] <= 4096  # fixed size, the last shorter
    assert isinstance(ds.train, shards.TokenStream) and len(ds.train) == sum(sizes)
    train = [bytes(d.tolist()).decode() for d in documents_of(ds.train, 256)]
    val = [bytes(d.tolist()).decode() for d in documents_of(ds.val, 256)]
    assert train + val != [] and not set(train) & set(val)
    assert sorted(train + val) == sorted(docs)                 # each document exactly once, whole
    assert train == [d for d in docs if d in set(train)]        # in input order
    assert 0.1 < len(val) / len(docs) < 0.3
    assert prepare.prepare(str(root), "byte", str(tmp_path / "ds"), shard_tokens=4096,
                           val_fraction=0.2, val_tokens=10**9) == out   # same settings: a no-op
    with pytest.raises(DataError, match="--force"):
        prepare.prepare(str(root), "byte", str(tmp_path / "ds"), shard_tokens=2048)


def test_val_stops_at_val_tokens_and_reading_stops_at_max_tokens(corpus, tmp_path):
    root, docs = corpus
    ds = load_dataset(prepare.prepare(str(root), "byte", str(tmp_path / "ds"), shard_tokens=4096,
                                      val_fraction=0.5, val_tokens=3000, max_tokens=20_000))
    assert 3000 <= len(ds.val) < 3000 + 1000                     # whole documents: a little over
    assert 20_000 <= len(ds.train) < 20_000 + 1000
    assert ds.meta["documents"] < len(docs) // 2


def test_an_interrupted_prepare_resumes_and_never_rewrites_a_finished_shard(corpus, tmp_path,
                                                                            monkeypatch):
    root, _ = corpus
    kw = dict(shard_tokens=3000, val_fraction=0.3, val_tokens=10**9, force=False)
    ref = prepare.prepare(str(root), "byte", str(tmp_path / "ref" / "ds"), **kw)

    real, written = shards.write_shard, []

    def crash_after_five(file, tokens, dtype="uint16"):
        if len(written) == 5:
            raise KeyboardInterrupt  # killed mid-run
        real(file, tokens, dtype)
        written.append(file)
    monkeypatch.setattr(shards, "write_shard", crash_after_five)
    out = str(tmp_path / "run" / "ds")
    with pytest.raises(KeyboardInterrupt):
        prepare.prepare(str(root), "byte", out, **kw)
    assert not os.path.exists(out) and os.path.exists(out + ".partial/state.json")
    before = {f: (os.stat(f).st_ino, os.stat(f).st_mtime_ns) for f in written}

    monkeypatch.setattr(shards, "write_shard", real)
    resumed = []
    monkeypatch.setattr(stream.shards, "write_shard",
                        lambda file, *a: (resumed.append(os.path.basename(file)), real(file, *a)))
    prepare.prepare(str(root), "byte", out, **kw)
    assert not os.path.exists(out + ".partial") and not os.path.exists(out + "/state.json")
    finished = {os.path.basename(f) for f in written}
    assert not finished & set(resumed)                          # nothing finished was redone
    for f, (ino, mtime) in before.items():                      # ... nor touched
        moved = os.path.join(out, os.path.basename(f))
        assert (os.stat(moved).st_ino, os.stat(moved).st_mtime_ns) == (ino, mtime)
    names = sorted(os.listdir(ref))
    assert names == sorted(os.listdir(out))
    for name in names:                                          # same bytes as one clean run
        with open(os.path.join(ref, name), "rb") as a, open(os.path.join(out, name), "rb") as b:
            assert a.read() == b.read(), name


def test_resuming_with_other_settings_is_refused(corpus, tmp_path, monkeypatch):
    root, _ = corpus
    monkeypatch.setattr(stream.SplitWriter, "flush", lambda self: (_ for _ in ()).throw(OSError("full")))
    with pytest.raises(OSError):
        prepare.prepare(str(root), "byte", str(tmp_path / "ds"), shard_tokens=3000)
    monkeypatch.undo()
    with pytest.raises(DataError, match="shard_tokens differs"):
        prepare.prepare(str(root), "byte", str(tmp_path / "ds"), shard_tokens=2000)
    with pytest.raises(DataError, match=r"being prepared .*ds\.partial"):
        load_dataset(str(tmp_path / "ds"))


@pytest.mark.parametrize("line, message", [
    ('{"text": "ok"}\n{"text": 3}\n', r"b\.jsonl line 2 has no \"text\" string"),
    ('{"text": "ok"}\n\n{"text": "unclosed\n', r"b\.jsonl line 3 is not JSON"),
])
def test_bad_jsonl_is_one_line_naming_file_and_line(tmp_path, capsys, line, message):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "b.jsonl").write_text(line)
    with pytest.raises(SystemExit) as exit:
        prepare.main([str(tmp_path / "c"), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and err.count("\n") == 1 and err.startswith("error: ")
    import re
    assert re.search(message, err), err


def test_zstd_jsonl_reads_when_zstandard_is_installed(tmp_path):
    (tmp_path / "c").mkdir()
    docs = make_docs(30)
    payload = "".join(json.dumps({"text": d}) + "\n" for d in docs).encode()
    try:
        import zstandard
    except ImportError:  # optional: without it a .zst file is a one-line error saying so
        (tmp_path / "c" / "p.jsonl.zst").write_bytes(b"\x28\xb5\x2f\xfd")
        with pytest.raises(DataError, match="pip install zstandard"):
            prepare.prepare(str(tmp_path / "c"), "byte", str(tmp_path / "x"))
        return
    (tmp_path / "c" / "p.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(payload))
    ds = load_dataset(prepare.prepare(str(tmp_path / "c"), "byte", str(tmp_path / "x")))
    got = [bytes(d.tolist()).decode() for s in (ds.train, ds.val) for d in documents_of(s, 256)]
    assert sorted(got) == sorted(docs)


PEAK_RSS = """
import json, sys
sys.path.insert(0, {repo!r})
from data import prepare
prepare.stream.PROGRESS_EVERY_S = 1e9
def status(key):  # KiB
    return int([l for l in open("/proc/self/status") if l.startswith(key)][0].split()[1])
tok = prepare.get_tokenizer("byte")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets the peak (VmHWM) to the current RSS: the peak of what follows
base = status("VmRSS")
prepare.stream.prepare_stream({corpus!r}, tok, {out!r}, {{"tokenizer": "byte"}},
                              shard_tokens=65536, val_tokens=30000, batch_bytes=65536,
                              log=lambda m: None)
print(json.dumps([base, status("VmHWM")]))
"""


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux /proc")
def test_streaming_memory_is_bounded_by_the_shard_size_not_the_corpus(tmp_path):
    peaks = {}
    for mb in (1, 6):   # 6 MB of text is 12 MB of uint16 tokens: ~25x a 128 KB shard buffer
        root = tmp_path / f"c{mb}"
        root.mkdir()
        docs = make_docs(mb * 450, seed=mb, words=(400, 500))   # ~2.2 KB each
        for part in range(4):
            write_jsonl(root / f"{part}.jsonl", docs[part::4])
        size = sum(os.path.getsize(root / f) for f in os.listdir(root))
        code = PEAK_RSS.format(repo=REPO, corpus=str(root), out=str(tmp_path / f"o{mb}"))
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True)
        base, peak = json.loads(res.stdout.strip().splitlines()[-1])
        peaks[mb] = (size, (peak - base) * 1024)
        assert load_dataset(str(tmp_path / f"o{mb}")).meta["train_tokens"] > 0.8 * size
    (small, grew_small), (big, grew_big) = peaks[1], peaks[6]
    print(f"corpus bytes -> peak RSS growth: {peaks}")
    assert big > 5.5e6
    assert grew_big < big / 4                       # far below the corpus (text or tokens)
    assert grew_big < grew_small + (big - small) / 8, peaks   # 6x the corpus, ~the same peak


# ----------------------------------------------------------------------------------------------
# many shards, one stream

def write_sharded(folder, tokens, n_shards, val):
    os.makedirs(folder, exist_ok=True)
    for i, part in enumerate(np.array_split(tokens, n_shards)):
        shards.write_shard(os.path.join(folder, f"x_train_{i:06d}.bin"), part)
    shards.write_shard(os.path.join(folder, "x_val_000000.bin"), val)
    return str(folder)


def test_twenty_shards_give_the_same_windows_as_their_concatenation(tmp_path):
    rng = np.random.default_rng(0)
    tokens, val = rng.integers(0, 50257, 100_003).astype(np.uint16), np.arange(500)
    one = load_dataset(write_sharded(tmp_path / "one", tokens, 1, val))
    many = load_dataset(write_sharded(tmp_path / "many", tokens, 20, val))
    assert isinstance(many.train, shards.TokenStream) and len(many.train.parts) == 20
    assert isinstance(one.train, np.memmap)
    T = 257  # 100,003 / 20 shards is not a multiple of T: many windows cross a shard boundary
    a, b = (train_sequences(ds.train, 99_000, T) for ds in (one, many))
    assert len(a) == len(b) == (99_000 - 1) // T
    idx = rng.permutation(len(a))            # an epoch's order, as the trainer draws it
    for chunk in np.array_split(idx, 7):
        assert np.array_equal(a.get(chunk), b.get(chunk))
    assert np.array_equal(b.get(np.arange(len(b))).reshape(-1, T + 1)[:, :-1].ravel(),
                          tokens[:len(b) * T])
    s = many.train
    assert s[5_001] == tokens[5_001] and s[-1] == tokens[-1]
    assert np.array_equal(s[4_990:5_020], tokens[4_990:5_020])   # across the first boundary
    with pytest.raises(IndexError):
        s[np.array([len(tokens)])]


ANON_RSS = """
import json, sys
import numpy as np
sys.path.insert(0, {repo!r})
from data import load_dataset, train_sequences
def anon():  # private memory: what a copy of the tokens would cost; mapped file pages are not
    return int([l for l in open("/proc/self/status") if l.startswith("RssAnon")][0].split()[1])
np.unique(np.arange(3))  # numpy's lazy imports on first use (~0.7 MB) are not the data's
base = anon()
ds = load_dataset({path!r})
w = train_sequences(ds.train, len(ds.train), 256)
batches = np.array_split(np.random.default_rng(0).permutation(len(w)), 1024)
w.get(batches[0]).sum()   # the first batch also pays numpy's and malloc's one-time setup
opened = anon()
for idx in batches:
    w.get(idx).sum()      # one epoch over every window, in random batches of ~30
print(json.dumps([(opened - base) * 1024, (anon() - opened) * 1024]))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_reading_twenty_shards_costs_no_more_memory_than_one(tmp_path):
    tokens = np.random.default_rng(1).integers(0, 50257, 8_000_000).astype(np.uint16)  # 16 MB
    cost = {}
    for n in (1, 20):
        path = write_sharded(tmp_path / f"s{n}", tokens, n, np.arange(2000))
        res = subprocess.run([sys.executable, "-c", ANON_RSS.format(repo=REPO, path=path)],
                             capture_output=True, text=True, check=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
        cost[n] = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"private bytes (opening + first batch, then a whole epoch) for 1 / 20 shards: {cost}")
    for n in (1, 20):
        assert cost[n][0] < tokens.nbytes / 8, cost  # the old concatenation copied all 16 MB
        assert cost[n][1] < 256 * 1024, cost         # an epoch over all of it adds nothing
    assert cost[20][0] < cost[1][0] + 1e6, cost      # 20 shards cost what one does
