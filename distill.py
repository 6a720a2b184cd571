"""
Distillation (paper section 8): train one student from a teacher -- one run, or an ensemble of runs --
on the same D real tokens.

    # sequence-level (the paper's method): sample a corpus from the teacher, train on real + synthetic
    python distill.py --teacher out/ens --model tiny-530k --epochs 8 --wd 0.1
    python distill.py --teacher out/ens/member_0 out/ens/member_1 --mix_weight 0.9 --corpus_tokens 2000000
    python distill.py --teacher out/ens --teacher_sampling pooled --corpus_only   # just the corpus
    # logit distillation on the real data (not what the paper did; a comparison that peers use)
    python distill.py --mode logit --teacher out/ens --alpha 0.5 --kd_temp 2.0 --model tiny-530k
    torchrun --nproc_per_node 4 distill.py --teacher out/ens ...   # ranks sample disjoint chunks, then DDP

--mode seq. The teacher samples whole sequences from an empty context (the end-of-document token) at
--temperature, from its combined distribution: averaged logits (the paper's ensemble rule, the
default), --combine probs (averaged probabilities), or --teacher_sampling pooled (each sequence from
one member in turn, which is what the authors appear to have done: their corpus is named after a
mix of 8 seeds). Every sample is [eot, s_1 .. s_T]: seq_len + 1 tokens, exactly one training window,
written end to end into a dataset folder (--corpus, default OUT_DIR/corpus; val.bin is a copy of the
real val split) whose meta.json says how it was made. train.py then reads it through --mix_data:
each batch has round(w B) synthetic and B - round(w B) real sequences, and the student sees the real
data for --epochs, so it makes epochs * n_real / (B - round(w B)) steps. --mix_weight w defaults to
0.75 (the paper ran 0.75 and 0.9). The corpus defaults to 4 x D sampled tokens, reused across passes
(the student summary's mix.synthetic_passes says how many). Sampling is resumable: every chunk of
--gen_batch sequences is its own file with its own seed (seed, chunk), so a killed run continues where
it stopped and produces the same corpus as an uninterrupted one.

--mode logit. On the real data only: loss = (1 - a) CE + a T^2 KL(teacher || student), both softened
by --kd_temp T; the teacher (its combined distribution for an ensemble) runs on every batch without
gradients.

The student is an ordinary train.py run: every train.py flag works, and --dataset, --train_tokens,
--seq_len and --val_tokens default to the teacher's, so it is evaluated on the same real val tokens.
A teacher over other tokens (tokenizer, vocabulary or dataset) is refused. summary.json gets recipe
("distill" for an ensemble teacher, "self-distill" for one run; "logit-" in front in logit mode),
"teacher" (the member folders), "distill" (how) and, in seq mode, "mix" (from train.py).
"""
import argparse
import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

import data
import train
from data.format import file_sha256
from members import find_members
from model import chunked_logits, ensemble_log_probs, generate, head_logits
from train import ConfigError, TrainConfig, flag

CORPUS_TIMES_D = 4     # default corpus size in units of D: a few times D, reused across passes (the paper does not say how many)


# ----------------------------------------------------------------------------
# Teachers: finished run folders over the same tokens as the student

def load_teachers(paths, device):
    """(models in eval mode without gradients, the dataset they were trained on)."""
    models, ds = [], None
    for p in paths:
        if not os.path.exists(os.path.join(p, "summary.json")):
            raise ConfigError(f"teacher {p} has no summary.json: not a finished run; finish it or leave it out")
        model, ckpt = train.load_model(p, device)
        models.append(model.requires_grad_(False))
        tds = data.load_dataset(ckpt["config"]["dataset"])
        if ds is None:
            ds = tds
        elif tds.meta["source_sha256"] != ds.meta["source_sha256"]:
            raise ConfigError(f"teachers {paths[0]} and {p} were trained on different datasets; "
                              f"an ensemble teacher needs members over the same tokens")
    return models, ds


