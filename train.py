"""
Train one GPT in the paper's data-constrained regime: a fixed budget of D training tokens, repeated
for a given number of exact epochs, AdamW with decoupled weight decay, warmup + cosine to zero.

    python train.py                                   # tiny model on the generated Markov source
    python train.py --dataset shakespeare_byte --model tiny-950k --epochs 8 --wd 1.6
    torchrun --nproc_per_node 2 train.py --batch_size 32 ...   # DDP, same result as 1 process

Every run writes to --out_dir: config.json (resolved config), log.jsonl (one line per log/eval
step), ckpt.pt (model, optimizer, step, RNG; written atomically), summary.json (what fit.py,
ensemble.py and sweep.py read). ensemble.py and distill.py call train() below rather than copying it.

Weight decay convention (PyTorch AdamW == the paper's Levanter/optax): the update is
    p <- p - lr_t * (adam_step + wd * p)
so the decay per step is lr_t * wd, and over a run the weights shrink by about exp(-sum_t lr_t * wd).
That is why --wd 3.0 is sane here: at lr 1e-3 it removes 0.3% of a weight per step, the same
strength the paper tuned to (0.8-3.2). We print sum_t lr_t * wd ("decay budget") so runs of
different lengths can be compared: a miniature with 10x fewer steps needs ~10x the wd.
"""
import argparse
import contextlib
import dataclasses
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, asdict, field
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

import data
import init_from
from data import synthetic
from data import OneLineParser  # noqa: F401  (re-exported: the tools' shared parser)
from model import GPT, PRESETS, config_from_preset

# ----------------------------------------------------------------------------
# Every default in one place. Each field is also a command-line flag (--name value or --name=value)
# whose help line and allowed range are written beside its default.

def flag(default, help, range=None):
    """A TrainConfig field: its default, its --help line, and for a number the range it must lie in
    (the command line and train() refuse a value outside it in one line; NaN and inf never pass)."""
    return field(default=default, metadata={"help": help, "range": range})


@dataclass
class TrainConfig:
    # data
    dataset: str = flag("synthetic", "name under data/, a prepared folder, or a folder/glob of llm.c .bin shards")
    train_tokens: int = flag(250_000, "D: the first D tokens of the training split (0 = all of it)", ">= 0")
    seq_len: int = flag(256, "T: tokens per training sequence", ">= 1")
    val_tokens: int = flag(0, "evaluate on the first val_tokens of the val split (0 = all)", ">= 0")
    # model
    model: str = flag("tiny-530k", "a preset from model.PRESETS")
    attn: str = flag("sdpa", "attention kernel: sdpa | flex (FlexAttention; training needs CUDA)")
    doc_mask: bool = flag(False, "document-causal attention: no token sees across an end-of-text token")
    # optimization (paper section 4: AdamW b1 0.9 b2 0.95 eps 1e-8, clip 1.0, 1% warmup, cosine to 0)
    epochs: float = flag(8.0, "passes over the D tokens (fractions allowed)", "> 0")
    lr: float = flag(3e-3, "peak learning rate (warmup, then cosine to 0)", "> 0")
    wd: float = flag(0.1, "decoupled weight decay on Linear weights: p -= lr_t * wd * p", ">= 0")
    batch_size: int = flag(32, "sequences per optimizer step, global (all ranks, all micro-steps)", ">= 1")
    micro_batch: str = flag("auto", "sequences per rank per forward: N, or auto (CUDA: the largest that fits; CPU: all)")
    warmup: float = flag(0.01, "warmup as a fraction of steps (at least 1 step)", "[0, 1)")
    grad_clip: float = flag(1.0, "global gradient-norm clip", "> 0")
    beta1: float = flag(0.9, "AdamW beta1", "[0, 1)")
    beta2: float = flag(0.95, "AdamW beta2", "[0, 1)")
    # seeds: init and data order are separate, as in the paper (train_seed, data_seed)
    seed: int = flag(0, "init seed", ">= 0")
    data_seed: int = flag(0, "data-order seed (one permutation per epoch)", ">= 0")
    # sequence-level distillation (distill.py sets these and passes its batch source, distill.MixedBatches)
    mix_data: str = flag("", "a dataset of teacher samples mixed into every batch (distill.py sets it)")
    mix_weight: float = flag(0.0, "fraction of every batch drawn from mix_data", "[0, 1)")
    # bookkeeping
    out_dir: str = flag("out/default", "run folder: config.json, log.jsonl, ckpt.pt, summary.json")
    recipe: str = flag("single", "a label fit.py groups runs by (standard, regularized, member, ...)")
    evals: int = flag(10, "number of evaluations over the run, the final one included", ">= 1")
    log_every: int = flag(0, "steps between log lines (0 = about 50 lines per run)", ">= 0")
    ckpt_every: int = flag(0, "steps between checkpoints (0 = at every eval)", ">= 0")
    resume: bool = flag(False, "continue the run in out_dir from its checkpoint")
    # continued pre-training: start from these weights with a fresh optimizer, schedule and data order
    init_from: str = flag("", "a run folder, a ckpt.pt or a Hugging Face Llama folder (init_from.py); the shape is the source's")
    eval_only: bool = flag(False, "evaluate the initial weights (e.g. --init_from's) and write summary.json; no training")
    # hardware
    device: str = flag("auto", "auto | cpu | cuda | cuda:N")
    dtype: str = flag("auto", "auto (bf16 autocast on CUDA and on CPUs with native bf16, else fp32) | float32 | bfloat16")
    compile: str = flag("auto", "auto (on for CUDA; on a CPU only for runs >= CPU_COMPILE_MIN_FLOPS) | true | false")


def ranges_of(config):
    """{field: allowed range} of a config dataclass built with flag()."""
    return {f.name: f.metadata["range"] for f in dataclasses.fields(config) if f.metadata["range"]}


# the allowed ranges above, by field (the reliability tests and the tools' parsers read them)
RANGES = ranges_of(TrainConfig)

# Flags that change how a run executes but not what it learns: a run may be resumed with other values.
RUN_ONLY = ("out_dir", "resume", "device", "compile", "evals", "log_every", "ckpt_every", "micro_batch", "attn",
            "recipe")


class ConfigError(ValueError):
    """Bad user input: printed as one line, exit code 2."""


def check_same_config(old, cfg, ignore=RUN_ONLY, what="was trained"):
    """Refuse to continue a run folder whose recorded config (a dict) differs from cfg in a field
    that changes what is learned (anything outside `ignore`)."""
    old = {**asdict(TrainConfig()), **old}   # fields added since it was written take their defaults
    diff = [k for k, v in asdict(cfg).items() if k not in ignore and old.get(k) != v]
    if diff:
        raise ConfigError(f"{cfg.out_dir} {what} with different {', '.join(diff)} "
                          f"({', '.join(f'{old.get(k)} vs {getattr(cfg, k)}' for k in diff)}); "
                          f"rerun with the original flags or choose another --out_dir")


