"""The course handout (course/README.md) cannot rot.

Every exercise's commands run end to end at the CI size (ICGPT_COURSE_SMALL=1: a few thousand tokens
of generated text, one or two epochs, the same commands and the same analysis as the full course) and
must write every quantity the handout quotes, and its figures; the handout's generated blocks must be
exactly what course/run.py renders from course/expected.json; and data.fetch must refuse a file
whose checksum differs, offline."""
import importlib.util
import json
import math
import os
import random
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def course_module():
    spec = importlib.util.spec_from_file_location("course_run", os.path.join(REPO, "course", "run.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


run = course_module()


def finite_numbers(v):
    """Every number inside v (dicts, lists) is finite; strings and booleans pass."""
    if isinstance(v, bool) or isinstance(v, str):
        return True
    if isinstance(v, (int, float)):
        return math.isfinite(v)
    if isinstance(v, dict):
        return all(finite_numbers(x) for x in v.values())
    if isinstance(v, list):
        return all(finite_numbers(x) for x in v)
    return v is None   # a fit's warning may be null


@pytest.fixture(scope="module")
def small_course(tmp_path_factory):
    if not os.path.exists(os.path.join(REPO, run.MINI_POINTS)):
        pytest.skip(f"{run.MINI_POINTS} (committed) is missing: exercises 3 and 6 read it")
    tmp = tmp_path_factory.mktemp("course")
    # generated text in place of Shakespeare: nothing from ../shared is needed
    rng = random.Random(0)
    words = "the king queen lord lady speak hath thou thee my good sir come go night day love death".split()
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 9))).capitalize() + "." +
             ("\n" if i % 7 == 6 else "") for i in range(3000)]
    (tmp / "text.txt").write_text("\n".join(lines) + "\n")
    env = {**os.environ, "ICGPT_COURSE_SMALL": "1", "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "data.prepare", str(tmp / "text.txt"), "--tokenizer", "byte",
                    "--out", str(tmp / "text_byte")], cwd=REPO, env=env, check=True, capture_output=True)
    out = tmp / "out"
    p = subprocess.run([sys.executable, "course/run.py", "--all", "--dataset", str(tmp / "text_byte"),
                        "--out", str(out)], cwd=REPO, env=env, capture_output=True, text=True)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    return out


def test_every_exercise_writes_what_the_handout_quotes(small_course):
    for n in range(1, 8):
        with open(small_course / f"ex{n}" / "results.json") as f:
            r = json.load(f)
        assert r["size"] == "small"
        for key in run.QUOTED[n]:
            assert key in r, f"exercise {n} no longer writes {key!r}, which the handout quotes"
            if r[key] is None:
                assert key in run.NULL_WHEN_SMALL.get(n, ()), f"exercise {n}: {key} is null"
            else:
                assert finite_numbers(r[key]), f"exercise {n}: {key} = {r[key]!r} is not finite"
        for fig in run.FIGURES[n]:
            path = small_course / f"ex{n}" / fig
            assert path.exists() and path.stat().st_size > 10_000, f"exercise {n} did not draw {fig}"
        # each command is timed: the handout's minutes come from these
        assert r["wall_s"] > 0 and all(c["wall_s"] >= 0 for c in r["commands"])
    # the commands the handout shows are the commands that ran (at the CI size)
    for n in range(1, 8):
        with open(small_course / f"ex{n}" / "results.json") as f:
            ran = [c["cmd"] for c in json.load(f)["commands"]]
        small = run.replace(run.SMALL, dataset=str(small_course.parent / "text_byte"))
        assert ran == [c.shell() for c in run.commands(n, small, str(small_course))]


def test_an_exercise_needs_its_prerequisite(tmp_path):
    env = {**os.environ, "ICGPT_COURSE_SMALL": "1"}
    p = subprocess.run([sys.executable, "course/run.py", "2", "--out", str(tmp_path)], cwd=REPO, env=env,
                       capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "exercise 1" in p.stderr


@pytest.mark.parametrize("argv", [["9"], ["--bogus"], []])
def test_bad_input_is_one_line_and_exit_2(argv):
    p = subprocess.run([sys.executable, "course/run.py", *argv], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.startswith("error:") and p.stderr.count("\n") == 1


def test_the_handout_quotes_expected_json_through_its_generated_blocks():
    exp = run.load(run.EXPECTED)
    assert sorted(exp["exercises"], key=int) == [str(n) for n in range(1, 8)], "record every exercise"
    for n, e in exp["exercises"].items():
        # exactly the quoted keys: the handout quotes nothing the code does not write
        assert sorted(e["results"]) == sorted(run.QUOTED[int(n)])
        assert e["machine"]["dtype"] == "float32" and e["wall_s"] > 0 and e["git"]
    with open(run.HANDOUT) as f:
        assert f.read() == run.render(exp), "the handout is stale: python course/run.py --render"


def test_fetch_refuses_a_file_whose_checksum_differs(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("First paragraph of a play.\n\nSecond paragraph, the tail that becomes val.\n")
    good = __import__("hashlib").sha256(text.read_bytes()).hexdigest()
    fetch = [sys.executable, "-m", "data.fetch", "--file", str(text), "--out", str(tmp_path / "ds")]
    bad = subprocess.run(fetch + ["--sha256", "0" * 64], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2 and "expected 000" in bad.stderr and not (tmp_path / "ds").exists()
    # without --sha256 the pinned tiny Shakespeare hash and size apply: this file is not it
    pinned = subprocess.run(fetch, cwd=REPO, capture_output=True, text=True)
    assert pinned.returncode == 2 and "1,115,394" in pinned.stderr
    ok = subprocess.run(fetch + ["--sha256", good], cwd=REPO, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    with open(tmp_path / "ds" / "meta.json") as f:
        meta = json.load(f)
    assert meta["source_sha256"] == good
    assert meta["download"] == dict(meta["download"], sha256=good, verified=True, expected_from="--sha256")
