"""
K members as one stacked model (ensemble.py --batched).

The ensemble's members (member i: seed + i, data_seed + i) take every optimizer step together, in one
process, instead of training one after another:
  - each parameter is stacked on a leading member dimension (torch.func.stack_module_state), and one
    torch.func.vmap of GPT.forward over (parameters, batch) runs the K forwards and backwards as
    batched kernels;
  - each member keeps its own init (train.build_model from its seed), its own data order (an
    EpochStream of its data_seed), its own AdamW state (AdamW is elementwise, so one AdamW over the
    stacked tensors is K AdamWs with the same hyperparameters) and its own gradient clipping
    (StackedGPT.clip_grad_norm_);
  - the step is train.train_step itself (the loss is the (K,) member losses), the evaluation
    train.eval_record and the checkpoint train.save_checkpoint, member by member.
Members are written as ordinary train.py runs (ckpt.pt with the AdamW state a lone run of the member
would have, log.jsonl, config.json, summary.json), so evaluation, distill.py, fit.py and
`train.py --resume` read them as before.

When it pays: on a GPU, where one small model cannot fill the device, the members share each kernel
launch instead of queueing up one after another (bench.py measures member-tokens/s both ways). On a
CPU it is slower than training them one by one. It needs --attn sdpa (FlexAttention does not run
under vmap) and trains on the dataset alone (no --mix_data).
"""
import contextlib
import copy
import dataclasses
import json
import math
import os
import time
import warnings

import numpy as np
import torch

import train
from model import GPT
from train import ConfigError, TrainConfig, check_same_config


# ----------------------------------------------------------------------------
# The stacked model and its optimizer state

class StackedGPT:
    """K GPTs of one shape as one model: `params` maps each parameter name to a (K, ...) leaf tensor.
    Offers what train.py asks of a model for its optimizer (optimizer_groups), so train.make_optimizer
    builds the stacked AdamW with the same decay set, and for its step (clip_grad_norm_, per member)."""

    def __init__(self, models, use_compile=False):
        # CPU attention has no vmap rule and runs member by member (the same kernel as train.py; CUDA's
        # flash, efficient and cuDNN attention have one): no need to warn about it
        warnings.filterwarnings("ignore", message=".*batching rule for aten::_scaled_dot_product")
        self.K, self.cfg = len(models), models[0].cfg
        self.params, _ = torch.func.stack_module_state(models)        # name -> (K, *shape), requires grad
        self.buffers = dict(models[0].named_buffers())                # rotary tables: the same for every member
        with torch.device("meta"):
            self.base = GPT(self.cfg)                                 # the functional template, no storage
        self.base.checkpoint_head = False     # torch.utils.checkpoint fails under vmap (its recompute runs outside it)
        self.loss = train.compile_model(self._loss) if use_compile else self._loss

    def _loss(self, x, y):
        """x, y (K, B, T) -> (K,) each member's mean cross-entropy on its own batch (GPT.forward's)."""
        def member(params, x, y):
            return torch.func.functional_call(self.base, (params, self.buffers), (x, y))[1]
        return torch.func.vmap(member)(self.params, x, y)

    def optimizer_groups(self, weight_decay):
        """GPT.optimizer_groups with each parameter replaced by its stack, in the same order."""
        name = {id(p): n for n, p in self.base.named_parameters()}
        return [{**g, "params": [self.params[name[id(p)]] for p in g["params"]]}
                for g in self.base.optimizer_groups(weight_decay)]

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm):
        """torch.nn.utils.clip_grad_norm_ per member: member k's gradients are scaled by
        min(1, max_norm / (norm_k + 1e-6)), norm_k the 2-norm of all its gradients. Returns (K,) norms."""
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        norms = torch.stack([torch.linalg.vector_norm(g, dim=tuple(range(1, g.dim()))) for g in grads])  # (P, K)
        total = torch.linalg.vector_norm(norms, dim=0)                                                     # (K,)
        coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *[1] * (g.dim() - 1)).to(g.dtype))
        return total

    def member_state_dict(self, k):
        """Member k's GPT state_dict (its own copy, the usual key names)."""
        return {n: p[k].detach().clone() for n, p in self.params.items()}


def member_losses(stacked, x, y):
    """train.train_step's loss_fn for a StackedGPT: x, y (K, micro, T) -> the (K,) member losses. They
    share no parameter, so the gradient of their sum is each member's own."""
    return stacked.loss(x, y)


