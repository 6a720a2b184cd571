"""
Does bf16 autocast learn what fp32 learns? Train the same miniature runs in both dtypes (3 seeds x 2
sizes) and compare the mean val losses against the seed noise: bf16 passes at a size when
|mean_bf16 - mean_fp32| < 2 pooled seed sds. A GPU trains in bf16 by default; this is the check that
its numbers can sit beside the CPU's fp32 ones.

    python dtype_check.py                          # byte Shakespeare if prepared, else the synthetic default
    python dtype_check.py --models tiny-67k,tiny-120k --seeds 3 --train_tokens 65536 --out_dir out/dtype

On a CPU without native bf16 (oneDNN reports none) bf16 autocast is emulated and slow: expect minutes.
"""
import argparse
import json
import os

import numpy as np

import data
import train
from train import TrainConfig


def main(argv=None):
    ap = train.OneLineParser(description=__doc__.strip().split("\n\n")[0])
    ap.add_argument("--models", default="tiny-67k,tiny-120k")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--dataset", default=None, help="default: shakespeare_byte if prepared, else synthetic")
    ap.add_argument("--train_tokens", type=int, default=65_536)
    ap.add_argument("--epochs", type=float, default=4)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out_dir", default="out/dtype_check")
    args = ap.parse_args(argv)
    dataset = args.dataset
    if dataset is None:
        try:
            data.load_dataset("shakespeare_byte")
            dataset = "shakespeare_byte"
        except data.DataError:
            dataset = "synthetic"
    loss = {}
    for model in args.models.split(","):
        for dtype in ("float32", "bfloat16"):
            for seed in range(args.seeds):
                cfg = TrainConfig(dataset=dataset, model=model, train_tokens=args.train_tokens, seq_len=128,
                                  batch_size=8, epochs=args.epochs, lr=3e-3, wd=1.6, seed=seed, data_seed=seed,
                                  val_tokens=65_536, evals=1, dtype=dtype, compile="false", device=args.device,
                                  resume=True, out_dir=os.path.join(args.out_dir, f"{model}_{dtype}_s{seed}"))
                s = train.train(cfg, quiet=True)
                loss.setdefault((model, dtype), []).append(s["val_loss"])
                print(f"{model} {dtype} seed {seed}: val {s['val_loss']:.4f} ({s['wall_s']:.0f}s, {s['hardware']})",
                      flush=True)
    print(f"\n| model | fp32 mean ± sd | bf16 mean ± sd | difference | pooled seed sd | within 2 sd |")
    print("|---|---|---|---|---|---|")
    rows = []
    for model in args.models.split(","):
        a, b = np.array(loss[(model, "float32")]), np.array(loss[(model, "bfloat16")])
        pooled = float(np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2))
        diff = float(b.mean() - a.mean())
        rows.append(dict(model=model, fp32=a.tolist(), bf16=b.tolist(), diff=diff, pooled_sd=pooled,
                         ok=abs(diff) < 2 * pooled))
        print(f"| {model} | {a.mean():.4f} ± {a.std(ddof=1):.4f} | {b.mean():.4f} ± {b.std(ddof=1):.4f} | "
              f"{diff:+.4f} | {pooled:.4f} | {'yes' if rows[-1]['ok'] else 'NO'} |")
    os.makedirs(args.out_dir, exist_ok=True)
    train.atomic_write_json(os.path.join(args.out_dir, "dtype_check.json"), dict(dataset=dataset, rows=rows))


if __name__ == "__main__":
    train.run_cli(main)
