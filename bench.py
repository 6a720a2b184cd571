"""
Benchmark the real training step of train.py (same model, loss, optimizer and train_step, not a
copy) and print a table: tokens/s, achieved TFLOP/s, MFU against the peak bf16 FLOPS of known GPUs
(none for CPUs or unknown devices), peak memory, compile time; forward-only (inference) tokens/s;
sampling tokens/s with the KV cache. Then an ensemble of K members trained as one stacked model
(ensemble.py --batched, batched.py: stacked weights, vmap) against training them one after another, in
member-tokens/s (tokens of all members per second).

    python bench.py                                   # tiny presets on whatever device is here
    python bench.py --models 150m,300m --vocab 128256 --seq_len 4096 --batch 8 --compile true
    python bench.py --attn flex --doc_mask            # FlexAttention, document-causal (EOT every 64 tokens)
    python bench.py --models '' --ensemble tiny-950k,tiny-120k --ensemble_k 8   # only the ensemble table

FlexAttention has no backward on CPU (torch 2.13): there --attn flex times the forward pass only.

FLOPs per token = 6 x (params minus input embedding) + 6 x layers x d x T (the causal half of attention's 12 x layers x d x T).
"""
import argparse
import time
import warnings

import torch

from batched import StackedGPT, member_losses
from model import GPT, PRESETS, config_from_preset, generate
from train import (ConfigError, OneLineParser, TrainConfig, compile_model, dtype_name, hardware_name, make_optimizer,
                   peak_flops, resolve_device, train_step, validate)


# The batched-ensemble table is about many small members sharing a device: above these it runs at
# ENSEMBLE_SMALL instead of the --vocab / --seq_len given for the main table.
ENSEMBLE_MAX = {"vocab": 4096, "seq_len": 1024}
ENSEMBLE_SMALL = {"vocab": 257, "seq_len": 256, "batch": 32}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_model(name, args):
    """The preset with the chosen attention; the last token id of the vocabulary is the EOT."""
    return GPT(config_from_preset(name, args.vocab, args.seq_len, attn=args.attn, doc_mask=args.doc_mask,
                                  eot_token=args.vocab - 1))


def bench_forward(fwd, x, args, device, dtype):
    """Forward-only tokens/s (no_grad), e.g. evaluation; the one number flex has on a CPU."""
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        for _ in range(args.warmup):
            fwd(x)
        sync(device)
        t0 = time.time()
        for _ in range(args.steps):
            fwd(x)
        sync(device)
    return x.numel() * args.steps / (time.time() - t0)


def bench_train(name, args, device, dtype, use_compile):
    torch.manual_seed(0)
    model = make_model(name, args).to(device)
    cfg = TrainConfig(lr=1e-3, wd=0.1)
    opt = make_optimizer(model, cfg, device)
    fwd = compile_model(model) if use_compile else model
    x = torch.randint(0, args.vocab, (args.batch, args.seq_len + 1), device=device)
    if args.doc_mask:   # packed documents of 64 tokens, so the document mask is not trivial
        x[:, 63::64] = args.vocab - 1
    batches = lambda: [(x[:, :-1], x[:, 1:])]                                     # one micro-batch
    fwd_tok_s = bench_forward(fwd, x[:, :-1], args, device, dtype)
    if args.attn == "flex" and device.type == "cpu":                              # no CPU backward
        return dict(model=name, params=model.num_params(), tok_s=None, fwd_tok_s=fwd_tok_s)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.time()
    for _ in range(args.warmup):          # includes compilation
        train_step(fwd, model, opt, batches(), 1e-3, 1.0, 1, device, dtype)
    sync(device)
    compile_s = time.time() - t0
    t0 = time.time()
    for _ in range(args.steps):
        loss = train_step(fwd, model, opt, batches(), 1e-3, 1.0, 1, device, dtype)
    loss.item()                            # one host sync at the end
    sync(device)
    dt = (time.time() - t0) / args.steps
    tok_s = args.batch * args.seq_len / dt
    flops = model.flops_per_token(args.seq_len) * tok_s
    peak = peak_flops(device, dtype)
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return dict(model=name, params=model.num_params(), tok_s=tok_s, tflops=flops / 1e12,
                mfu=flops / peak if peak else None, mem_gib=mem, warmup_s=compile_s, fwd_tok_s=fwd_tok_s)


def time_steps(step, args, device):
    """Seconds per call of step() (which returns a loss on the device) after args.warmup calls."""
    for _ in range(args.warmup):          # includes compilation
        step()
    sync(device)
    t0 = time.time()
    for _ in range(args.steps):
        loss = step()
    loss.sum().item()                      # one host sync at the end
    sync(device)
    return (time.time() - t0) / args.steps


def bench_ensemble(name, args, device, dtype, use_compile):
    """Member-tokens/s of K members trained one after another (train_step on one member: every member
    has the same shape and cost) and as one stacked model (the same train_step on a batched.StackedGPT),
    same batch each."""
    K, cfg = args.ensemble_k, TrainConfig(lr=1e-3, wd=0.1)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    models = []
    for i in range(K):
        torch.manual_seed(i)
        models.append(make_model(name, args).to(device))
    x = torch.randint(0, args.vocab, (K, args.batch, args.seq_len + 1), device=device)
    if args.doc_mask:
        x[..., 63::64] = args.vocab - 1
    one = models[0]
    opt = make_optimizer(one, cfg, device)
    fwd = compile_model(one) if use_compile else one
    seq_s = time_steps(lambda: train_step(fwd, one, opt, [(x[0, :, :-1], x[0, :, 1:])], 1e-3, 1.0, 1, device, dtype),
                       args, device)
    stacked = StackedGPT(models, use_compile)
    del models, one, opt, fwd
    bopt = make_optimizer(stacked, cfg, device)
    bat_s = time_steps(lambda: train_step(stacked, stacked, bopt, [(x[..., :-1], x[..., 1:])], 1e-3, 1.0, 1, device,
                                          dtype, member_losses), args, device)
    tok = args.batch * args.seq_len
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return dict(model=name, K=K, seq=tok / seq_s, batched=K * tok / bat_s, mem_gib=mem)