def member_optimizer_state(state, k):
    """Member k's share of a stacked AdamW state_dict: the state_dict train.make_optimizer's AdamW of
    that member alone would have (same parameter order, its slice of exp_avg and exp_avg_sq)."""
    return {"state": {i: {n: v.clone() if n == "step" else v[k].clone() for n, v in s.items()}
                      for i, s in state["state"].items()},
            "param_groups": copy.deepcopy(state["param_groups"])}


def stack_optimizer_states(states):
    """The inverse of member_optimizer_state: K members' AdamW state_dicts as one stacked state_dict."""
    first = states[0]
    return {"state": {i: {n: v if n == "step" else torch.stack([s["state"][i][n] for s in states])
                          for n, v in st.items()} for i, st in first["state"].items()},
            "param_groups": first["param_groups"]}


# ----------------------------------------------------------------------------
# Training the members together

@dataclasses.dataclass
class Member:
    """One member of the batched run: its index and config, and where its checkpoint left it."""
    i: int
    cfg: TrainConfig
    model: GPT                      # built as train.train builds it, with the checkpoint's weights if any
    optimizer_state: dict = None    # the checkpoint's AdamW state (None: a fresh start)
    step: int = 0
    wall_s: float = 0.0
    history: list = dataclasses.field(default_factory=list)


def load_member(i, cfg, meta, device, dtype_name):
    """Member i as train.train would start it: built from its seed, then restored from its checkpoint if
    it has one (the optimizer state is kept aside, to be stacked with the other members')."""
    m = Member(i, cfg, train.build_model(cfg, meta, device))
    path = os.path.join(cfg.out_dir, "ckpt.pt")
    if os.path.exists(path):
        ckpt = train.load_checkpoint(path, device)
        check_same_config(ckpt["config"], cfg, what="holds a checkpoint trained")
        if ckpt.get("dtype", "float32") != dtype_name:   # never mix fp32 and bf16 steps in one member
            raise ConfigError(f"{cfg.out_dir} was trained in {ckpt.get('dtype', 'float32')}, this run resolves "
                              f"--dtype {cfg.dtype} to {dtype_name}; rerun with --dtype {ckpt.get('dtype', 'float32')}")
        m.step, m.wall_s, m.history = train.restore_checkpoint(ckpt, m.model)
        m.optimizer_state = ckpt["optimizer"]
    return m


