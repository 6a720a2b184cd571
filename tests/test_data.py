"""Tests for data/: the synthetic source and its limits, prepare, shards, loading and windows."""

import hashlib
import json
import math
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data import (DataError, get_tokenizer, load_dataset, token_dtype,  # noqa: E402
                  train_sequences, val_windows, write_dataset)
from data import dataset as dataset_mod  # noqa: E402
from data import prepare, shards, synthetic  # noqa: E402
from data.dataset import shared_dir  # noqa: E402

SMALL = dict(V=16, k=2, s=4, alpha=0.5, n_train=200_000, n_val=20_000, seed=7)
SHAKESPEARE = os.path.join(shared_dir(), "data", "shakespeare", "shakespeare.txt")


@pytest.fixture(scope="module")
def small_source():
    return synthetic.make_source(*(SMALL[key] for key in ("V", "k", "s", "alpha", "seed")))


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    path = synthetic.generate(str(tmp_path_factory.mktemp("syn") / "small"), **SMALL)
    return load_dataset(path)


# ----------------------------------------------------------------------------------------------
# synthetic source

def test_source_probabilities_sum_to_one_on_distinct_supports(small_source):
    src, pi = small_source
    assert src.probs.shape == src.support.shape == (16 ** 2, 4)
    np.testing.assert_allclose(src.probs.sum(axis=1), 1.0, atol=1e-12)
    assert all(len(set(row)) == src.s for row in src.support.tolist())
    assert src.support.min() >= 0 and src.support.max() < src.V
    np.testing.assert_allclose(pi.sum(), 1.0, atol=1e-12)


def test_bayes_predictive_sums_to_one_for_seen_and_unseen_contexts(small_source):
    src, pi = small_source
    train = synthetic.sample(src, pi, 300, seed=1)  # short: many contexts never seen
    bayes = synthetic.BayesPredictor(train, src.V, src.k, src.s, src.alpha)
    assert (bayes.n_c == 0).any() and (bayes.n_c > 0).any()
    ctx, x = np.meshgrid(np.arange(src.V ** src.k), np.arange(src.V), indexing="ij")
    q = bayes.prob(ctx.ravel(), x.ravel()).reshape(ctx.shape)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-12)
    # an unseen context predicts uniformly; a seen symbol gets (n + alpha) / (n_c + s alpha)
    unseen = np.flatnonzero(bayes.n_c == 0)[0]
    np.testing.assert_allclose(q[unseen], 1 / src.V)
    c, t = synthetic.contexts_and_targets(train, src.V, src.k)
    n_cx = np.sum((c == c[0]) & (t == t[0]))
    assert q[c[0], t[0]] == pytest.approx((n_cx + 0.5) / (bayes.n_c[c[0]] + 4 * 0.5))


def _two_closed_classes():
    # V=4, k=1: symbols {0,1} only lead to {0,1}, {2,3} only to {2,3}: two recurrent classes
    support = np.array([[0, 1], [0, 1], [2, 3], [2, 3]])
    return synthetic.Source(4, 1, 2, 0.5, 0, support, np.full((4, 2), 0.5))


def test_chain_check_rejects_a_non_ergodic_source(monkeypatch):
    bad = _two_closed_classes()
    assert synthetic.recurrent_class(synthetic.transition_matrix(bad)) is None
    good = synthetic.Source(4, 1, 2, 0.5, 0, np.array([[0, 1], [1, 2], [2, 3], [3, 0]]),
                            np.full((4, 2), 0.5))
    assert synthetic.recurrent_class(synthetic.transition_matrix(good)).all()
    # transient contexts are fine: 3 -> {0, 1} but nothing leads back to 3
    transient = synthetic.Source(4, 1, 2, 0.5, 0, np.array([[0, 1], [1, 2], [2, 0], [0, 1]]),
                                 np.full((4, 2), 0.5))
    mask = synthetic.recurrent_class(synthetic.transition_matrix(transient))
    assert mask.tolist() == [True, True, True, False]
    # make_source redraws with the next seed when a draw is not ergodic
    real_draw = synthetic.draw_source
    monkeypatch.setattr(synthetic, "draw_source", lambda V, k, s, alpha, seed:
                        bad if seed == 5 else real_draw(V, k, s, alpha, seed))
    src, _ = synthetic.make_source(4, 1, 2, 0.5, 5)
    assert src.seed == 6