@torch.no_grad()
def bench_sample(name, args, device):
    torch.manual_seed(0)
    model = make_model(name, args).to(device).eval()
    idx = torch.zeros(args.batch, 1, dtype=torch.long, device=device)
    n = min(args.seq_len - 1, 128)
    generate([model], idx, 8)
    sync(device)
    t0 = time.time()
    generate([model], idx, n)
    sync(device)
    return args.batch * n / (time.time() - t0)


RANGES = dict(vocab=">= 2", seq_len=">= 1", batch=">= 1", steps=">= 1", warmup=">= 0", ensemble_k=">= 1")


def main():
    p = OneLineParser(description=__doc__.strip().split("\n\n")[0], ranges=RANGES)
    p.add_argument("--models", default="tiny-120k,tiny-530k,tiny-950k,tiny-2.1m")
    p.add_argument("--vocab", type=int, default=257)
    p.add_argument("--seq_len", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--compile", default="auto")
    p.add_argument("--attn", default="sdpa", choices=["sdpa", "flex"], help="attention kernel")
    p.add_argument("--doc_mask", action="store_true", help="document-causal mask (an EOT every 64 tokens)")
    p.add_argument("--no_sample", action="store_true", help="skip the sampling benchmark")
    p.add_argument("--ensemble", default="tiny-950k",
                   help="presets for the batched-vs-sequential ensemble table ('' to skip it)")
    p.add_argument("--ensemble_k", type=int, default=8, help="members in the ensemble table")
    args = p.parse_args()
    cfg = TrainConfig(device=args.device, dtype=args.dtype, compile=args.compile)
    bad = [m for m in filter(None, (args.models + "," + args.ensemble).split(",")) if m not in PRESETS]
    if bad:
        p.error(f"unknown preset {bad[0]!r} (choose from {', '.join(PRESETS)})")
    try:
        validate(cfg)
    except ConfigError as e:
        p.error(str(e))
    device, dtype, use_compile = resolve_device(cfg)
    print(f"# {hardware_name(device)}, torch {torch.__version__}, {dtype_name(dtype)}, "
          f"compile {use_compile}, vocab {args.vocab}, T {args.seq_len}, batch {args.batch}, "
          f"attn {args.attn}{' + doc_mask' if args.doc_mask else ''}")
    if args.attn == "flex" and device.type == "cpu":
        print("# FlexAttention has no backward on CPU: training columns are '-', forward only")
        warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
    default_is_eager_fp32 = dtype == torch.float32 and not use_compile
    if args.models:
        print(f"| model | params | train tok/s | TFLOP/s | MFU | peak mem GiB | warmup+compile s | fwd tok/s | "
              f"sample tok/s | eager fp32 train tok/s | default / eager fp32 |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in filter(None, args.models.split(",")):
        r = bench_train(name, args, device, dtype, use_compile)
        s = "-" if args.no_sample else f"{bench_sample(name, args, device):,.0f}"
        if r["tok_s"] is None:
            train = "- | - | - | - | -"
            ref = "- | -"
        else:
            mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
            mem = f"{r['mem_gib']:.2f}" if r["mem_gib"] is not None else "-"
            train = f"{r['tok_s']:,.0f} | {r['tflops']:.3f} | {mfu} | {mem} | {r['warmup_s']:.1f}"
            # the plain reference every speed-up is against: the same step, fp32, not compiled
            if default_is_eager_fp32:
                ref = f"{r['tok_s']:,.0f} | 1.00x (the default is eager fp32)"
            else:
                eager = bench_train(name, args, device, torch.float32, False)["tok_s"]
                ref = f"{eager:,.0f} | {r['tok_s'] / eager:.2f}x"
        print(f"| {name} | {r['params'] / 1e6:.2f}M | {train} | {r['fwd_tok_s']:,.0f} | {s} | {ref} |", flush=True)
    if args.ensemble and args.attn == "flex":
        print("# the ensemble table needs --attn sdpa (FlexAttention does not run under vmap): skipped")
    elif args.ensemble:
        if args.vocab > ENSEMBLE_MAX["vocab"] or args.seq_len > ENSEMBLE_MAX["seq_len"]:
            # K members at the paper's V and T would measure memory, not batching (and not fit)
            print(f"\n# ensemble table at its own small shape (vocab {ENSEMBLE_SMALL['vocab']}, T "
                  f"{ENSEMBLE_SMALL['seq_len']}, batch {ENSEMBLE_SMALL['batch']}): --vocab {args.vocab} / "
                  f"--seq_len {args.seq_len} are paper-sized")
            args = argparse.Namespace(**{**vars(args), **ENSEMBLE_SMALL, "doc_mask": False})
        print(f"\n| ensemble K={args.ensemble_k} | sequential member-tok/s | batched member-tok/s | "
              f"batched / sequential | peak mem GiB |")
        print("|---|---|---|---|---|")
        for name in filter(None, args.ensemble.split(",")):
            r = bench_ensemble(name, args, device, dtype, use_compile)
            mem = f"{r['mem_gib']:.2f}" if r["mem_gib"] is not None else "-"
            print(f"| {name} | {r['seq']:,.0f} | {r['batched']:,.0f} | {r['batched'] / r['seq']:.2f}x | {mem} |",
                  flush=True)


if __name__ == "__main__":
    main()
