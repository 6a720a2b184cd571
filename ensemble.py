"""
Ensembles (paper section 6): train K members that differ only in init seed and data order, then
score the ensemble of k members for every k = 1..K by averaging their logits (model.ensemble_log_probs),
averaged over every subset of k members.

    python ensemble.py --k 8 --out_dir out/ens --model tiny-530k --epochs 8 --wd 0.4   # + any train.py flag
    torchrun --nproc_per_node 4 ensemble.py --k 8 --out_dir out/ens ...   # 4 members at a time, one per rank
    python ensemble.py --k 8 --batched --out_dir out/ens ...      # all 8 as one batched model (one GPU)
    python ensemble.py --eval --members out/ens                  # or out/ens/member_* or 'runs/*/m*'
    python ensemble.py --eval --out_dir out/ens --combine both   # averaged logits and averaged probabilities
    python ensemble.py --sample --members out/ens --tokens 200   # = python sample.py out/ens/member_* ...

Training: member i is an ordinary train.py run in DIR/member_i with seed = --seed + i and
data_seed = --data_seed + i (--vary seed|data keeps the other one fixed), recipe label "member"
unless --recipe says otherwise. A rerun skips finished members (summary.json exists) and resumes an
interrupted one from its checkpoint, so `--k 8` after `--k 4` trains only members 4..7. Under
torchrun member i trains on rank i % P, alone (no gradient sync): an ensemble is embarrassingly
parallel. Rank 0 then evaluates. With --batched the members train together in one process as one
stacked model (batched.py): the same runs, written to the same folders, at a multiple of the
member-tokens/s where one small model cannot fill a GPU (bench.py measures it).

Evaluation: one streaming pass over the val windows; per batch every member runs once and every
subset of members is combined by model.ensemble_log_probs (all C(K, k) subsets of each size k, or 64
random ones where there are more):
    logits rule  log p = log_softmax(mean_i logits_i)            (the paper's; the default)
    probs rule   log p = logsumexp_i log_softmax(logits_i) - log k
"losses"[k] is the mean over the k-subsets (a smooth curve in k: which members come first no longer
matters), "losses_first"[k] the first k members alone.
Members ordered by name (member_2 before member_10) must share tokenizer, vocab, dataset, seq_len
and val windows. Writes DIR/ensemble.json (fit.py reads it; "members" are relative to its folder):
    {"kind": "ensemble", "recipe", "N", "N_nonembed", "D", "model", "epochs", "lr", "wd", "dataset",
     "tokenizer", "vocab", "K", "combine", "losses": {"1": .., "K": ..}, "losses_first", "subset_losses",
     "losses_probs" (if computed),
     "member_losses", "member_mean", "members", "eval_s", "eval_s_one", "hardware", ...}
"""
import argparse
import dataclasses
import datetime
import itertools
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

import data
import sample
import train
from batched import train_members_batched
from members import find_members
from model import chunked_logits, ensemble_log_probs
from train import ConfigError, TrainConfig, check_same_config, flag

# Flags that change how a run executes but not what it learns: a finished member trained with other
# values of these is still the same member (the same list train.py's --resume check ignores).
RUN_ONLY = train.RUN_ONLY


# ----------------------------------------------------------------------------
# Training: K ordinary train.py runs (or, with --batched, one stacked model)

def member_config(cfg, i, vary="both"):
    """The TrainConfig of member i: its own folder, seeds shifted by i. resume=True always: train()
    starts fresh when there is no checkpoint and continues one when an earlier run was cut off."""
    return dataclasses.replace(
        cfg, out_dir=os.path.join(cfg.out_dir, f"member_{i}"), resume=True,
        seed=cfg.seed + i if vary in ("both", "seed") else cfg.seed,
        data_seed=cfg.data_seed + i if vary in ("both", "data") else cfg.data_seed)


def is_finished(mcfg):
    """True if mcfg.out_dir holds a finished run of this very config; a finished run of different
    flags is an error, or one ensemble would silently mix two recipes."""
    if not os.path.exists(os.path.join(mcfg.out_dir, "summary.json")):
        return False
    with open(os.path.join(mcfg.out_dir, "config.json")) as f:
        old = json.load(f)
    # dtype is not compared: config.json files written before it kept "auto" apart held the resolved one
    check_same_config(old, mcfg, ignore=(*RUN_ONLY, "dtype"))
    return True