def check_student(paths, models, tds, cfg, ds):
    """Refuse a student that would learn the teacher's distribution over other tokens."""
    t_tok, s_tok = (tds.meta["tokenizer"], tds.meta["vocab_size"]), (ds.meta["tokenizer"], ds.meta["vocab_size"])
    if t_tok != s_tok or any(m.cfg.vocab_size != ds.meta["vocab_size"] for m in models):
        raise ConfigError(f"teacher {paths[0]} uses tokenizer {t_tok[0]} (vocab {t_tok[1]}) but the student's "
                          f"dataset {cfg.dataset} uses {s_tok[0]} (vocab {s_tok[1]}); distill over the same tokens")
    if tds.meta["source_sha256"] != ds.meta["source_sha256"]:
        raise ConfigError(f"teacher {paths[0]} was trained on {tds.path}, the student on {ds.path}; pass the "
                          f"teacher's --dataset (or leave --dataset out to use it)")
    block = min(m.cfg.block_size for m in models)
    if cfg.seq_len > block:
        raise ConfigError(f"the student's --seq_len {cfg.seq_len} is longer than the teacher's {block}; "
                          f"the teacher never saw positions past {block}")


# ----------------------------------------------------------------------------
# Sequence-level distillation: a synthetic corpus sampled from the teacher, in chunks

def chunk_seed(seed, chunk):
    """Each chunk's own seed: chunk c is the same whichever run, rank or restart samples it."""
    return int(np.random.SeedSequence([seed, chunk]).generate_state(1)[0])


def sample_chunk(models, first_row, n, T, eot, temperature, combine, sampling, generator):
    """n samples of T tokens after an end-of-document token: an int64 tensor (n, T+1). Row r of the
    corpus (r = first_row + i) comes from the combined distribution, or from member r mod K (pooled)."""
    device = models[0].lm_head.weight.device
    idx = torch.full((n, 1), eot, dtype=torch.long, device=device)              # (n, 1) empty context
    if sampling == "averaged" or len(models) == 1:
        return generate(models, idx, T, temperature, generator=generator, combine=combine)  # (n, T+1)
    out = torch.empty(n, T + 1, dtype=torch.long, device=device)                # (n, T+1)
    member = (first_row + torch.arange(n, device=device)) % len(models)         # (n,)
    for k, m in enumerate(models):
        rows = (member == k).nonzero().squeeze(1)                               # (n_k,)
        if len(rows):
            out[rows] = generate([m], idx[rows], T, temperature, generator=generator)
    return out


# where the teachers and the dataset were when a corpus was sampled: recorded, but a corpus is matched
# on their content (the SHA-256s beside them), so moving or copying a run folder keeps its corpus
WHERE = ("teachers", "dataset")


def same_corpus(stored, spec):
    """Whether a stored corpus spec describes the corpus `spec` asks for (paths aside)."""
    drop = lambda d: {k: v for k, v in (d or {}).items() if k not in WHERE}     # noqa: E731
    return stored is not None and drop(stored) == drop(spec)