def test_entropy_rate_matches_the_empirical_log_loss_of_a_long_sample(small_source):
    src, pi = small_source
    H = synthetic.entropy_rate(src, pi)
    tokens = synthetic.sample(src, pi, 400_000, seed=src.seed)
    ctx, x = synthetic.contexts_and_targets(tokens, src.V, src.k)
    empirical = -np.mean(np.log(synthetic.true_prob(src, ctx, x)))
    assert 0.3 < H < math.log(src.s)
    assert abs(empirical - H) < 0.015


def test_bayes_limit_is_above_entropy_and_falls_as_D_grows(small_dataset):
    windows = val_windows(small_dataset.val, 64, 20_000)
    result = [synthetic.limits(small_dataset, D, windows) for D in (2_000, 10_000, 50_000, 200_000)]
    bayes = [r["bayes"] for r in result]
    assert all(b > r["entropy"] for b, r in zip(bayes, result))
    assert bayes == sorted(bayes, reverse=True) and bayes[0] - bayes[-1] > 0.05
    assert abs(result[0]["entropy"] - result[0]["entropy_rate"]) < 0.03


def test_limits_skip_the_first_k_minus_1_targets_of_each_window(small_dataset):
    src = synthetic.source_from_meta(small_dataset.meta)
    T, k = 32, src.k
    assert small_dataset.meta["eval_skip"] == k - 1
    windows = val_windows(small_dataset.val, T, 3_000)
    table = {(c, sym): p for c in range(src.V ** k)
             for sym, p in zip(src.support[c].tolist(), src.probs[c].tolist())}
    losses = []  # a slow, independent loop over exactly the targets the model is scored on
    for w in windows.tolist():
        for t in range(1 + small_dataset.meta["eval_skip"], T + 1):  # target w[t], inputs w[:t]
            c = sum(w[t - k + i] * src.V ** (k - 1 - i) for i in range(k))
            losses.append(-math.log(table[(c, w[t])]))
    result = synthetic.limits(small_dataset, 10_000, windows)
    assert result["positions"] == len(losses) == len(windows) * (T - (k - 1))
    assert result["entropy"] == pytest.approx(np.mean(losses), abs=1e-12)


def test_generation_is_deterministic_given_the_seed():
    params = dict(SMALL, n_train=5_000, n_val=1_000)
    a_train, a_val, a_meta = synthetic.build(**params)
    b_train, b_val, b_meta = synthetic.build(**params)
    c_train, _, _ = synthetic.build(**dict(params, seed=8))
    assert np.array_equal(a_train, b_train) and np.array_equal(a_val, b_val) and a_meta == b_meta
    assert not np.array_equal(a_train, c_train)


def test_a_shifted_source_redraws_that_fraction_of_contexts_and_keeps_the_rest(tmp_path):
    params = dict(SMALL, n_train=5_000, n_val=1_000)
    base, _ = synthetic.make_source(*(params[key] for key in ("V", "k", "s", "alpha", "seed")))
    shifted, _ = synthetic.make_source(*(params[key] for key in ("V", "k", "s", "alpha", "seed")),
                                       shift=0.25, shift_seed=3)
    same = (base.support == shifted.support).all(1) & (base.probs == shifted.probs).all(1)   # (V^k,)
    assert (~same).sum() == round(0.25 * 16 ** 2)               # a quarter redrawn, the rest the base's
    path = synthetic.generate(str(tmp_path / "shifted"), **params, shift=0.25, shift_seed=3)
    ds = load_dataset(path)
    again = synthetic.source_from_meta(ds.meta)                 # the limits rebuild the shifted source
    assert np.array_equal(again.probs, shifted.probs) and np.array_equal(again.support, shifted.support)
    b_train, _, b_meta = synthetic.build(**params)
    assert not np.array_equal(ds.train[:100], b_train[:100])    # its own stream, not the base's
    assert ds.meta["source_sha256"] != b_meta["source_sha256"]
    assert "shift" not in b_meta["synthetic"]                   # unshifted sources keep their fingerprint