def train_members(cfg, K, vary="both", rank=0, world=1, local_rank=0, batched=False, quiet=False):
    """Train members 0..K-1 into cfg.out_dir/member_i, skipping finished ones; returns their folders.
    This rank's members (i % world == rank) train one after another as ordinary train.py runs, or with
    `batched` all of them together as one stacked model in this one process (batched.py)."""
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    cfgs = [member_config(cfg, i, vary) for i in range(K)]
    finished = [is_finished(c) for c in cfgs]   # every rank checks all: a bad rerun fails at once
    for i in range(rank, K, world):
        if finished[i]:
            say(f"member_{i}: finished already, skipped ({cfgs[i].out_dir}/summary.json)")
    todo = [i for i in range(rank, K, world) if not finished[i]]
    if batched:
        train_members_batched({i: cfgs[i] for i in todo}, local_rank, quiet)
        return [c.out_dir for c in cfgs]
    for i in todo:
        t0 = time.time()
        # rank=0, world=1: each member is a plain single-process run on this rank's own device
        s = train.train(cfgs[i], rank=0, world=1, local_rank=local_rank, summary_extra={"member": i},
                        quiet=quiet or rank != 0)
        say(f"member_{i} (rank {rank}): val loss {s['val_loss']:.4f} in {time.time() - t0:.0f}s")
    return [c.out_dir for c in cfgs]


# ----------------------------------------------------------------------------
# Evaluation: one streaming pass, every k at once

def member_subsets(K, max_per_k=64, seed=0):
    """For k = 1..K, the sets of k members the ensemble curve averages over: all C(K, k) of them, or
    max_per_k distinct ones drawn at random (fixed seed) when there are more."""
    rng = np.random.default_rng(seed)
    out = {}
    for k in range(1, K + 1):
        if math.comb(K, k) <= max_per_k:
            out[k] = list(itertools.combinations(range(K), k))
        else:
            picks = set()
            while len(picks) < max_per_k:
                picks.add(tuple(sorted(rng.choice(K, k, replace=False).tolist())))
            out[k] = sorted(picks)
    return out


@torch.no_grad()
def ensemble_losses(models, tokens, T, n, batch, device, dtype, skip=0, rules=("logits",), max_per_k=64):
    """Mean val loss of each member, of the first-k ensemble and of every member subset (see
    member_subsets) under each rule, over the first n windows of T+1 tokens of `tokens` (as
    data.val_windows cuts them). Windows are gathered per batch from the (memory-mapped) tokens, so
    memory does not grow with the val set.
    Returns {"member": [K losses], rule: [first-k losses, index k-1], rule + "_subsets": {subset: loss}}.
    Why subsets: the loss of the first k members swings with which members happen to come first; the
    mean over all k-subsets is the expected loss of a k-ensemble, a smooth curve to fit in k."""
    K = len(models)
    for m in models:
        m.eval()
    groups = member_subsets(K, max_per_k)                          # {k: the k-subsets scored}
    subsets = [S for k, group in groups.items() if k > 1 for S in group]
    firsts = [tuple(range(k)) for k in range(2, K + 1)]
    scored = list(dict.fromkeys(firsts + subsets))                 # each combination scored once
    sums = {"member": torch.zeros(K, dtype=torch.float64, device=device)}
    for rule in rules:
        sums[rule] = torch.zeros(len(scored), dtype=torch.float64, device=device)
    windows = data.Windows(tokens, n, T)
    count = 0
    for i in range(0, n, batch):
        w = train.to_device(windows.get(np.arange(i, min(i + batch, n))), device)       # (B, T+1)
        x, y = w[:, :-1], w[:, 1:]                                                        # (B, T)
        autocast = lambda: torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
        with autocast():
            hs = [m(x, hidden=True)[0] for m in models]                                   # K x (B, T, C)

        def score(z, c):
            """Loss sums of this chunk of positions: [each member alone (K), then every scored subset
            under each rule]. z (K, B, t, V) fp32 member logits."""
            yc, V = y[:, c].reshape(-1), z.size(-1)                                       # (B t,)
            ce = lambda logits: F.cross_entropy(logits.reshape(-1, V), yc, reduction="sum")
            # the same call on the same chunks as GPT.forward's loss, so k = 1 equals train.evaluate exactly
            out = [ce(z[j]) for j in range(K)]
            for rule in rules:
                out += [ce(ensemble_log_probs(z[list(S)], rule)) for S in scored]          # CE of log-probs
            return torch.stack(out)

        with autocast():   # the head runs under autocast as inside GPT.forward
            got = chunked_logits(score, hs, [m.lm_head.weight for m in models], start=skip, copies=K + 3).double()
        sums["member"] += got[:K]
        for r, rule in enumerate(rules):
            sums[rule] += got[K + r * len(scored):K + (r + 1) * len(scored)]
        count += y[:, skip:].numel()
    member = (sums["member"] / count).tolist()
    out = {"member": member}
    for rule in rules:
        loss = dict(zip(scored, (sums[rule] / count).tolist()))
        loss.update({(j,): l for j, l in enumerate(member)})       # a one-member "ensemble" is the member
        out[rule] = [loss[tuple(range(k))] for k in range(1, K + 1)]
        out[rule + "_subsets"] = {S: loss[S] for group in groups.values() for S in group}
    return out