def generate_corpus(models, paths, ds, out, n_tokens, seq_len, temperature=1.0, seed=0, combine="logits",
                    sampling="averaged", batch=64, dtype=torch.float32, max_chunks=None, rank=0, world=1,
                    quiet=False):
    """Sample ceil(n_tokens / seq_len) sequences of seq_len + 1 tokens into the dataset folder `out`
    (atomically, at the end) and return `out`. Chunks of `batch` sequences go to out.partial/ as they
    finish, so a rerun continues; max_chunks stops after that many new chunks (returns None)."""
    say = (lambda *a: print(*a, flush=True)) if rank == 0 and not quiet else (lambda *a: None)
    T, eot = seq_len, ds.meta["eot_token"]
    n_seq = math.ceil(n_tokens / T)
    # what the corpus is a function of; a stored corpus or partial run is reused only if it matches
    spec = {"teachers": [os.path.abspath(p) for p in paths],
            "teacher_sha256": [file_sha256(os.path.join(p, "ckpt.pt")) for p in paths],
            "sampling": sampling if len(paths) > 1 else "single",
            "combine": combine if sampling == "averaged" and len(paths) > 1 else None,
            "temperature": temperature, "seed": seed, "seq_len": T, "sequences": n_seq,
            "sampled_tokens": n_seq * T, "chunk_sequences": batch, "dataset": ds.path,
            "dataset_sha256": ds.meta["source_sha256"]}
    meta = {"name": "teacher-corpus", "tokenizer": ds.meta["tokenizer"], "vocab_size": ds.meta["vocab_size"],
            "eot_token": eot, "eval_skip": int(ds.meta.get("eval_skip", 0)),
            "source_sha256": hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest(),
            # train.py cuts the corpus at every seq_len + 1 tokens: samples share no boundary token
            "sequence_tokens": T + 1, "teacher": spec}
    if os.path.exists(os.path.join(out, "meta.json")):
        with open(os.path.join(out, "meta.json")) as f:
            if not same_corpus(json.load(f).get("teacher"), spec):
                raise ConfigError(f"{out} holds a corpus sampled with other settings; delete it or choose "
                                  f"another --corpus")
        if rank == 0:   # chunks left by a run killed between writing the corpus and deleting them
            shutil.rmtree(out.rstrip("/") + ".partial", ignore_errors=True)
        say(f"corpus: reusing {out} ({n_seq:,} sequences, {n_seq * T:,} sampled tokens)")
        return out

    part = out.rstrip("/") + ".partial"
    spec_file = os.path.join(part, "spec.json")
    if rank == 0:
        os.makedirs(part, exist_ok=True)
        if not os.path.exists(spec_file):
            train.atomic_write_json(spec_file, spec)
    if world > 1:
        dist.barrier()
    with open(spec_file) as f:
        if not same_corpus(json.load(f), spec):
            raise ConfigError(f"{part} holds a partial corpus sampled with other settings; delete it or "
                              f"choose another --corpus")

    chunk_file = lambda c: os.path.join(part, f"chunk_{c:06d}.npy")
    n_chunks = math.ceil(n_seq / batch)
    todo = [c for c in range(rank, n_chunks, world) if not os.path.exists(chunk_file(c))]   # rank r: chunks r, r+W, ..
    done_before = n_chunks - sum(not os.path.exists(chunk_file(c)) for c in range(n_chunks))
    if done_before:
        say(f"corpus: resuming, {done_before}/{n_chunks} chunks already in {part}")
    how = {"single": "one teacher", "pooled": f"{len(models)} members in turn (pooled)",
           "averaged": f"{len(models)} members' averaged {combine}"}[spec["sampling"]]
    say(f"corpus: sampling {n_seq:,} sequences of {T} tokens ({n_seq * T:,} tokens) from {how}, "
        f"temperature {temperature}, seed {seed}")
    device = models[0].lm_head.weight.device
    t0, t_say, sampled = time.time(), 0.0, 0
    for i, c in enumerate(todo):
        if max_chunks is not None and i == max_chunks:
            return None
        n = min(batch, n_seq - c * batch)
        g = torch.Generator(device=device).manual_seed(chunk_seed(seed, c))
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            rows = sample_chunk(models, c * batch, n, T, eot, temperature, combine, sampling, g)   # (n, T+1)
        with open(chunk_file(c) + ".tmp", "wb") as f:         # tmp + rename: a chunk file is whole or absent
            np.save(f, rows.cpu().numpy().astype(data.token_dtype(ds.meta["vocab_size"])))
        os.replace(chunk_file(c) + ".tmp", chunk_file(c))
        sampled += n * T
        dt = time.time() - t0
        if time.time() - t_say > 10 or i == len(todo) - 1:
            t_say = time.time()
            say(f"corpus: chunk {done_before + (i + 1) * world}/{n_chunks} | {sampled * world / dt:,.0f} tok/s | "
                f"eta {(len(todo) - i - 1) * dt / (i + 1):.0f}s")
    if world > 1:
        dist.barrier()

    if rank == 0:   # all chunks are there: one dataset, written atomically, then the chunks go
        tokens = np.concatenate([np.load(chunk_file(c)) for c in range(n_chunks)]).reshape(-1)    # (n_seq * (T+1),)
        data.write_dataset(out, tokens, np.asarray(ds.val), meta)
        shutil.rmtree(part)
        rate = f" ({sampled / (time.time() - t0):,.0f} tok/s)" if sampled else ""
        say(f"corpus: {n_seq:,} sequences -> {out}{rate}")
    if world > 1:
        dist.barrier()
    return out


# ----------------------------------------------------------------------------
# Logit distillation: (1 - a) CE + a T^2 KL(teacher || student) on the real batches