def test_synthetic_dataset_is_made_on_first_use_and_then_reused(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic, "DEFAULT", dict(SMALL, n_train=20_000, n_val=4_000))
    ds = load_dataset("synthetic", root=str(tmp_path))
    meta = ds.meta
    assert meta["vocab_size"] == 17 and meta["eot_token"] == 16 and meta["tokenizer"] == "synthetic"
    assert meta["synthetic"]["entropy_rate"] > 0 and meta["eval_skip"] == 1
    assert ds.train.max() < 16 and ds.val.max() < 16  # the eot token never occurs in the stream
    assert len(ds.train) == 20_000 and len(ds.val) == 4_000 and ds.train.dtype == np.uint16
    assert os.listdir(tmp_path) == ["synthetic"]  # no temporary folders left behind
    monkeypatch.setattr(synthetic, "generate", lambda *a, **k: pytest.fail("regenerated"))
    again = load_dataset("synthetic", root=str(tmp_path))
    assert np.array_equal(again.train, ds.train)
    tok = get_tokenizer(meta)
    assert tok.decode([3, 16, 5]) == "3 <|eot|> 5" and tok.encode("3 <|eot|> 5") == [3, 16, 5]


# ----------------------------------------------------------------------------------------------
# prepare

DOCS = {f"doc{i}": f"Document {i} says: " + " ".join(f"w{i}_{j}" for j in range(200 + 50 * i)) +
        "\n\nA second paragraph, caf\u00e9 \u2603.\n" for i in range(8)}