def subset_curve(subset_losses, K):
    """{subset: loss} -> [mean loss over the k-subsets, k = 1..K]."""
    return [float(np.mean([l for S, l in subset_losses.items() if len(S) == k])) for k in range(1, K + 1)]


def run_micro_batch(path, config):
    """The micro-batch a run trained with (what --micro_batch auto chose is in its config.json): a batch
    size its device is known to hold."""
    fixed = train.fixed_micro_batch(config.get("micro_batch"))
    if fixed:
        return fixed
    try:
        with open(os.path.join(path, "config.json")) as f:
            return int(json.load(f)["micro_batch"])
    except (OSError, KeyError, ValueError, TypeError):
        return config["batch_size"]


def load_members(paths, device):
    """(models, summaries, val-set description) for member run folders; refuses members whose
    predictions are not of the same tokens."""
    models, summaries, sets = [], [], []
    datasets = {}
    for p in paths:
        if not os.path.exists(os.path.join(p, "summary.json")):
            raise ConfigError(f"{p} has no summary.json: not a finished run (rerun ensemble.py to finish it, "
                              f"or leave it out)")
        with open(os.path.join(p, "summary.json")) as f:
            summaries.append(json.load(f))
        model, ckpt = train.load_model(p, device)
        models.append(model)
        c = ckpt["config"]
        if c["dataset"] not in datasets:
            datasets[c["dataset"]] = data.load_dataset(c["dataset"])
        ds = datasets[c["dataset"]]
        T = c["seq_len"]
        # the same windows data.val_windows cuts: the first min(len, val_tokens) val tokens
        m = min(len(ds.val), c["val_tokens"] or len(ds.val))
        sets.append({"tokenizer": ds.meta["tokenizer"], "vocab": ds.meta["vocab_size"], "dataset": ds.path,
                     "seq_len": T, "val windows": (m - 1) // T, "eval_skip": int(ds.meta.get("eval_skip", 0)),
                     "_ds": ds, "_batch": run_micro_batch(p, c)})
    for key in ("tokenizer", "vocab", "dataset", "seq_len", "val windows", "eval_skip"):
        for p, s in zip(paths[1:], sets[1:]):
            if s[key] != sets[0][key]:
                raise ConfigError(f"members do not fit together: {key} is {sets[0][key]} in {paths[0]} "
                                  f"but {s[key]} in {p}; ensemble only runs scored on the same val tokens")
    if sets[0]["val windows"] < 1:
        raise data.DataError(f"the val split of {paths[0]} has no window of {sets[0]['seq_len'] + 1} tokens")
    return models, summaries, sets[0]


def default_out(paths):
    """ensemble.json in the members' common folder, unless it holds the evaluation of a different set
    of members: that is never replaced."""
    out = os.path.join(os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths]), "ensemble.json")
    if os.path.exists(out):
        with open(out) as f:
            old = [os.path.normpath(os.path.join(os.path.dirname(out), m)) for m in json.load(f).get("members", [])]
        if old != [os.path.normpath(os.path.abspath(p)) for p in paths]:
            raise ConfigError(f"{out} holds the evaluation of other members ({len(old)}); "
                              f"pass --out FILE to write this one elsewhere")
    return out