def parse_args(argv=None, description=__doc__):
    p = OneLineParser(description=description.split("\n\n")[0],
                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_config_flags(p)
    return TrainConfig(**vars(p.parse_args(argv)))


def add_config_flags(p, skip=(), config=TrainConfig):
    """One flag per field of `config` (TrainConfig, or another dataclass built with flag()), with its
    help, default and range."""
    if hasattr(p, "ranges"):   # a OneLineParser checks the ranges right after parsing
        p.ranges.update({k: v for k, v in ranges_of(config).items() if k not in skip})
    for f in dataclasses.fields(config):
        if f.name in skip:
            continue
        rng = f" (range {f.metadata['range']})" if f.metadata["range"] else ""
        if f.type is bool:
            p.add_argument(f"--{f.name}", action="store_true", help=f.metadata["help"])
        else:
            p.add_argument(f"--{f.name}", type=f.type, default=f.default, help=f.metadata["help"] + rng)


def validate(cfg):
    bad = data.range_error(asdict(cfg), RANGES)
    if bad:
        raise ConfigError(bad)
    if cfg.model not in PRESETS:
        raise ConfigError(f"unknown --model {cfg.model!r}; choose one of: {', '.join(PRESETS)}")
    if cfg.attn not in ("sdpa", "flex"):
        raise ConfigError(f"--attn must be sdpa or flex (got {cfg.attn!r})")
    if cfg.attn == "flex" and (cfg.device == "cpu" or not torch.cuda.is_available()):
        raise ConfigError("--attn flex trains only on CUDA (FlexAttention has no CPU backward); "
                          "--attn sdpa computes the same attention")
    if not (cfg.device in ("auto", "cpu") or (cfg.device.split(":")[0] == "cuda" and torch.cuda.is_available())):
        raise ConfigError(f"--device {cfg.device!r} is not available here; use auto, cpu, cuda or cuda:N "
                          f"(CUDA available: {torch.cuda.is_available()})")
    if cfg.mix_weight > 0 and not cfg.mix_data:
        raise ConfigError("--mix_weight > 0 needs --mix_data (a prepared dataset of teacher samples)")
    if cfg.dtype not in ("auto", "float32", "bfloat16"):
        raise ConfigError(f"--dtype must be auto, float32 or bfloat16 (got {cfg.dtype!r})")
    if cfg.compile not in ("auto", "true", "false"):
        raise ConfigError(f"--compile must be auto, true or false (got {cfg.compile!r})")
    try:
        if (fixed_micro_batch(cfg.micro_batch) or 1) < 1:
            raise ValueError
    except ValueError:
        raise ConfigError(f"--micro_batch must be auto or a number of sequences >= 1 "
                          f"(got {cfg.micro_batch!r})") from None


# ----------------------------------------------------------------------------
# Exact epochs: one global permutation of the sequences per (data_seed, epoch); the
# epochs concatenated form one stream; optimizer step i takes stream positions [iB, (i+1)B), split
# into world_size x grad_accum micro-batches disjoint across ranks. So 1 and 2 processes see the same
# sequences in the same steps, and a resumed run continues from the exact data position.

class EpochStream:
    def __init__(self, n_seq, data_seed):
        self.n_seq, self.data_seed = n_seq, data_seed
        self._perm_epoch, self._perm = -1, None

    def perm(self, epoch):
        if epoch != self._perm_epoch:
            rng = np.random.default_rng([self.data_seed, epoch])
            self._perm, self._perm_epoch = rng.permutation(self.n_seq), epoch
        return self._perm

    def indices(self, start, count):
        """Sequence indices at stream positions [start, start + count)."""
        pos = np.arange(start, start + count)
        epoch = pos // self.n_seq
        out = np.empty(count, dtype=np.int64)
        for e in np.unique(epoch):   # a step spans at most a couple of epochs
            sel = epoch == e
            out[sel] = self.perm(int(e))[pos[sel] % self.n_seq]
        return out

    def micro_indices(self, step, per_step, rank, world, accum):
        """This rank's accum index arrays for optimizer step `step` (per_step sequences per step from
        this stream): micro-step m of rank r takes the (m * world + r)-th equal slice of the step."""
        idx = self.indices(step * per_step, per_step)
        per = per_step // (world * accum)
        return [idx[(m * world + rank) * per:(m * world + rank + 1) * per] for m in range(accum)]


# ----------------------------------------------------------------------------
# Learning rate: linear warmup over warmup_steps, then cosine decay to 0 at the last step.

def lr_at(step, steps, warmup_steps, peak):
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, steps - warmup_steps)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


# ----------------------------------------------------------------------------
# Hardware: peak bf16 dense FLOPS for an MFU estimate; unknown devices get no MFU.

PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def hardware_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def peak_flops(device, dtype):
    if device.type != "cuda" or dtype != torch.bfloat16:
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


# On a CPU, --dtype auto and --compile auto pick what was measured faster (bench.py reruns it):
# - bf16 autocast only where oneDNN reports native bf16 (AVX-512 BF16 / AMX). Without it bf16 is
#   emulated: on a 2-core AMD EPYC VM that reports only AVX2 to torch, a train step of tiny-67k ..
#   tiny-950k (T 128, batch 8) ran 6-14x SLOWER under bf16 autocast than in fp32.
# - torch.compile only for runs of at least CPU_COMPILE_MIN_FLOPS training FLOPs. Compiling costs
#   20-35 s (plus the eval graphs) and, on that CPU at one thread, sped the step up 0.91x / 1.14x /
#   1.33x at tiny-67k / tiny-240k / tiny-950k: it repays itself only on runs of tens of minutes.
CPU_COMPILE_MIN_FLOPS = 1e14    # ~40 min of one core at ~0.04 TFLOP/s (eager fp32, tiny-950k)


def cpu_has_native_bf16():
    try:
        return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def dtype_name(dtype):
    """torch.bfloat16 -> "bfloat16": how config.json, summary.json and checkpoints name a dtype."""
    return str(dtype).replace("torch.", "")


def resolve_device(cfg, local_rank=0, run_flops=None):
    """(device, autocast dtype, compile?) from the --device/--dtype/--compile flags. `run_flops` (the
    run's training FLOPs) lets compile auto decide on a CPU; without it a CPU does not compile."""
    if cfg.device == "auto":
        dev = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(cfg.device)
    fast_bf16 = dev.type == "cuda" or cpu_has_native_bf16()
    dtype = {"auto": torch.bfloat16 if fast_bf16 else torch.float32,
             "float32": torch.float32, "bfloat16": torch.bfloat16}[cfg.dtype]
    if dev.type == "cuda":
        # fp32 matmuls (the fp32 sampling path, anything outside autocast) on tensor cores as TF32,
        # the same precision bf16 autocast already accepts for the training matmuls
        torch.set_float32_matmul_precision("high")
    long_run = run_flops is not None and run_flops >= CPU_COMPILE_MIN_FLOPS
    use_compile = {"auto": dev.type == "cuda" or long_run, "true": True, "false": False}[cfg.compile]
    return dev, dtype, use_compile


def compile_model(module):
    """torch.compile with the backend ICGPT_COMPILE_BACKEND names (default inductor; the tests use
    aot_eager, which traces the same graphs without generating kernels, in a fraction of the time)."""
    return torch.compile(module, backend=os.environ.get("ICGPT_COMPILE_BACKEND", "inductor"))


def code_version():
    """torch version and the git commit the code ran at ('-dirty' with uncommitted changes), so results
    record what produced them."""
    import subprocess
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=here,
                                capture_output=True, text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {"torch": torch.__version__, "git": commit}


# ----------------------------------------------------------------------------
# Evaluation: mean cross-entropy over fixed windows. Datasets may ask to leave out the first
# eval_skip targets of every window (the synthetic source does, so the model and the known limits
# score exactly the same positions: those whose full order-k context lies inside the window).

def cross_entropy_sum(logits, y, skip):
    """Summed CE over targets y[:, skip:]; logits (B, T, V) fp32, y (B, T)."""
    logits, y = logits[:, skip:], y[:, skip:]
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum")