def train_members_batched(members, local_rank=0, quiet=False):
    """Train members {i: member i's TrainConfig} (ensemble.member_config's, unfinished ones) together as
    one stacked model, in this process. Each starts fresh or resumes from its checkpoint; those must
    stand at one step (as a batched run leaves them). Each member's summary.json then comes from
    train.train itself, resuming the member's final checkpoint (so it is exactly a train.py summary);
    its wall_s is its share of the batched run (the batched wall time / members trained together).
    Returns {i: summary}."""
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    if not members:
        return {}
    cfg = next(iter(members.values()))    # the members differ only in out_dir and seeds
    if cfg.mix_data:
        raise ConfigError("--batched trains ensemble members on the dataset alone; --mix_data is for distill.py")
    if cfg.attn != "sdpa":
        raise ConfigError("--batched needs --attn sdpa (FlexAttention does not run under torch.func.vmap)")
    t_start = time.time()
    device, dtype, use_compile = train.resolve_device(cfg, local_rank)
    ds, train_windows, val_windows, skip = train.load_data(cfg)
    T, B, n_real = cfg.seq_len, cfg.batch_size, len(train_windows)
    p = train.plan(cfg, n_real, B)
    steps = p.steps
    dtype_name = train.dtype_name(dtype)

    # every member's folder is locked while the stack trains into it (train.lock_run_dir), as a lone
    # train.py run locks its own: two processes never train one member
    with contextlib.ExitStack() as held:
        for c in members.values():
            held.callback(train.lock_run_dir(c.out_dir))
        # members whose final checkpoint lacks only its summary need no training
        group = [m for m in (load_member(i, c, ds.meta, device, dtype_name) for i, c in members.items())
                 if m.step < steps]
        if len({m.step for m in group}) > 1:
            raise ConfigError("--batched resumes members from one step, but they stand at steps " +
                              ", ".join(f"member_{m.i}: {m.step}" for m in group) +
                              f" of {steps}; finish them without --batched (each resumes on its own)")
        if group:
            start, n = group[0].step, len(group)
            scratch = group[0].model        # a plain GPT to evaluate and save one member at a time
            stacked = StackedGPT([m.model for m in group], use_compile)
            optimizer = train.make_optimizer(stacked, cfg, device)
            if start:
                optimizer.load_state_dict(stack_optimizer_states([m.optimizer_state for m in group]))
            for m in group:                 # the stack holds their weights and AdamW state now
                m.model = m.optimizer_state = None
            streams = [train.EpochStream(n_real, m.cfg.data_seed) for m in group]
            flops_tok, peak = scratch.flops_per_token(T), train.peak_flops(device, dtype)
            for m in group:
                os.makedirs(m.cfg.out_dir, exist_ok=True)
            say(f"batched: members {', '.join(str(m.i) for m in group)} of {cfg.model} ({scratch.num_params():,} "
                f"parameters each) as one model on {device}; steps {start}..{steps} of {B} x {T} tokens each")

            def micro_batches(step):
                """The accum micro-batches of step `step`: (K, micro, T) inputs and targets, each member's
                rows from its own data order."""
                idx = [s.micro_indices(step, B, 0, 1, p.accum) for s in streams]
                for a in range(p.accum):
                    w = train.to_device(np.stack([train_windows.get(ix[a]) for ix in idx]), device)   # (K, micro, T+1)
                    yield w[..., :-1], w[..., 1:]

            def unstack(j):
                """Member j of the stack as the plain GPT `scratch`."""
                scratch.load_state_dict(stacked.member_state_dict(j))
                return scratch

            def save(j, m, step, wall, state):
                """Member j's checkpoint, as train.train writes it (its own AdamW state from the stacked one)."""
                model = unstack(j)
                opt = train.make_optimizer(model, cfg, device)
                opt.load_state_dict(member_optimizer_state(state, j))
                train.save_checkpoint(os.path.join(m.cfg.out_dir, "ckpt.pt"), model, opt, step, m.cfg,
                                      {"wall_s": wall, "history": json.dumps(m.history), "dtype": dtype_name})

            # ---- the loop: train.loop, with every member's log line, evaluation and checkpoint ----
            meter = train.LossMeter(device, members=n)
            step_fn = lambda step, lr: train.train_step(stacked, stacked, optimizer, micro_batches(step), lr,  # noqa: E731
                                                        cfg.grad_clip, p.accum, device, dtype, member_losses)
            for t in train.loop(p, start, cfg.lr, step_fn, meter, B * T):    # t.tok_s: each member's own tokens/s
                bad = [m.i for m, l in zip(group, t.train_loss) if not math.isfinite(l)]
                if bad:
                    raise FloatingPointError(f"non-finite training loss at step {t.done} in member(s) {bad}; the last "
                                             f"good checkpoints are kept; lower --lr or check the data")
                share = (time.time() - t_start) / n                   # each member's share of the wall time
                state = optimizer.state_dict() if t.is_ckpt else None
                vals = []
                for j, m in enumerate(group):
                    rec = {"step": t.done, "epoch": t.done * B / n_real, "train_loss": t.train_loss[j], "lr": t.lr,
                           "tok_s": t.tok_s, "mfu": flops_tok * t.tok_s / peak if peak else None,
                           "elapsed_s": m.wall_s + share, "batched": n}
                    if t.is_eval:
                        model = unstack(j)
                        rec.update(train.eval_record(model, model, val_windows, train_windows, p.micro, device, dtype,
                                                     skip, final=t.done == steps))
                        m.history.append({k: rec[k] for k in ("step", "epoch", "train_loss", "val_loss", "param_norm")})
                        vals.append(rec["val_loss"])
                    with open(os.path.join(m.cfg.out_dir, "log.jsonl"), "a") as f:
                        f.write(json.dumps(rec) + "\n")
                    if t.is_ckpt:
                        save(j, m, t.done, m.wall_s + share, state)
                val = f" | val {min(vals):.4f}..{max(vals):.4f}" if vals else ""
                say(f"step {t.done}/{steps} | train {min(t.train_loss):.4f}..{max(t.train_loss):.4f}{val} | "
                    f"lr {t.lr:.2e} | {n * t.tok_s:,.0f} member-tok/s ({n} x {t.tok_s:,.0f}) | "
                    f"eta {(steps - t.done) * t.step_s:.0f}s")
            del stacked, optimizer, scratch

    # summaries: train.train resumes each finished checkpoint and writes config.json and summary.json as
    # for any run (compile off: the one evaluation would not repay compiling a model per member)
    summaries = {}
    for i, c in members.items():
        summaries[i] = train.train(dataclasses.replace(c, compile="false"), local_rank=local_rank, quiet=True,
                                   summary_extra={"member": i, "batched": len(members)})
        say(f"member_{i} (batched): val loss {summaries[i]['val_loss']:.4f}")
    return summaries