def evaluate_ensemble(paths, device_flag="auto", dtype_flag="auto", combine="logits", batch=0, out=None,
                      local_rank=0, quiet=False):
    """Score the ensembles of the first k of `paths` (k = 1..K); write and return ensemble.json (at
    `out`, default: next to the members)."""
    out = default_out(paths) if out is None else out
    device, dtype, _ = train.resolve_device(TrainConfig(device=device_flag, dtype=dtype_flag), local_rank)
    models, summaries, vs = load_members(paths, device)
    K = len(models)
    rules = ("logits", "probs") if combine == "both" else (combine,)
    batch = batch or vs["_batch"]
    args = (vs["_ds"].val, vs["seq_len"], vs["val windows"], batch, device, dtype, vs["eval_skip"])

    t0 = time.time()
    res = ensemble_losses(models, *args, rules=rules)
    eval_s = time.time() - t0
    # the cost of K members against one: the same pass with member 0 alone, run second so it is warm
    eval_s_one = eval_s
    if K > 1:
        t0 = time.time()
        ensemble_losses(models[:1], *args, rules=rules)
        eval_s_one = time.time() - t0

    def common(key):   # a field all members share, else None (fit.py then skips the point)
        vals = {json.dumps(s.get(key)) for s in summaries}
        return summaries[0].get(key) if len(vals) == 1 else None
    mixed = [k for k in ("recipe", "model", "N", "D", "epochs", "lr", "wd") if common(k) is None]
    main_rule = "logits" if "logits" in rules else "probs"
    result = {
        "kind": "ensemble", "recipe": common("recipe"), "N": common("N"), "N_nonembed": common("N_nonembed"),
        "D": common("D"), "model": common("model"), "epochs": common("epochs"), "lr": common("lr"),
        "wd": common("wd"), "batch_size": common("batch_size"), "seq_len": vs["seq_len"],
        "dataset": common("dataset"), "tokenizer": vs["tokenizer"], "vocab": vs["vocab"], "K": K,
        "combine": main_rule, "n_members": K,
        # the loss of a k-ensemble averaged over every k-subset of the members (what fit.py fits in k),
        # and that of the first k members, the subsets one by one, and the probability rule's versions
        "losses": {str(k + 1): l for k, l in enumerate(subset_curve(res[main_rule + "_subsets"], K))},
        "losses_first": {str(k + 1): l for k, l in enumerate(res[main_rule])},
        "subset_losses": {",".join(map(str, S)): l for S, l in res[main_rule + "_subsets"].items()},
        **({"losses_probs": {str(k + 1): l for k, l in enumerate(subset_curve(res["probs_subsets"], K))},
            "losses_probs_first": {str(k + 1): l for k, l in enumerate(res["probs"])}} if "probs" in rules else {}),
        "member_losses": res["member"], "member_mean": sum(res["member"]) / K, "member_best": min(res["member"]),
        "members": [os.path.relpath(os.path.abspath(p), os.path.dirname(os.path.abspath(out))) for p in paths],
        "seeds": [s.get("seed") for s in summaries], "data_seeds": [s.get("data_seed") for s in summaries],
        "val_tokens": vs["val windows"] * (vs["seq_len"] - vs["eval_skip"]),
        "eval_s": eval_s, "eval_s_one": eval_s_one, "eval_batch": batch,
        "train_wall_s": sum(s.get("wall_s", 0) for s in summaries),
        "hardware": train.hardware_name(device),
        **({"mixed": mixed} if mixed else {}),
        **({"limits": summaries[0]["limits"]} if "limits" in summaries[0] and common("D") else {}),
    }
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)   # --out may name a new folder
    train.atomic_write_json(out, result)
    if not quiet:
        if mixed:
            print(f"note: members differ in {', '.join(mixed)}; ensemble.json records those as null")
        print(f"{'k':>3} " + " ".join(f"{r + ' rule':>12}" for r in rules))
        for k in range(K):
            print(f"{k + 1:>3} " + " ".join(f"{res[r][k]:>12.4f}" for r in rules))
        best = int(np.argmin(res["member"]))
        print(f"members: {' '.join(f'{l:.4f}' for l in res['member'])} | mean {result['member_mean']:.4f}, "
              f"best {res['member'][best]:.4f} ({paths[best]})")
        print(f"ensemble of {K} ({main_rule} rule): {res[main_rule][-1]:.4f}; "
              f"best member minus ensemble = {res['member'][best] - res[main_rule][-1]:+.4f} nats; "
              f"mean over k-subsets, k = 1..{K}: "
              + " ".join(f"{l:.4f}" for l in result["losses"].values()))
        print(f"eval: {eval_s:.2f}s for {K} members, {eval_s_one:.2f}s for one ({eval_s / eval_s_one:.2f}x) "
              f"-> {out}")
    return result