def to_device(array, device):
    """A numpy batch on the device: on CUDA through pinned memory, copied asynchronously (the host
    does not wait for the copy; the step that reads it is queued behind it on the same stream)."""
    t = torch.from_numpy(array)
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


@torch.no_grad()
def evaluate(model, windows, batch, device, dtype, skip=0, rank=0, world=1, pad=False):
    """Mean loss over windows (n, T+1); under DDP each rank scores a slice and the sums are reduced.
    The loss is the model's own chunked cross-entropy: no (B, T, V) logits are made at once. pad=True
    (compiled models) pads the last batch to `batch` rows whose targets are masked out (-100), so a
    compiled model sees one shape and is not recompiled for the remainder."""
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=device)   # (loss sum, target count)
    mine = windows[rank::world]
    for i in range(0, len(mine), batch):
        rows = mine[i:i + batch]                                                  # (b, T+1)
        n = len(rows)
        if pad and n < batch:
            rows = np.concatenate([rows, np.zeros((batch - n, rows.shape[1]), dtype=rows.dtype)])
        w = to_device(rows, device)
        x, y = w[:, :-1], w[:, 1:].clone()                                        # (batch, T)
        y[n:] = -100                                                              # padded rows: no loss
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            _, loss_sum = model(x, y, reduction="sum", skip=skip)
        total[0] += loss_sum.double()
        total[1] += n * (y.size(1) - skip)
    if world > 1:
        dist.all_reduce(total)
    model.train()
    return (total[0] / total[1]).item()


@torch.no_grad()
def param_norm(model):
    """2-norm of the decayed weights (what weight decay shrinks), with one host sync for all tensors."""
    norms = torch._foreach_norm([p.float() for p in model.optimizer_groups(0)[0]["params"]])
    return torch.stack(norms).double().pow(2).sum().sqrt().item()


# ----------------------------------------------------------------------------
# Checkpoints: written to a temp file then renamed, so a crash never leaves a half-written ckpt.pt,
# and loaded with weights_only=True (plain tensors and JSON-able metadata, no pickled objects).

def atomic_write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


def save_checkpoint(path, model, optimizer, step, cfg, extra):
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
             "config": asdict(cfg), "model_config": asdict(model.cfg),
             "rng_cpu": torch.get_rng_state(), **extra}
    if torch.cuda.is_available():
        state["rng_cuda"] = torch.cuda.get_rng_state_all()
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)


def load_checkpoint(path, device="cpu"):
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"no checkpoint at {path}; train it first or point to a finished run folder")
    except Exception as e:
        raise ConfigError(f"checkpoint {path} is unreadable ({type(e).__name__}); "
                          "delete it and retrain, or resume from another run") from None


def restore_checkpoint(ckpt, model, optimizer=None):
    """Put a loaded checkpoint back: weights, optimizer state (if given) and RNG state. Returns
    (step, wall seconds so far, eval history)."""
    model.load_state_dict(ckpt["model"])
    if optimizer is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    torch.set_rng_state(ckpt["rng_cpu"].cpu())
    if "rng_cuda" in ckpt and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in ckpt["rng_cuda"]])
    return ckpt["step"], ckpt["wall_s"], json.loads(ckpt["history"])


def load_model(run_dir, device="cpu"):
    """(model in eval mode, checkpoint dict) from a run folder or a ckpt.pt path."""
    from model import GPTConfig
    path = run_dir if run_dir.endswith(".pt") else os.path.join(run_dir, "ckpt.pt")
    ckpt = load_checkpoint(path, device)
    model = GPT(GPTConfig(**ckpt["model_config"])).to(device)
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt


# ----------------------------------------------------------------------------
# Distributed setup: torchrun sets RANK / WORLD_SIZE / LOCAL_RANK. NCCL on GPU, gloo on CPU.