def _folder(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    return folder


def _documents(tokens, eot):
    """Split a stream at eot; every document must end with one."""
    tokens = list(tokens)
    assert tokens[-1] == eot
    docs, cur = [], []
    for t in tokens:
        if t == eot:
            docs.append(cur)
            cur = []
        else:
            cur.append(t)
    return docs


def test_byte_tokenizer_round_trips_text():
    tok = get_tokenizer({"tokenizer": "byte"})
    text = "To be, or not to be \u2014 caf\u00e9 \u2603 \U0001F600\n"
    assert tok.decode(tok.encode(text)) == text
    assert tok.vocab_size == 257 and tok.eot == 256 and max(tok.encode(text)) < 256
    assert tok.decode(tok.encode("a") + [256] + tok.encode("b")) == "a\n<|eot|>\nb"


def test_prepare_never_splits_a_document_across_train_and_val(tmp_path):
    out = prepare.prepare(str(_folder(tmp_path)), "byte", str(tmp_path / "ds"), val_fraction=0.25)
    ds = load_dataset(str(out))
    tok = get_tokenizer(ds.meta)
    val_docs = [tok.decode(d) for d in _documents(ds.val, tok.eot)]
    train_docs = [tok.decode(d) for d in _documents(ds.train, tok.eot)]
    assert sorted(val_docs) == sorted(DOCS[n] for n in ds.meta["val_documents"])
    assert sorted(train_docs) == sorted(DOCS[n] for n in ds.meta["train_documents"])
    train_text = tok.decode(ds.train)
    assert val_docs and all(doc not in train_text for doc in val_docs)
    assert 0.25 <= ds.meta["val_fraction"] < 0.6


def test_every_document_is_followed_by_the_eot_token(tmp_path):
    out = prepare.prepare(str(_folder(tmp_path)), "byte", str(tmp_path / "ds"),
                          val_docs=["doc2", "doc5"])
    ds = load_dataset(str(out))
    assert ds.meta["val_documents"] == ["doc2", "doc5"]
    for split, names in ((ds.val, ["doc2", "doc5"]), (ds.train, ds.meta["train_documents"])):
        assert np.count_nonzero(split == 256) == len(names) and split[-1] == 256
        assert [bytes(d).decode() for d in _documents(split, 256)] == [DOCS[n] for n in names]


def test_token_dtype_is_uint16_up_to_65536_then_uint32(tmp_path):
    assert token_dtype(257) == token_dtype(65536) == "uint16"
    assert token_dtype(65537) == token_dtype(128_256) == "uint32"
    meta = {"name": "big", "tokenizer": "o200k_base", "vocab_size": 100_000, "eot_token": 99_999,
            "source_sha256": "0"}
    train = np.array([1, 70_000, 99_999]), np.array([65_536, 99_999])
    ds = load_dataset(write_dataset(str(tmp_path / "big"), *train, meta))
    assert ds.meta["dtype"] == "uint32" and os.path.getsize(tmp_path / "big" / "train.bin") == 12
    assert ds.train.tolist() == [1, 70_000, 99_999] and ds.val.tolist() == [65_536, 99_999]


def test_a_failed_write_leaves_no_partial_dataset(tmp_path, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(dataset_mod.json, "dump", disk_full)
    with pytest.raises(OSError):
        prepare.prepare(str(_folder(tmp_path)), "byte", str(tmp_path / "ds"))
    assert sorted(os.listdir(tmp_path)) == ["corpus"]  # neither ds nor a temporary folder


def test_prepare_refuses_to_replace_a_different_dataset_without_force(tmp_path):
    folder, out = _folder(tmp_path), str(tmp_path / "ds")
    prepare.prepare(str(folder), "byte", out, val_docs=["doc1"])
    prepare.prepare(str(folder), "byte", out, val_docs=["doc1"])  # identical: fine, a no-op
    with pytest.raises(DataError, match="--force"):
        prepare.prepare(str(folder), "byte", out, val_docs=["doc3"])
    prepare.prepare(str(folder), "byte", out, val_docs=["doc3"], force=True)
    assert load_dataset(out).meta["val_documents"] == ["doc3"]
    assert sorted(os.listdir(tmp_path)) == ["corpus", "ds"]
    with pytest.raises(DataError, match="not a dataset folder"):  # --force never deletes code
        prepare.prepare(str(folder), "byte", str(tmp_path), force=True)
    assert sorted(os.listdir(tmp_path)) == ["corpus", "ds"]


def test_prepared_meta_records_tokenizer_counts_and_source(tmp_path):
    src = tmp_path / "one.txt"
    text = "".join(f"Paragraph {i}: " + "la " * 40 + "\n\n" for i in range(50))
    src.write_text(text)
    ds = load_dataset(prepare.prepare(str(src), "byte", str(tmp_path / "one"), val_fraction=0.1))
    meta = json.loads((tmp_path / "one" / "meta.json").read_text())
    assert meta == ds.meta
    for key in ("name", "tokenizer", "vocab_size", "eot_token", "dtype", "train_tokens",
                "val_tokens", "source_sha256", "val_documents", "train_documents"):
        assert key in meta, key
    assert (meta["name"], meta["tokenizer"], meta["vocab_size"], meta["eot_token"],
            meta["dtype"]) == ("one", "byte", 257, 256, "uint16")
    assert meta["source_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert (meta["train_tokens"], meta["val_tokens"]) == (len(ds.train), len(ds.val))
    # a single file is cut once, at a paragraph start near 90%
    head, tail = (bytes(split[:-1].tolist()).decode() for split in (ds.train, ds.val))
    assert head + tail == text and tail.startswith("Paragraph 45:")


def test_tiktoken_r50k_base_round_trips_and_uses_endoftext():
    try:
        tok = get_tokenizer({"tokenizer": "r50k_base"})
    except DataError:
        pytest.skip("no tiktoken cache for r50k_base")
    text = "Now is the winter of our discontent <|endoftext|>"
    assert tok.decode(tok.encode(text)) == text and tok.eot not in tok.encode(text)
    assert (tok.vocab_size, tok.eot) == (50257, 50256)


def test_prepare_cli_prints_one_line_and_exits_2_on_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        prepare.main([str(tmp_path / "missing.txt"), "--out", str(tmp_path / "x")])
    assert exit.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "missing.txt" in err


# ----------------------------------------------------------------------------------------------
# llm.c shards

def test_llmc_shards_load_as_a_gpt2_dataset(tmp_path):
    rng = np.random.default_rng(0)
    parts = [rng.integers(0, 50257, n) for n in (1000, 500, 300)]
    shards.write_shard(tmp_path / "fineweb_train_000001.bin", parts[0])
    shards.write_shard(tmp_path / "fineweb_train_000002.bin", parts[1])
    shards.write_shard(tmp_path / "fineweb_val_000000.bin", parts[2])
    for spec in (str(tmp_path), str(tmp_path / "fineweb_*.bin")):
        ds = load_dataset(spec)
        assert ds.train.tolist() == parts[0].tolist() + parts[1].tolist()
        assert ds.val.tolist() == parts[2].tolist()
        assert (ds.meta["vocab_size"], ds.meta["eot_token"], ds.meta["tokenizer"]) == \
            (50257, 50256, "r50k_base")


@pytest.mark.parametrize("damage", ["magic", "version", "truncated", "no header"])
def test_a_bad_shard_gives_a_data_error_naming_the_file(tmp_path, damage):
    shards.write_shard(tmp_path / "x_train_000001.bin", np.arange(100))
    shards.write_shard(tmp_path / "x_val_000000.bin", np.arange(50))
    bad = tmp_path / "x_val_000000.bin"
    raw = bytearray(bad.read_bytes())
    if damage == "magic":
        raw[:4] = np.int32(12345).tobytes()
    elif damage == "version":
        raw[4:8] = np.int32(2).tobytes()
    elif damage == "truncated":
        raw = raw[:-10]
    else:
        raw = raw[:100]
    bad.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="x_val_000000.bin"):
        load_dataset(str(tmp_path))


# ----------------------------------------------------------------------------------------------
# loading and windows

def test_missing_dataset_error_says_how_to_create_it(tmp_path):
    with pytest.raises(DataError, match="python -m data.prepare shakespeare --tokenizer byte"):
        load_dataset("shakespeare_byte", root=str(tmp_path))
    with pytest.raises(DataError, match=r"python -m data\.prepare INPUT .*--out data/mine"):
        load_dataset("mine", root=str(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="meta.json"):
        load_dataset(str(tmp_path / "empty"))


def test_loaded_tokens_are_read_only_and_checked_against_meta(small_dataset, tmp_path):
    with pytest.raises(ValueError):
        small_dataset.train[0] = 1
    path = write_dataset(str(tmp_path / "d"), np.arange(10), np.arange(5), {
        "name": "d", "tokenizer": "byte", "vocab_size": 257, "eot_token": 256,
        "source_sha256": "0"})
    with open(os.path.join(path, "val.bin"), "ab") as f:
        f.write(b"\0\0")
    with pytest.raises(DataError, match="val.bin"):
        load_dataset(path)


def test_train_sequences_are_the_first_D_tokens_in_windows_of_T_plus_1():
    tokens = np.arange(1000, dtype=np.uint16)
    windows = train_sequences(tokens, D=101, T=10)
    assert len(windows) == 10
    got = windows.get(np.array([0, 9, 3]))
    assert got.dtype == np.int64 and got.shape == (3, 11)
    assert got[1].tolist() == list(range(90, 101))  # window i = tokens[i*T : i*T + T + 1]
    assert got[0].tolist() == list(range(0, 11)) and got[2, 0] == 30
    assert len(train_sequences(tokens, D=100, T=10)) == 9  # (D - 1) // T
    with pytest.raises(IndexError):
        windows.get([10])
    with pytest.raises(DataError, match="exceeds the 1000 train tokens in toy; use at most 1000"):
        train_sequences(tokens, D=1001, T=10, name="toy")
    with pytest.raises(DataError, match="--train_tokens 10"):
        train_sequences(tokens, D=10, T=10)


def test_val_windows_cover_the_first_max_tokens():
    tokens = np.arange(1000, dtype=np.uint16)
    v = val_windows(tokens, T=10, max_tokens=55)
    assert v.shape == (5, 11) and v[-1, -1] == 50 and v.dtype == np.int64
    assert val_windows(tokens, T=10, max_tokens=None).shape == (99, 11)
    with pytest.raises(DataError):
        val_windows(tokens[:5], T=10, max_tokens=None)


# ----------------------------------------------------------------------------------------------
# the Shakespeare recipe (needs the shared corpus, which is never committed)

@pytest.mark.skipif(not os.path.exists(SHAKESPEARE), reason="no shared Shakespeare corpus")
def test_shakespeare_holds_out_whole_plays_not_poems(tmp_path):
    ds = load_dataset(prepare.prepare("shakespeare", "byte", str(tmp_path / "sb")))
    meta = ds.meta
    works = dict(prepare.load_shakespeare(SHAKESPEARE)[0])
    assert meta["documents"] == len(works) == 42
    assert not set(meta["val_documents"]) & set(prepare.GENRES["poem"])
    genres = {g for g, names in prepare.GENRES.items() for n in meta["val_documents"] if n in names}
    assert {"comedy", "tragedy", "history"} <= genres
    val_docs = [bytes(d).decode() for d in _documents(ds.val, 256)]
    assert val_docs == [works[n] for n in meta["val_documents"]]  # whole works, intact
    assert all(doc.split("\n")[2] == "by William Shakespeare" or
               doc.split("\n")[1] == "by William Shakespeare" for doc in val_docs)
    assert 0.05 <= len(ds.val) / (len(ds.train) + len(ds.val)) <= 0.15
    assert sorted(meta["val_documents"] + meta["train_documents"]) == sorted(works)