# ----------------------------------------------------------------------------
# Command line

@dataclasses.dataclass
class EnsembleConfig:
    """ensemble.py's own options, each default once beside its flag's help and range (the members'
    are TrainConfig's)."""
    k: int = flag(0, "number of members to train (with --eval: use the first k)", ">= 0")
    vary: str = flag("both", "what differs between members: both (init seed and data order, the paper's) | "
                             "seed | data")
    combine: str = flag("logits", "logits (average the logits, the paper's) | probs (average the probabilities) | "
                                  "both (report both from one pass)")
    eval_batch: int = flag(0, "val windows per batch (0 = the members' micro-batch)", ">= 0")
    out: str = flag("", "where to write ensemble.json (default: next to the members)")
    batched: bool = flag(False, "train the members together as one batched model (stacked weights, vmap), in "
                                "one process: for GPUs (on CPU it is slower; bench.py measures both)")


def build_parser():
    p = train.OneLineParser(description=__doc__.strip().split("\n\n")[0],
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--eval", action="store_true", help="only evaluate --members (or the members in --out_dir)")
    p.add_argument("--members", nargs="+", default=None, help="run folders, globs, or an ensemble folder")
    p.add_argument("--sample", action="store_true", help="sample text from --members: see sample.py for flags")
    train.add_config_flags(p, config=EnsembleConfig)
    train.add_config_flags(p, skip=("resume",))   # members always resume: a rerun finishes the ensemble
    p.set_defaults(recipe="member", out_dir="out/ensemble")
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--sample" in argv:
        # sample.py already samples from an ensemble's averaged logits (KV cache, --combine probs too);
        # here we only expand --members and hand the remaining flags over to it
        sp = argparse.ArgumentParser(add_help=False)
        sp.add_argument("--sample", action="store_true")
        sp.add_argument("--members", nargs="+", required=True)
        args, rest = sp.parse_known_args(argv)
        try:
            members = find_members(args.members)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        return sample.main(members + rest)

    p = build_parser()
    args = p.parse_args(argv)
    fields = [f.name for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)]
    cfg = TrainConfig(**{name: getattr(args, name) for name in fields})
    o = EnsembleConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(EnsembleConfig)})

    def body():
        if o.vary not in ("both", "seed", "data") or o.combine not in ("logits", "probs", "both"):
            raise ConfigError("--vary must be both, seed or data; --combine logits, probs or both")
        if args.eval:
            # members keep the settings they were trained with; a training flag here would do nothing
            ignored = [name for name in fields if name not in ("device", "dtype", "out_dir")
                       and getattr(args, name) != p.get_default(name)]
            if ignored:
                raise ConfigError(f"--{ignored[0]} does not apply to --eval: members keep their own settings")
            members = find_members(args.members or [cfg.out_dir])
            if o.k:
                if o.k > len(members):
                    raise ConfigError(f"--k {o.k} but only {len(members)} members found")
                members = members[:o.k]
            evaluate_ensemble(members, cfg.device, cfg.dtype, combine=o.combine, batch=o.eval_batch,
                              out=o.out or None)
            return
        if o.k < 1:
            raise ConfigError("--k (the number of members) must be >= 1 to train; use --eval to only evaluate")
        if args.members:
            raise ConfigError("--members is for --eval or --sample; to train, give --k and --out_dir")
        train.validate(cfg)
        rank, world, local_rank = train.setup_distributed(cfg.device)
        # Ranks finish at different times (K % P != 0, or a resumed member), possibly hours apart; the
        # default process group would time out waiting, so the barrier uses a gloo group with a long one.
        waiter = dist.new_group(backend="gloo", timeout=datetime.timedelta(days=30)) if world > 1 else None
        if o.batched and world > 1:
            raise ConfigError("--batched trains all members in one process; run it without torchrun")
        members = train_members(cfg, o.k, o.vary, rank, world, local_rank, batched=o.batched)
        if world > 1:
            dist.barrier(group=waiter)
        if rank == 0:
            evaluate_ensemble(members, cfg.device, cfg.dtype, combine=o.combine, batch=o.eval_batch,
                              out=o.out or os.path.join(cfg.out_dir, "ensemble.json"), local_rank=local_rank)
    train.run_cli(body)


if __name__ == "__main__":
    main()