def setup_distributed(device_flag):
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return 0, 1, 0
    use_cuda = torch.cuda.is_available() and device_flag in ("auto", "cuda")
    dist.init_process_group("nccl" if use_cuda else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    return dist.get_rank(), dist.get_world_size(), local_rank


# ----------------------------------------------------------------------------
# The run folder: one process at a time (a lock), a clean stop on SIGTERM/SIGINT, and restarts after
# divergence. Each piece is a small function train() calls, so the loop stays readable.

class RunLocked(ConfigError):
    """Another live process holds the run folder."""


def lock_run_dir(out_dir, say=print):
    """Take out_dir/lock for the whole run: created exclusively, holding this PID and host, so two
    processes never train into one folder (their checkpoints and logs would interleave). A lock whose
    process is gone (same host, PID not running) is stale and taken over, with a line saying so.
    Returns release(), which deletes the lock, and the folders this call created while they are still
    empty (a refused run leaves nothing behind)."""
    if os.path.isfile(out_dir):
        raise ConfigError(f"--out_dir {out_dir} is a file, not a folder; choose another --out_dir")
    created, d = [], os.path.abspath(out_dir)
    while not os.path.exists(d):          # deepest first
        created.append(d)
        d = os.path.dirname(d)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out_dir {out_dir} cannot be created ({e.strerror}); choose another --out_dir") from None
    path = os.path.join(out_dir, "lock")
    me = {"pid": os.getpid(), "host": platform.node(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_lock(path)
            if holder is None or _alive(holder):
                who = (f"PID {holder['pid']} on {holder['host']} (since {holder.get('since', '?')})" if holder
                       else "a process whose lock file is unreadable")
                raise RunLocked(f"{out_dir} is in use by {who}; wait for it to finish, or delete {path} if "
                                f"that process is gone") from None
            # stale: move it aside under a name of our own, then check we moved the stale one and not a
            # lock another process took over meanwhile (it would then be put back)
            aside = f"{path}.stale.{os.getpid()}"
            try:
                os.rename(path, aside)
            except FileNotFoundError:
                continue
            if _read_lock(aside) != holder:
                os.rename(aside, path)
                continue
            os.remove(aside)
            say(f"note: took over the stale lock of {out_dir} (PID {holder['pid']} on {holder['host']} is gone)")
            continue
        except OSError as e:
            raise ConfigError(f"--out_dir {out_dir} is not writable ({e.strerror}); choose another --out_dir") from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    else:
        raise RunLocked(f"{out_dir} is in use: its lock ({path}) keeps changing hands; try again")

    def release():
        if _read_lock(path) == me:
            os.remove(path)
        for d in created:
            try:
                os.rmdir(d)         # only succeeds while empty
            except OSError:
                break
    return release


def lock_for_ranks(cfg, rank, world, local_rank):
    """Rank 0 takes the run folder's lock (it alone writes there); under DDP every rank learns whether
    it got it, so no rank waits in a collective for a rank 0 that was refused."""
    release, refused = None, None
    if rank == 0:
        try:
            release = lock_run_dir(cfg.out_dir, say=lambda m: print(m, file=sys.stderr, flush=True))
        except ConfigError as e:
            refused = e
    if world > 1:
        got = torch.tensor(0.0 if refused else 1.0, device=resolve_device(cfg, local_rank)[0])
        dist.broadcast(got, 0)
        if not got.item() and rank != 0:
            raise SystemExit(2)       # rank 0 prints the one line
    if refused:
        raise refused
    return release


def _read_lock(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _alive(holder):
    """Whether the lock's process still runs. On another host we cannot tell: assume it does."""
    if holder.get("host") != platform.node():
        return True
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, KeyError):
        return True
    try:   # a zombie (dead, not yet reaped) still answers kill(pid, 0)
        with open(f"/proc/{int(holder['pid'])}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


class StopSignal:
    """SIGTERM (what schedulers send before reclaiming a node) and SIGINT (Ctrl-C) only set a flag; the
    loop finishes its step, writes a checkpoint and exits with 128 + the signal number. Further signals
    are ignored while it does (torchrun forwards a SIGTERM after the terminal's SIGINT); SIGKILL still
    works, and the atomic checkpoint survives it."""

    def __init__(self):
        self.signum, self.old = 0, {}

    def __enter__(self):
        import signal
        import threading
        if threading.current_thread() is threading.main_thread():   # handlers can only live there
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = self.signum or signum

    def __exit__(self, *exc):
        import signal
        for sig, handler in self.old.items():
            signal.signal(sig, handler)


def agree_on_stop(stop, world, device):
    """The signal number every rank stops on (0: go on). Under DDP a signal may reach one rank only, or
    the ranks at different steps; all must stop at the same step or the next collective hangs, so they
    agree here, at log steps (a host sync per step would cost speed)."""
    if world == 1:
        return stop.signum
    flag = torch.tensor(float(stop.signum), device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item())


def params_finite(model, loss=0.0):
    """One fused check on the device at checkpoint time (never per step): the largest |weight| of all
    parameters (NaN if any is NaN), read with one sync. `loss` is the loss of these weights (the eval's
    val loss, or a probe): finite but blown-up weights (an lr of 1e30 leaves ~1e30) give a non-finite
    loss at once, so a checkpoint that passes both is one a lower --lr can restart from.
    Returns (ok, max |weight|)."""
    with torch.no_grad():
        wmax = float(torch.stack(torch._foreach_norm([p.detach() for p in model.parameters()], math.inf)).max())
    return math.isfinite(wmax) and math.isfinite(loss), wmax


def rerun_command(cfg, extra=(), world=1, same_entry=False):
    """A command line that continues this run with `extra` flags appended, as a user would type it, so
    printed advice works word for word: the command that started this process when it is train.py or
    distill.py (or same_entry: sweep.py and ensemble.py resume by themselves), otherwise (a run inside
    sweep.py or ensemble.py, whose own rerun could not pass a new --lr) train.py on this run folder."""
    import shlex
    launcher = [f"torchrun --nproc_per_node {world}" if world > 1 else "python"]
    if same_entry or os.path.basename(sys.argv[0]) in ("train.py", "distill.py"):
        return " ".join(launcher + [shlex.quote(a) for a in sys.argv + list(extra)])
    default = asdict(TrainConfig())
    flags = [f"--{k}" if v is True else f"--{k}={v}" for k, v in asdict(cfg).items()
             if v != default[k] and v is not False]
    return " ".join(launcher + ["train.py"] + [shlex.quote(a) for a in flags + list(extra)])


def restart_after_divergence(old, cfg):
    """Whether resuming checkpoint config `old` (a dict) with cfg is the restart the divergence advice
    asks for: the run stopped on divergence (out_dir/diverged.json) and only --lr differs, lower.
    Returns the restart record for config.json and summary.json, or None if this is a plain resume."""
    marker = os.path.join(cfg.out_dir, "diverged.json")
    if old.get("lr") == cfg.lr or not os.path.exists(marker):
        return None
    with open(marker) as f:
        div = json.load(f)
    check_same_config(old, cfg, ignore=RUN_ONLY + ("lr",), what="holds a checkpoint trained (--resume)")
    if not cfg.lr < old["lr"]:
        raise ConfigError(f"{cfg.out_dir} diverged at --lr {old['lr']}; a restart needs a lower --lr "
                          f"(got {cfg.lr})")
    return {"step": div["ckpt_step"], "lr_before": old["lr"], "lr": cfg.lr, "diverged_at": div["step"]}


def check_divergence(log_path, val_loss, vocab):
    """Why a finished run looks diverged without ever producing a non-finite loss, or None: its val loss
    is above the uniform predictor's log(V), or its train loss at the end is above its train loss at
    the first log. Val rising while train falls is honest overfitting, not divergence."""
    if not val_loss <= math.log(vocab):
        return f"val loss {val_loss:.4f} is above log(V) = {math.log(vocab):.4f}, the uniform predictor's"
    try:
        with open(log_path) as f:
            train_losses = [r["train_loss"] for r in map(json.loads, f) if r.get("train_loss") is not None]
    except (OSError, ValueError):
        return None
    if len(train_losses) > 1 and train_losses[-1] > train_losses[0]:
        return (f"train loss at the end ({train_losses[-1]:.4f}) is above the train loss at the first log "
                f"({train_losses[0]:.4f})")
    return None


def trim_log(log_path, start_step):
    """Keep the lines of log.jsonl up to start_step (a fresh run: none): the rest is redone, and a run
    that restarts must not append to an old log. A torn last line (killed mid-write) is dropped; a
    malformed line elsewhere is an error naming its line number."""
    if not os.path.exists(log_path):
        return
    keep = []
    with open(log_path) as f:
        lines = f.readlines()
    for i, line in enumerate(lines, 1):
        try:
            rec = json.loads(line)
        except ValueError:
            if i == len(lines):
                break          # torn by a kill during the write: redone anyway
            raise ConfigError(f"{log_path} line {i} is not JSON; fix or delete that line, then --resume") from None
        if rec["step"] <= start_step:
            keep.append(line if line.endswith("\n") else line + "\n")
    with open(log_path + ".tmp", "w") as f:
        f.writelines(keep)
    os.replace(log_path + ".tmp", log_path)


# ----------------------------------------------------------------------------
# The training run

def load_data(cfg):
    """(dataset, train windows, val windows, eval_skip): the first D tokens cut into sequences of T+1
    tokens, and the fixed val windows."""
    ds = data.load_dataset(cfg.dataset)
    T = cfg.seq_len
    D = cfg.train_tokens or len(ds.train)
    train_windows = data.train_sequences(ds.train, D, T)
    val_windows = data.val_windows(ds.val, T, cfg.val_tokens or len(ds.val))
    if len(val_windows) == 0:
        raise ConfigError(f"the val split of {cfg.dataset} has fewer than {T + 1} tokens; lower --seq_len")
    return ds, train_windows, val_windows, int(ds.meta.get("eval_skip", 0))


def fixed_micro_batch(value):
    """--micro_batch as a number of sequences, or None for auto (0 is how older runs wrote auto)."""
    return None if value in ("auto", 0, "0", None) else int(value)


class Plan(NamedTuple):
    steps: int
    micro: int            # sequences per rank per forward
    accum: int            # micro-steps per optimizer step
    warmup_steps: int
    eval_every: int
    log_every: int
    ckpt_every: int
    decay_budget: float   # sum_t lr_t * wd


def plan(cfg, n_real, B_real, world=1, micro=None):
    """The Plan of a run over n_real sequences taking B_real of them per optimizer step. micro: the
    micro-batch --micro_batch auto chose (default: a fixed --micro_batch, else the whole per-rank batch)."""
    steps = int(cfg.epochs * n_real // B_real)
    if steps < 1:
        raise ConfigError(f"{cfg.epochs} epochs of {n_real} sequences is less than one batch of "
                          f"{B_real}; raise --train_tokens or --epochs, or lower --batch_size")
    micro = micro or fixed_micro_batch(cfg.micro_batch) or cfg.batch_size // world
    if cfg.batch_size % (world * micro):
        raise ConfigError(f"--batch_size {cfg.batch_size} must split into {world} ranks x micro-batches "
                          f"of {micro}; adjust --micro_batch")
    accum = cfg.batch_size // (world * micro)
    warmup_steps = max(1, round(cfg.warmup * steps))
    eval_every = max(1, math.ceil(steps / max(1, cfg.evals)))
    log_every = cfg.log_every or max(1, steps // 50)
    ckpt_every = cfg.ckpt_every or eval_every
    decay_budget = sum(lr_at(s, steps, warmup_steps, cfg.lr) for s in range(steps)) * cfg.wd
    return Plan(steps, micro, accum, warmup_steps, eval_every, log_every, ckpt_every, decay_budget)


# ----------------------------------------------------------------------------
# --micro_batch auto. The global batch is fixed by the recipe; how many sequences one forward takes is
# only a question of memory (accumulation makes the result the same, up to float rounding). On CUDA
# the largest micro-batch that divides the per-rank batch is tried with one real forward + backward,
# halving on out-of-memory, before the run starts; a CPU takes the whole per-rank batch at once.

MEMORY_HEADROOM = 0.9    # a probed micro-batch fits if its peak + AdamW's state stays under 90% of the device


def choose_micro_batch(candidates, probe):
    """(micro-batch, why) from the allowed sizes, largest first: the first for which probe(m) returns
    None; probe returns a reason it does not fit (or raises torch.cuda.OutOfMemoryError), and the next
    try is the largest allowed size at most half the last. Nothing fits: ConfigError (one line, exit 2)."""
    candidates = sorted(candidates, reverse=True)
    tried, m = [], candidates[0]
    while True:
        try:
            why_not = probe(m)
        except torch.cuda.OutOfMemoryError:
            why_not = "out of memory"
        if why_not is None:
            why = f"{', '.join(tried)}; {m} fits" if tried else f"the whole per-rank batch of {m} fits"
            return m, why
        tried.append(f"{m}: {why_not}")
        smaller = [c for c in candidates if c <= m // 2]
        if not smaller:
            raise ConfigError(f"not even a micro-batch of {m} sequence{'s' if m > 1 else ''} fits ({'; '.join(tried)}); "
                              f"lower --seq_len, choose a smaller --model or use more GPUs")
        m = smaller[0]


def probe_memory(model, loss_fn, m, T, vocab, device, dtype, n_params):
    """None if one forward + backward of m sequences of T tokens fits the device with AdamW's two fp32
    moments besides, else why not (or torch.cuda.OutOfMemoryError)."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    g = torch.Generator(device=device).manual_seed(0)
    w = torch.randint(0, vocab, (m, T + 1), device=device, generator=g)         # (m, T+1)
    try:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = loss_fn(model, w[:, :-1], w[:, 1:])
        loss.backward()
        del loss
        need = torch.cuda.max_memory_allocated(device) + 2 * 4 * n_params      # + exp_avg, exp_avg_sq
    finally:
        model.zero_grad(set_to_none=True)
        del w
        torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(device).total_memory
    if need > MEMORY_HEADROOM * total:
        return f"needs {need / 2**30:.1f} of {total / 2**30:.1f} GiB"
    return None


def build_model(cfg, meta, device):
    """The run's GPT for a dataset's metadata, initialized from cfg.seed or loaded from cfg.init_from."""
    torch.manual_seed(cfg.seed)
    if cfg.init_from:
        return init_from.init_model(cfg, meta, device)
    return GPT(config_from_preset(cfg.model, meta["vocab_size"], cfg.seq_len, attn=cfg.attn,
                                  doc_mask=cfg.doc_mask, eot_token=meta["eot_token"])).to(device)


def make_optimizer(model, cfg, device):
    """AdamW (paper section 4); decay only on the tensors model.optimizer_groups names."""
    return torch.optim.AdamW(model.optimizer_groups(cfg.wd), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                             eps=1e-8, fused=device.type == "cuda")


def default_loss(model, x, y):
    return model(x, y)[1]


def train_step(model, raw_model, optimizer, batches, lr, grad_clip, accum, device, dtype,
               loss_fn=default_loss, world=1):
    """One optimizer step over `accum` micro-batches; returns the mean loss as a device tensor
    (no host sync). bench.py times exactly this function. batched.py's stacked members come through
    here too: their loss_fn returns (K,) losses (one per member; they share no parameter, so the sum's
    gradient is each member's own) and their raw_model clips each member's gradient norm on its own."""
    for g in optimizer.param_groups:
        g["lr"] = lr
    total = 0.0
    for m, (x, y) in enumerate(batches):
        if world > 1:   # all-reduce gradients only on the last micro-step
            getattr(model, "_orig_mod", model).require_backward_grad_sync = m == accum - 1   # the DDP module
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = loss_fn(model, x, y)                                          # () or (K,)
        (loss.sum() / accum).backward()
        total = total + loss.detach() / accum
    if hasattr(raw_model, "clip_grad_norm_"):                 # StackedGPT: each member's own norm
        raw_model.clip_grad_norm_(grad_clip)
    else:
        torch.nn.utils.clip_grad_norm_(raw_model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total


class Tick(NamedTuple):
    """A step at which loop() hands over: what the steps since the last one measured, and what is due."""
    done: int                 # steps done
    lr: float                 # the last step's learning rate
    train_loss: float         # mean over the steps since the last tick (a list of K for stacked members)
    tok_s: float              # tokens per second since the last tick (eval and checkpoint time excluded)
    step_s: float             # seconds per step, likewise
    is_eval: bool             # an evaluation is due (every eval_every steps, and at the end)
    is_ckpt: bool             # a checkpoint is due (every ckpt_every steps, and at the end)


def loop(p, start, peak_lr, step_fn, meter, tokens_per_step, world=1, stop=None):
    """The training loop, the one every trainer runs (train() here, batched.py's stacked members): steps
    start .. p.steps - 1 on the warmup + cosine schedule, step_fn(step, lr) taking one optimizer step and
    returning its loss on the device. Yields a Tick at every log, eval or checkpoint step (and, in one
    process, at the next step after a stop signal); the caller records, evaluates and checkpoints there,
    and the meter restarts when it asks for the next step."""
    for step in range(start, p.steps):
        lr = lr_at(step, p.steps, p.warmup_steps, peak_lr)
        meter.add(step_fn(step, lr), tokens_per_step)
        done = step + 1
        is_eval = done % p.eval_every == 0 or done == p.steps
        is_ckpt = done % p.ckpt_every == 0 or done == p.steps
        if done % p.log_every == 0 or is_eval or is_ckpt or (stop is not None and stop.signum and world == 1):
            yield Tick(done, lr, *meter.read(world), is_eval, is_ckpt)
            meter.reset()


def eval_record(model, raw_model, val_windows, train_windows, micro, device, dtype, skip, final,
                rank=0, world=1, pad=False):
    """What every evaluation records: the val loss, at the end also the loss on as many training
    windows (train_eval_loss: the overfitting gap), and the decayed weights' norm."""
    rec = {"val_loss": evaluate(model, val_windows, micro, device, dtype, skip, rank, world, pad=pad)}
    if final:
        k = min(len(train_windows), len(val_windows))
        rec["train_eval_loss"] = evaluate(model, train_windows.get(np.arange(k)), micro, device, dtype, skip,
                                          rank, world, pad=pad)
    rec["param_norm"] = param_norm(raw_model)
    return rec


class Batches:
    """Where a run's training batches come from: the D real tokens in exact epochs (EpochStream).
    distill.MixedBatches, a subclass, mixes teacher samples into every batch for sequence-level
    distillation; train() takes either, so the loop has one source of batches."""

    def __init__(self, cfg, ds, windows):
        self.windows, self.n_seq = windows, len(windows)
        self.per_step = cfg.batch_size        # real sequences per optimizer step: what the epochs count
        self.stream = EpochStream(self.n_seq, cfg.data_seed)

    def splits(self, parts):
        """Whether every step's batch splits into `parts` equal micro-batches (ranks x micro-steps)."""
        return True                           # plan() checks the global batch itself

    def micro_batches(self, step, rank, world, accum, device):
        """This rank's accum micro-batches of step `step`, as (x, y) on the device."""
        for idx in self.stream.micro_indices(step, self.per_step, rank, world, accum):
            w = to_device(self.windows.get(idx), device)                               # (micro, T+1)
            yield w[:, :-1], w[:, 1:]

    def summary(self, steps):
        """What summary.json records about the batches (nothing for plain data)."""
        return {}


def train(cfg, rank=0, world=1, local_rank=0, loss_fn=default_loss, batches=None, summary_extra=None,
          quiet=False):
    """Train one model as configured and return its summary dict (also written to summary.json).
    distill.py changes two things without copying the loop: loss_fn(model, x, y) -> scalar (a KL to the
    teacher) and `batches`, the class the batches come from (Batches by default). The run folder is
    locked for the whole run, and SIGTERM/SIGINT stop it at a checkpoint."""
    cfg = checked(cfg, batches)
    with run_folder_lock(cfg, rank, world, local_rank), StopSignal() as stop:
        master = rank == 0
        say = (lambda *a: print(*a, flush=True)) if master and not quiet else (lambda *a: None)
        device, dtype, _ = resolve_device(cfg, local_rank)
        t_start = time.time()

        # ---- data: the first D tokens cut into windows of T+1 tokens; a fixed val set ----
        ds, train_windows, val_windows, skip = load_data(cfg)
        source = (batches or Batches)(cfg, ds, train_windows)
        T, vocab = cfg.seq_len, ds.meta["vocab_size"]

        # ---- the plan: steps, accumulation and schedule follow from D, epochs and the global batch ----
        p = plan(cfg, source.n_seq, source.per_step, world)
        micro_why = "given" if fixed_micro_batch(cfg.micro_batch) else "the whole per-rank batch (a CPU is not probed)"
        check_split(source, world * p.accum)

        # ---- model and optimizer (on CUDA, --micro_batch auto first probes what fits) ----
        model = build_model(cfg, ds.meta, device)
        if fixed_micro_batch(cfg.micro_batch) is None and device.type == "cuda":
            micro, micro_why = auto_micro_batch(cfg, model, source, loss_fn, world, device, dtype, vocab)
            p = plan(cfg, source.n_seq, source.per_step, world, micro)
        if cfg.eval_only:
            p = p._replace(steps=0)   # no step runs: the summary's losses are the initial weights'
        optimizer = make_optimizer(model, cfg, device)
        flops_tok = model.flops_per_token(T)
        use_compile = resolve_device(cfg, local_rank, run_flops=flops_tok * p.steps * cfg.batch_size * T)[2]

        # ---- the run folder: never silently overwrite a run; --resume continues one ----
        r = open_run_folder(cfg, model, optimizer, p.steps, dtype_name(dtype), device, master, world, say)
        if r.finished:
            return r.finished
        decay_budget = applied_decay(cfg, p, r.restarts)
        derived = announce(cfg, p, micro_why, model, ds, source, world, device, dtype, use_compile,
                           decay_budget, r.restarts, master, say)
        raw_model = model                                   # for state_dict, clipping, norms
        model, eval_model = wrap_model(raw_model, use_compile, world, device)

        def evaluation(step, final=False):
            return {"step": step, "epoch": step * source.per_step / source.n_seq, **eval_record(
                eval_model, raw_model, val_windows, train_windows, p.micro, device, dtype, skip, final, rank,
                world, pad=use_compile)}

        # ---- the loop: one optimizer step per batch; at log, eval and checkpoint steps, record ----
        model.train()
        meter, peak, final = LossMeter(device), peak_flops(device, dtype), None
        step_fn = lambda step, lr: train_step(model, raw_model, optimizer,                       # noqa: E731
                                              source.micro_batches(step, rank, world, p.accum, device), lr,
                                              cfg.grad_clip, p.accum, device, dtype, loss_fn, world)
        for t in loop(p, r.start_step, cfg.lr, step_fn, meter, cfg.batch_size * T, world, stop):
            signum = agree_on_stop(stop, world, device) if t.done < p.steps else 0   # the last step just finishes
            if not math.isfinite(t.train_loss):
                diverged(r, t.done, "non-finite training loss")
            rec = {"step": t.done, "epoch": t.done * source.per_step / source.n_seq, "train_loss": t.train_loss,
                   "lr": t.lr, "tok_s": t.tok_s, "mfu": flops_tok * t.tok_s / peak if peak else None,
                   "elapsed_s": r.wall_before + time.time() - t_start}
            if t.is_eval:
                rec.update(evaluation(t.done, final=t.done == p.steps))
                r.history.append({k: rec[k] for k in ("step", "epoch", "train_loss", "val_loss", "param_norm")})
            say(log_line(rec, p.steps, peak, (p.steps - t.done) * t.step_s))
            append_log(r, rec)
            if t.is_ckpt or signum:
                # the loss of these weights: the eval's, or one val batch's (the same compiled graph)
                loss_now = rec["val_loss"] if t.is_eval else evaluate(eval_model, val_windows[:p.micro], p.micro,
                                                                      device, dtype, skip, pad=use_compile)
                checkpoint(r, raw_model, optimizer, t.done, p.steps, loss_now, vocab, signum, rec["elapsed_s"])
            if signum:
                stop_at_checkpoint(signum, t.done, p.steps, r.ckpt_path, cfg, world, master)
            if t.is_eval and t.done == p.steps:
                final = rec

        # ---- summary: the schema fit.py, ensemble.py and sweep.py read ----
        if final is None:     # a resumed finished run or --eval_only: the final numbers of these weights
            final = evaluation(p.steps, final=True)
        return write_summary(cfg, r, final, derived, source, ds, val_windows, skip, device,
                             r.wall_before + time.time() - t_start, summary_extra, p.steps, say)


# ----------------------------------------------------------------------------
# What train() calls, in the order it calls it

def checked(cfg, batches):
    """cfg validated (one-line errors), with --init_from's model name filled in."""
    validate(cfg)
    if cfg.mix_data and batches is None:
        raise ConfigError("--mix_data (teacher samples in every batch) is sequence-level distillation: run it "
                          "with distill.py (or, in Python, train.train(..., batches=distill.MixedBatches))")
    if cfg.init_from:   # the shape is the source's: record its preset name
        cfg = dataclasses.replace(cfg, model=init_from.init_model_name(cfg))
    return cfg


@contextlib.contextmanager
def run_folder_lock(cfg, rank, world, local_rank):
    """Hold the run folder's lock (lock_run_dir, rank 0) for the duration of the block."""
    release = lock_for_ranks(cfg, rank, world, local_rank)
    try:
        yield
    finally:
        if release:
            release()


def check_split(source, parts):
    if not source.splits(parts):
        raise ConfigError(f"a batch of {source.describe()} must split evenly into {parts} micro-batches; "
                          f"adjust --mix_weight or --micro_batch")


def auto_micro_batch(cfg, model, source, loss_fn, world, device, dtype, vocab):
    """(micro-batch, why) for --micro_batch auto on CUDA: the largest that fits (choose_micro_batch)
    among those that divide the per-rank batch; under DDP the smallest any rank chose."""
    per_rank = cfg.batch_size // world
    allowed = [m for m in range(1, per_rank + 1) if per_rank % m == 0 and source.splits(cfg.batch_size // m)]
    micro, why = choose_micro_batch(allowed, lambda m: probe_memory(
        model, loss_fn, m, cfg.seq_len, vocab, device, dtype, model.num_params()))
    if world > 1:   # every rank must take the same micro-steps
        t = torch.tensor([micro], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        micro, why = int(t.item()), why + " (smallest over ranks)"
    return micro, why


@dataclass
class RunState:
    """A run folder's state: where the run stands (a fresh run: step 0) and what it has recorded."""
    cfg: TrainConfig
    master: bool
    world: int
    dtype: str
    start_step: int = 0
    wall_before: float = 0.0                        # seconds spent before this process (a resume)
    history: list = field(default_factory=list)     # one record per eval
    restarts: list = field(default_factory=list)    # restarts after divergence at a lower lr
    ckpt_step: int = None                           # the step of the last sound checkpoint
    finished: dict = None                           # the summary of a run that was already finished

    @property
    def ckpt_path(self):
        return os.path.join(self.cfg.out_dir, "ckpt.pt")


def open_run_folder(cfg, model, optimizer, steps, dtype, device, master, world, say):
    """The RunState of cfg.out_dir: a fresh run refuses a folder holding one; --resume restores the
    checkpoint into model and optimizer (same learning config and dtype, or a restart after divergence
    at a lower lr), or returns the summary of a finished run."""
    r = RunState(cfg, master, world, dtype)
    summary_path, log_path = os.path.join(cfg.out_dir, "summary.json"), os.path.join(cfg.out_dir, "log.jsonl")
    if (os.path.exists(r.ckpt_path) or os.path.exists(summary_path)) and not cfg.resume:
        raise ConfigError(f"{cfg.out_dir} already holds a run; pass --resume to continue it or choose another --out_dir")
    if cfg.resume and os.path.exists(summary_path) and not os.path.exists(r.ckpt_path):
        raise ConfigError(f"{cfg.out_dir} holds a finished run without its ckpt.pt; nothing to resume, "
                          f"choose another --out_dir")
    if cfg.resume and os.path.exists(r.ckpt_path):
        ckpt = load_checkpoint(r.ckpt_path, device)
        restart = restart_after_divergence(ckpt["config"], cfg)   # the divergence advice: a lower --lr
        if restart is None:
            check_same_config(ckpt["config"], cfg, what="holds a checkpoint trained (--resume)")
        if ckpt.get("dtype", "float32") != dtype:   # never mix fp32 and bf16 steps in one run
            raise ConfigError(f"{cfg.out_dir} was trained in {ckpt.get('dtype', 'float32')}, this machine "
                              f"resolves --dtype {cfg.dtype} to {dtype}; resume with --dtype "
                              f"{ckpt.get('dtype', 'float32')} or choose another --out_dir")
        r.start_step, r.wall_before, r.history = restore_checkpoint(ckpt, model, optimizer)
        r.restarts = json.loads(ckpt.get("restarts", "[]")) + ([restart] if restart else [])
        if r.start_step == steps and os.path.exists(summary_path):   # finished: nothing to redo
            with open(summary_path) as f:
                say(f"{cfg.out_dir} is finished already ({summary_path})")
                r.finished = json.load(f)
            return r
        say(f"resumed from {r.ckpt_path} at step {r.start_step}/{steps}" +
            (f", restarting after divergence with --lr {cfg.lr} (was {restart['lr_before']}); the cosine "
             f"schedule continues from this step with the new peak" if restart else ""))
    if master:
        os.makedirs(cfg.out_dir, exist_ok=True)
        trim_log(log_path, r.start_step)     # lines after the checkpoint (a fresh run: all) are redone
        if not r.start_step and os.path.exists(os.path.join(cfg.out_dir, "diverged.json")):
            os.remove(os.path.join(cfg.out_dir, "diverged.json"))   # a fresh start: the old divergence is gone
    r.ckpt_step = r.start_step or None
    return r


def applied_decay(cfg, p, restarts):
    """sum_t lr_t * wd over the run: the plan's, or after restarts each segment at its own peak lr."""
    if not restarts:
        return p.decay_budget
    peaks = [(0, restarts[0]["lr_before"])] + [(x["step"], x["lr"]) for x in restarts]
    return cfg.wd * sum(lr_at(t, p.steps, p.warmup_steps, [pk for s0, pk in peaks if s0 <= t][-1])
                        for t in range(p.steps))


def announce(cfg, p, micro_why, model, ds, source, world, device, dtype, use_compile, decay_budget, restarts,
             master, say):
    """Write config.json (the config and everything derived from it) and print the run's plan; returns
    the derived values."""
    T, n_params, n_nonembed = cfg.seq_len, model.num_params(), model.num_params(non_embedding=True)
    derived = dict(steps=p.steps, warmup_steps=p.warmup_steps, grad_accum=p.accum, micro_batch=p.micro,
                   micro_batch_why=micro_why, world=world,
                   n_seq=source.n_seq, D=source.n_seq * T, N=n_params, N_nonembed=n_nonembed,
                   flops_per_token=model.flops_per_token(T), decay_budget=decay_budget,
                   resolved_device=str(device), resolved_dtype=dtype_name(dtype), resolved_compile=use_compile,
                   vocab=ds.meta["vocab_size"], tokenizer=ds.meta["tokenizer"], **code_version(),
                   **({"restarts": restarts} if restarts else {}))
    if master:
        atomic_write_json(os.path.join(cfg.out_dir, "config.json"), {**asdict(cfg), **derived})
    say(json.dumps({**asdict(cfg), **derived}))
    say(f"model {cfg.model}: {n_params:,} parameters ({n_nonembed:,} non-embedding), vocab {ds.meta['vocab_size']}")
    say(f"data {cfg.dataset}: D = {source.n_seq * T:,} tokens = {source.n_seq} sequences of {T}; {cfg.epochs} epochs = "
        f"{p.steps} steps of {cfg.batch_size} ({world} ranks x {p.accum} micro-steps x {p.micro}); "
        f"decay budget sum(lr*wd) = {decay_budget:.3g}")
    say(f"micro-batch {p.micro}: " + ("--micro_batch" if fixed_micro_batch(cfg.micro_batch) else f"auto, {micro_why}"))
    return derived


def wrap_model(raw_model, use_compile, world, device):
    """(the model to train, the model to evaluate): compiled when asked, and under torchrun the one to
    train wrapped in DDP (evaluation needs no gradient collectives)."""
    if use_compile:
        # a sweep trains run after run in one process: without a reset every run's graphs add up in
        # dynamo's cache of GPT.forward until it hits its recompile limit and the rest run eager
        torch._dynamo.reset()
    eval_model = compile_model(raw_model) if use_compile else raw_model
    if world == 1:
        return eval_model, eval_model
    # wrap in DDP first, then compile: dynamo then splits the graph at DDP's gradient buckets, so each
    # bucket's all-reduce overlaps the rest of the backward (compiling first makes the whole backward
    # one node, and communication starts only after it)
    model = torch.nn.parallel.DistributedDataParallel(
        raw_model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)
    return (compile_model(model) if use_compile else model), eval_model


class LossMeter:
    """The training loss summed on the device between log lines and read only there (no host sync per
    step), with the tokens and seconds since the last reset. members=K: batched.py's (K,) losses."""

    def __init__(self, device, members=None):
        self.device = device
        self.total = torch.zeros(() if members is None else members, device=device)
        self.reset()

    def reset(self):
        self.total.zero_()
        self.n, self.tokens, self.t0 = 0, 0, time.time()

    def add(self, loss, tokens):
        self.total += loss
        self.n, self.tokens = self.n + 1, self.tokens + tokens

    def read(self, world):
        """(mean train loss over the steps and ranks, tokens/s, seconds per step) since the reset; the
        loss is a list of K for stacked members."""
        if world > 1:
            dist.all_reduce(self.total)
            self.total /= world
        loss = self.total.item() / self.n if self.total.dim() == 0 else (self.total / self.n).tolist()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        dt = time.time() - self.t0
        return loss, self.tokens / dt, dt / self.n


def log_line(rec, steps, peak, eta):
    mfu = f" mfu {100 * rec['mfu']:.1f}%" if peak else ""
    val = f" val {rec['val_loss']:.4f} |w| {rec['param_norm']:.1f}" if "val_loss" in rec else ""
    return (f"step {rec['step']}/{steps} ep {rec['epoch']:.2f} | train {rec['train_loss']:.4f}{val} | "
            f"lr {rec['lr']:.2e} | {rec['tok_s']:,.0f} tok/s{mfu} | eta {eta:.0f}s")


def append_log(r, rec):
    if r.master:
        with open(os.path.join(r.cfg.out_dir, "log.jsonl"), "a") as f:
            f.write(json.dumps(rec) + "\n")


def checkpoint(r, raw_model, optimizer, done, steps, loss_now, vocab, signum, elapsed):
    """Save ckpt.pt if the weights are sound. Every rank checks (DDP keeps the weights identical, so all
    agree) and only rank 0 saves. Non-finite weights or loss stop the run (diverged); weights a nat
    worse than the uniform predictor have blown up, and a restart from them fails too, so the previous
    checkpoint stays the one to go back to (a run that ends like this still writes its last one, and
    is flagged; a signal saves where it stopped)."""
    ok, wmax = params_finite(raw_model, loss_now)
    if not ok:
        diverged(r, done, f"non-finite weights or loss on them (max |w| {wmax:.3g})")
    healthy = loss_now <= math.log(vocab) + 1.0 or done == steps or signum
    if r.master and healthy:
        save_checkpoint(r.ckpt_path, raw_model, optimizer, done, r.cfg,
                        {"wall_s": elapsed, "history": json.dumps(r.history), "dtype": r.dtype,
                         "restarts": json.dumps(r.restarts)})
        if os.path.exists(os.path.join(r.cfg.out_dir, "diverged.json")):   # past the divergence now
            os.remove(os.path.join(r.cfg.out_dir, "diverged.json"))
    if healthy:
        r.ckpt_step = done


def diverged(r, done, what):
    """Stop on divergence, keeping the last checkpoint whose weights passed params_finite, and say how
    to restart from it (a lower --lr is the one change --resume then allows)."""
    cfg = r.cfg
    lr = f"{min(cfg.lr / 3, TrainConfig.lr):.3g}"    # a third, at most the default
    if r.ckpt_step:
        if r.master:
            atomic_write_json(os.path.join(cfg.out_dir, "diverged.json"),
                              {"step": done, "ckpt_step": r.ckpt_step, "lr": cfg.lr, "what": what})
        advice = (f"the last good checkpoint (step {r.ckpt_step}: finite weights, loss below log(V) + 1) is kept "
                  f"in {r.ckpt_path}; restart from it with a lower learning rate: "
                  f"{rerun_command(cfg, ['--resume', '--lr', lr], r.world)}")
    else:
        advice = f"no checkpoint was written; rerun with a lower learning rate: {rerun_command(cfg, ['--lr', lr], r.world)}"
    raise FloatingPointError(f"{what} at step {done}; {advice}")


def write_summary(cfg, r, final, derived, source, ds, val_windows, skip, device, wall_s, summary_extra, steps, say):
    """summary.json: the schema fit.py, ensemble.py and sweep.py read; a finished run that looks
    diverged without a non-finite loss (check_divergence) is flagged in it."""
    summary = {
        "recipe": cfg.recipe, "dataset": cfg.dataset, "tokenizer": ds.meta["tokenizer"],
        "data_fingerprint": data.meta_fingerprint(ds.meta),
        "vocab": ds.meta["vocab_size"], "model": cfg.model, "N": derived["N"], "N_nonembed": derived["N_nonembed"],
        "D": derived["D"], "epochs": cfg.epochs, "lr": cfg.lr, "wd": cfg.wd, "batch_size": cfg.batch_size,
        "seq_len": cfg.seq_len, "seed": cfg.seed, "data_seed": cfg.data_seed, "steps": steps,
        "val_loss": final["val_loss"], "train_loss": final["train_eval_loss"],
        "decay_budget": derived["decay_budget"], "wall_s": wall_s,
        "hardware": hardware_name(device), "dtype": r.dtype, "compile": derived["resolved_compile"],
        "torch": derived["torch"], "git": derived["git"], "world": r.world,
        "val_tokens": int(val_windows[:, 1 + skip:].size), "history": r.history, "init_from": cfg.init_from,
        **source.summary(steps),
    }
    if ds.meta.get("tokenizer") == "synthetic":
        summary["limits"] = synthetic.limits(ds, derived["D"] + 1, val_windows)
    if r.restarts:
        summary["restarts"] = r.restarts    # not the uninterrupted run: it restarted at a lower lr
    log_path = os.path.join(cfg.out_dir, "log.jsonl")
    why = check_divergence(log_path, summary["val_loss"], ds.meta["vocab_size"]) if r.master and steps > 0 else None
    if why:
        summary["diverged"], summary["diverged_reason"] = True, why
        print(f"warning: {cfg.out_dir} looks diverged: {why}; summary.json flags it (diverged: true)",
              file=sys.stderr, flush=True)
    summary.update(summary_extra or {})
    if r.master:
        atomic_write_json(os.path.join(cfg.out_dir, "summary.json"), summary)
        lim = summary.get("limits")
        extra = (f" | limits on these val tokens: Bayes-optimal predictor given this D {lim['bayes']:.4f}, "
                 f"true source {lim['entropy']:.4f} (entropy rate {lim['entropy_rate']:.4f})" if lim else "")
        say(f"done: val loss {summary['val_loss']:.4f}, train loss {summary['train_loss']:.4f}{extra} "
            f"| {summary['wall_s']:.0f}s -> {cfg.out_dir}/summary.json")
    return summary


def stop_at_checkpoint(signum, done, steps, ckpt_path, cfg, world, master):
    """After the checkpoint of a signalled step: say how to resume, exit with 128 + the signal number."""
    import signal
    if world > 1:
        dist.barrier()      # no rank exits (torchrun would then kill the others) before rank 0 has saved
    if master:
        entry = os.path.basename(sys.argv[0])
        how = rerun_command(cfg, ["--resume"] if entry in ("train.py", "distill.py") else [], world,
                            same_entry=entry in ("sweep.py", "ensemble.py"))
        print(f"stopped by {signal.Signals(signum).name} after step {done}/{steps}; checkpoint {ckpt_path}; "
              f"resume with: {how}", file=sys.stderr, flush=True)
    raise SystemExit(128 + signum)


def run_cli(body):
    """Run a command-line entry point: bad input is one line on stderr and exit code 2, a diverged run
    exit code 3; the process group, if any, is torn down either way. train.py, ensemble.py and
    distill.py share it."""
    try:
        body()
    except (ConfigError, data.DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except FloatingPointError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(3)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def main(argv=None):
    def body():
        cfg = parse_args(argv)
        rank, world, local_rank = setup_distributed(cfg.device)
        train(cfg, rank, world, local_rank)
    run_cli(body)


if __name__ == "__main__":
    main()
