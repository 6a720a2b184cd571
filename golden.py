"""
Golden outputs: the numbers a refactor must not change. Reruns a fixed small train.py run, a 2-member
ensemble (its per-k losses, also --batched), a sequence-level distilled student and the smoke sweep,
and compares the final weights (a SHA-256 of every tensor) and losses with golden.json bit for bit.

    python golden.py            # rerun and compare (exit 1 naming every difference); ~2-3 min on 1 core
    python golden.py --record   # write golden.json (commit it alone, saying why the numbers changed)

Wall times and hardware names differ by nature and are not compared. Floating point is only
reproducible on the same kind of machine with the same torch: golden.json names the machine, torch and
thread count it was recorded with, and the check runs on one thread.
"""
import argparse
import contextlib
import hashlib
import io
import json
import os
import platform
import sys
import tempfile

import torch

REPO = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(REPO, "golden.json")


def weights_hash(run_dir):
    """SHA-256 over the run's final weights: every tensor's name and bytes, in name order."""
    ckpt = torch.load(os.path.join(run_dir, "ckpt.pt"), map_location="cpu", weights_only=True)
    h = hashlib.sha256()
    for name, t in sorted(ckpt["model"].items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def run_summary(run_dir):
    with open(os.path.join(run_dir, "summary.json")) as f:
        s = json.load(f)
    return {"weights": weights_hash(run_dir), "val_loss": s["val_loss"], "train_loss": s["train_loss"],
            "history": [[h["step"], h["train_loss"], h["val_loss"], h["param_norm"]] for h in s["history"]]}


def quietly(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def outputs(tmp):
    """Run the fixed pipeline in tmp; a dict of everything compared."""
    from data import synthetic
    import distill
    import ensemble
    import sweep
    import train

    ds = synthetic.generate(os.path.join(tmp, "data"), V=64, k=1, s=8, alpha=0.5, n_train=40_000,
                            n_val=4_096, seed=3)
    common = ["--dataset", ds, "--model", "tiny-120k", "--seq_len", "32", "--batch_size", "8",
              "--train_tokens", "8192", "--epochs", "2", "--lr", "1e-2", "--device", "cpu", "--evals", "3"]
    out = {}
    quietly(train.main, common + ["--wd", "0.8", "--out_dir", os.path.join(tmp, "single")])
    out["train"] = run_summary(os.path.join(tmp, "single"))

    for name, extra in (("ensemble", []), ("ensemble_batched", ["--batched"])):
        d = os.path.join(tmp, name)
        quietly(ensemble.main, common + ["--k", "2", "--wd", "0.4", "--out_dir", d] + extra)
        with open(os.path.join(d, "ensemble.json")) as f:
            e = json.load(f)
        out[name] = {"losses": e["losses"], "losses_first": e["losses_first"],
                     "members": [run_summary(os.path.join(d, f"member_{i}")) for i in range(2)]}

    student = os.path.join(tmp, "student")
    quietly(distill.main, ["--teacher", os.path.join(tmp, "ensemble"), "--model", "tiny-120k", "--epochs", "2",
                           "--lr", "1e-2", "--batch_size", "8", "--wd", "0.1", "--mix_weight", "0.5",
                           "--corpus_tokens", "4096", "--gen_batch", "16", "--device", "cpu", "--evals", "2",
                           "--out_dir", student])
    out["distill"] = run_summary(student)

    results = os.path.join(tmp, "smoke")
    quietly(sweep.main, ["--preset", "smoke", "--runs_dir", os.path.join(tmp, "runs"), "--out", results])
    with open(os.path.join(results, "fits.json")) as f:
        out["smoke_fits"] = json.load(f)
    with open(os.path.join(results, "points.jsonl")) as f:
        pts = [json.loads(line) for line in f]
    out["smoke_points"] = sorted([p.get("recipe"), p.get("model"), p.get("D"), p.get("epochs"), p.get("wd"),
                                  p.get("seed"), p.get("K"), p.get("val_loss", p.get("losses"))] for p in pts)
    return out


def differences(a, b, path=""):
    """Every leaf where a and b differ, as 'path: a vs b'."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str)
                for d in differences(a.get(k, "<missing>"), b.get(k, "<missing>"), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path[1:]}: {a!r} vs golden {b!r}"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0])
    ap.add_argument("--record", action="store_true", help="write golden.json from this run")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    os.chdir(REPO)     # the sweep's dataset names resolve under data/
    machine = {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
               "torch": torch.__version__, "threads": 1}
    with tempfile.TemporaryDirectory() as tmp:
        # JSON round trip: tuples as lists, keys as strings; the temporary folder's name varies
        got = json.loads(json.dumps(outputs(tmp)).replace(tmp, "<tmp>"))
    if args.record:
        with open(GOLDEN + ".tmp", "w") as f:
            json.dump({"recorded_on": machine, "outputs": got}, f, indent=1)
        os.replace(GOLDEN + ".tmp", GOLDEN)
        print(f"recorded {GOLDEN}")
        return 0
    if not os.path.exists(GOLDEN):
        print("error: no golden.json; record one with: python golden.py --record", file=sys.stderr)
        return 2
    with open(GOLDEN) as f:
        golden = json.load(f)
    diff = differences(got, golden["outputs"])
    if diff:
        print(f"{len(diff)} golden output(s) changed (recorded on {golden['recorded_on']}, "
              f"this is {machine}):\n  " + "\n  ".join(diff[:40]))
        return 1
    print(f"golden outputs identical ({sum(1 for _ in _leaves(golden['outputs']))} values)")
    return 0


def _leaves(x):
    if isinstance(x, dict):
        for v in x.values():
            yield from _leaves(v)
    elif isinstance(x, list):
        for v in x:
            yield from _leaves(v)
    else:
        yield x


if __name__ == "__main__":
    sys.exit(main())