def teacher_log_probs(models, x, temperature=1.0, combine="logits"):
    """The teacher's combined log-distribution, softened by `temperature`, for inputs x (B, T): (B, T, V).
    Whole sequences at once: for short inputs and tests; kd_loss works in chunks instead."""
    logits = torch.stack([m(x)[0] / temperature for m in models])              # (K, B, T, V)
    return ensemble_log_probs(logits, combine)                                  # (B, T, V)


def kd_loss(teachers, alpha=0.5, temperature=1.0, combine="logits"):
    """A train.train loss_fn. T^2 keeps the KL's gradient on the CE's scale as T changes (Hinton et al.).
    Student and teacher logits are made chunk by chunk of positions (model.chunked_logits), so no
    (B, T, V) tensor of either exists at once nor is kept for backward."""
    def loss_fn(model, x, y):
        if alpha == 0:
            return model(x, y)[1]
        h, _ = model(x, hidden=True)                                            # (B, T, C), through DDP/compile
        head = getattr(model, "module", model)                                  # DDP keeps the GPT in .module
        head = getattr(head, "_orig_mod", head).lm_head.weight                  # (V, C)
        with torch.no_grad():
            t_hs = [m(x, hidden=True)[0] for m in teachers]                     # K x (B, T, C)
        t_heads = [m.lm_head.weight for m in teachers]

        def chunk(z, c):
            """(CE sum, KL sum) over positions c; z (1, B, t, V) the student's fp32 logits there."""
            with torch.no_grad():
                t_logp = ensemble_log_probs(head_logits(t_hs, t_heads, c) / temperature, combine)  # (B, t, V)
            V = z.size(-1)
            ce = F.cross_entropy(z[0].reshape(-1, V), y[:, c].reshape(-1), reduction="sum")
            s_logp = F.log_softmax(z[0] / temperature, dim=-1)                  # (B, t, V)
            kl = F.kl_div(s_logp.reshape(-1, V), t_logp.reshape(-1, V), reduction="sum", log_target=True)
            return torch.stack([ce, kl])

        # chunks sized for the student's logits, its log-softmax and the K teachers' logits
        ce, kl = chunked_logits(chunk, [h], [head], copies=2 + len(teachers)) / y.numel()   # means over B T
        return (1 - alpha) * ce + alpha * temperature ** 2 * kl
    return loss_fn


# ----------------------------------------------------------------------------
# Sequence-level distillation's batches: real and teacher sequences in every batch

class MixedBatches(train.Batches):
    """train.py's batch source for a student: each batch of B holds round(w B) teacher samples (from
    cfg.mix_data, in their own exact epochs) and B - round(w B) real sequences, in that share in every
    micro-batch. The epochs count the real data, so the student makes epochs * n_real / (B - round(w B))
    steps, however many passes over the teacher corpus that is."""

    def __init__(self, cfg, ds, windows):
        super().__init__(cfg, ds, windows)
        T, mix_ds = cfg.seq_len, data.load_dataset(cfg.mix_data)
        if mix_ds.meta["vocab_size"] != ds.meta["vocab_size"] or mix_ds.meta["tokenizer"] != ds.meta["tokenizer"]:
            raise ConfigError(f"--mix_data {cfg.mix_data} has tokenizer {mix_ds.meta['tokenizer']}/"
                              f"{mix_ds.meta['vocab_size']}, the dataset has {ds.meta['tokenizer']}/"
                              f"{ds.meta['vocab_size']}; sample the corpus with a matching teacher")
        if "sequence_tokens" in mix_ds.meta:   # distill.py's corpus: independent samples of T+1 tokens
            if mix_ds.meta["sequence_tokens"] != T + 1:
                raise ConfigError(f"--mix_data {cfg.mix_data} holds samples of {mix_ds.meta['sequence_tokens']} "
                                  f"tokens, this run needs {T + 1} (--seq_len {T}); sample a corpus for it")
            self.mix = data.Samples(mix_ds.train, T)
        else:
            self.mix = data.train_sequences(mix_ds.train, len(mix_ds.train), T)
        self.mix_data, self.mix_weight = cfg.mix_data, cfg.mix_weight
        self.n_syn = round(cfg.mix_weight * cfg.batch_size)          # teacher sequences per step
        self.per_step = cfg.batch_size - self.n_syn                  # real sequences per step
        if self.per_step <= 0:
            raise ConfigError("--mix_weight leaves no real sequences in a batch; lower it")
        self.mix_stream = train.EpochStream(len(self.mix), cfg.data_seed)

    def splits(self, parts):
        return self.per_step % parts == 0 and self.n_syn % parts == 0

    def describe(self):
        return f"{self.per_step} real + {self.n_syn} teacher sequences"

    def micro_batches(self, step, rank, world, accum, device):
        real = self.stream.micro_indices(step, self.per_step, rank, world, accum)
        syn = self.mix_stream.micro_indices(step, self.n_syn, rank, world, accum)
        for m in range(accum):
            rows = np.concatenate([self.windows.get(real[m]), self.mix.get(syn[m])])   # (micro, T+1)
            w = train.to_device(rows, device)                                          # (micro, T+1)
            yield w[:, :-1], w[:, 1:]

    def summary(self, steps):
        return {"mix": {"data": self.mix_data, "weight": self.mix_weight, "synthetic_per_step": self.n_syn,
                        "real_per_step": self.per_step, "synthetic_passes": steps * self.n_syn / len(self.mix)}}


# ----------------------------------------------------------------------------
# The student: an ordinary train.py run

SEQ_MIX_WEIGHT = 0.75   # --mix_weight of --mode seq unless given: the paper ran 0.75 and 0.9


@dataclass
class DistillConfig:
    """distill.py's own options, each default once beside its flag's help and range (the student's
    are TrainConfig's)."""
    mode: str = flag("seq", "seq: the paper's sequence-level (a sampled corpus mixed into the batches) | "
                            "logit: a KL-to-teacher term on the real data")
    combine: str = flag("logits", "ensemble rule: logits (averaged logits, the paper's) | probs")
    # sequence-level
    teacher_sampling: str = flag("averaged", "averaged: sample the combined distribution | pooled: each "
                                             "sequence from one member in turn")
    corpus: str = flag("", "corpus folder (default OUT_DIR/corpus); reused when it matches")
    corpus_tokens: int = flag(0, f"sampled tokens (0 = {CORPUS_TIMES_D} x D)", ">= 0")
    temperature: float = flag(1.0, "sampling temperature", "> 0")
    corpus_seed: int = flag(0, "sampling seed", ">= 0")
    gen_batch: int = flag(64, "sequences sampled together = one chunk file", ">= 1")
    corpus_only: bool = flag(False, "sample the corpus, train nothing")
    # logit
    alpha: float = flag(0.5, "weight of the KL term", "[0, 1]")
    kd_temp: float = flag(1.0, "softening temperature of the KL term", "> 0")


RANGES = train.ranges_of(DistillConfig)


def distill(cfg, teacher_paths, opts=DistillConfig(), rank=0, world=1, local_rank=0, quiet=False):
    """Distil the teacher run(s) into the student `cfg` as `opts` says; returns the student's summary
    (or, with opts.corpus_only, the corpus folder)."""
    o = opts
    if o.mode not in ("seq", "logit"):
        raise ConfigError(f"--mode must be seq or logit (got {o.mode!r})")
    if o.combine not in ("logits", "probs") or o.teacher_sampling not in ("averaged", "pooled"):
        raise ConfigError("--combine must be logits or probs, --teacher_sampling averaged or pooled")
    bad = data.range_error(dataclasses.asdict(o), RANGES)
    if bad:
        raise ConfigError(bad)
    if o.mode == "logit" and cfg.mix_weight > 0:
        raise ConfigError("--mix_weight applies to --mode seq (teacher samples in the batch); --mode logit "
                          "trains on the real data only: use --alpha for the weight of the KL term")
    if o.mode == "seq" and cfg.mix_weight <= 0:
        raise ConfigError("--mode seq needs --mix_weight > 0: the fraction of each batch sampled from the teacher")
    # absolute: train.py would read a bare name as a folder under data/
    corpus = os.path.abspath(o.corpus or os.path.join(cfg.out_dir, "corpus"))
    if o.mode == "seq":
        cfg = dataclasses.replace(cfg, mix_data=corpus)
    train.validate(cfg)   # fail on a bad student flag before minutes of sampling, not after
    if not o.corpus_only and not cfg.resume and os.path.exists(os.path.join(cfg.out_dir, "ckpt.pt")):
        raise ConfigError(f"{cfg.out_dir} already holds a run; pass --resume to continue it or choose "
                          f"another --out_dir")

    device, dtype, _ = train.resolve_device(cfg, local_rank)
    models, tds = load_teachers(teacher_paths, device)
    ds = data.load_dataset(cfg.dataset)
    check_student(teacher_paths, models, tds, cfg, ds)
    teachers = [os.path.abspath(p) for p in teacher_paths]
    if cfg.recipe in ("", "single"):   # not given: label the student by its teacher and mode
        recipe = ("logit-" if o.mode == "logit" else "") + ("distill" if len(models) > 1 else "self-distill")
        cfg = dataclasses.replace(cfg, recipe=recipe)
    if o.mode == "logit":
        extra = {"teacher": teachers, "distill": {"mode": "logit", "alpha": o.alpha, "kd_temp": o.kd_temp,
                                                  "combine": o.combine}}
        return train.train(cfg, rank, world, local_rank, loss_fn=kd_loss(models, o.alpha, o.kd_temp, o.combine),
                           summary_extra=extra, quiet=quiet)

    D = len(data.train_sequences(ds.train, cfg.train_tokens or len(ds.train), cfg.seq_len)) * cfg.seq_len
    n_tokens = o.corpus_tokens or CORPUS_TIMES_D * D
    generate_corpus(models, teacher_paths, tds, corpus, n_tokens, cfg.seq_len, o.temperature, o.corpus_seed,
                    o.combine, o.teacher_sampling, o.gen_batch, dtype, rank=rank, world=world, quiet=quiet)
    if o.corpus_only:
        return corpus
    del models   # the teacher is not needed while the student trains
    with open(os.path.join(corpus, "meta.json")) as f:
        spec = json.load(f)["teacher"]
    extra = {"teacher": teachers, "distill": {"mode": "seq", "corpus": corpus, **{
        k: spec[k] for k in ("sampling", "combine", "temperature", "seed", "sequences", "sampled_tokens")}}}
    summary = train.train(cfg, rank, world, local_rank, batches=MixedBatches, summary_extra=extra,
                          quiet=quiet)
    if rank == 0 and not quiet:
        print(f"student saw {summary['mix']['synthetic_passes']:.2f} passes over the {spec['sequences']:,} "
              f"teacher sequences", flush=True)
    return summary


# ----------------------------------------------------------------------------
# Command line

def build_parser():
    p = train.OneLineParser(description=__doc__.strip().split("\n\n")[0],
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--teacher", nargs="+", required=True, help="run folder(s), or an ensemble folder of member_*/")
    train.add_config_flags(p, config=DistillConfig)
    # the student: every train.py flag; --mix_data is the corpus; these default to the teacher's
    train.add_config_flags(p, skip=("mix_data",))
    p.set_defaults(dataset=None, train_tokens=None, seq_len=None, val_tokens=None, mix_weight=None, recipe="")
    return p


def main(argv=None):
    def body():
        args = build_parser().parse_args(argv)
        paths = find_members(args.teacher, flag="--teacher")
        cfg_file = os.path.join(paths[0], "config.json")
        if not os.path.exists(cfg_file):
            raise ConfigError(f"teacher {paths[0]} has no config.json: not a train.py run folder")
        with open(cfg_file) as f:
            tcfg = json.load(f)
        for k in ("dataset", "train_tokens", "seq_len", "val_tokens"):   # same data, same val windows
            if getattr(args, k) is None:
                setattr(args, k, tcfg[k])
        if args.mix_weight is None:
            args.mix_weight = SEQ_MIX_WEIGHT if args.mode == "seq" else 0.0
        cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                             if f.name != "mix_data"})
        rank, world, local_rank = train.setup_distributed(cfg.device)
        opts = DistillConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DistillConfig)})
        distill(cfg, paths, opts, rank, world, local_rank)
    train.run_cli(body)


if __name__ == "__main__":
    main()
