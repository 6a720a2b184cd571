"""
A decoder-only GPT in the Llama style the paper trains (Levanter's Llama, which the paper trains):
pre-norm RMSNorm with weights, rotary positions, SwiGLU MLP, no biases, untied input and output
embeddings, grouped-query attention when n_kv_head < n_head, no dropout.

Attention goes through F.scaled_dot_product_attention(is_causal=True), so on a GPU PyTorch picks
the fused flash kernel; torch.compile (train.py, on by default on CUDA) fuses the rest. Two options
(GPTConfig.attn, .doc_mask): attn="flex" runs FlexAttention (compiled on CUDA) instead of SDPA, and
doc_mask=True makes the mask document-causal: a token attends only to earlier tokens of its own
document, documents being delimited by the end-of-text token, so packed documents never see each
other. Both attention kernels compute the same function for the same mask (tests/test_attention.py).
"""
import functools
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

# FlexAttention is only fast compiled (it then generates one fused kernel for the mask): it is compiled
# once, at the first CUDA forward that uses it (importing the compiler takes seconds). On
# CPU the eager version runs: forward only (torch 2.13 has no CPU backward for it), for tests.
@functools.cache
def compiled_flex_attention():
    """flex_attention compiled once per process, on first use (eager FlexAttention is a slow reference
    path meant for checking, not training)."""
    return torch.compile(flex_attention, dynamic=False)

# scaled_dot_product_attention(enable_gqa=True) appeared in torch 2.5
SDPA_GQA = tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 5)


@dataclass
class GPTConfig:
    vocab_size: int = 257    # byte tokenizer: 256 bytes + end-of-document
    block_size: int = 256    # max sequence length (only bounds the rotary table)
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int = 4       # < n_head: grouped-query attention
    n_embd: int = 128
    ffn: int = 448           # SwiGLU hidden size; the paper's shapes use 3.5 x n_embd
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    attn: str = "sdpa"       # attention kernel: "sdpa" (scaled_dot_product_attention) | "flex" (FlexAttention)
    doc_mask: bool = False   # document-causal mask: no attention across end-of-text tokens
    eot_token: int = -1      # the end-of-text token id (the dataset's meta["eot_token"]); used with doc_mask


# ----------------------------------------------------------------------------
# Presets. The paper's four shapes (150M-1.4B) are named after their total parameter
# count with the 128,256-token Llama 3 vocabulary; with another vocabulary the real count differs
# and train.py prints it. The tiny presets are named after their NON-embedding parameter count,
# which does not depend on the vocabulary: they train in minutes on 2 CPU cores.
# head_dim = n_embd / n_head: 64 for 150m/300m/600m, 128 for 1.4b, 24-32 for the tiny ones.

PRESETS = {
    # name:       (n_embd, ffn,  n_layer, n_head, n_kv_head)
    "150m":       (512,    1792, 6,       8,      8),
    "300m":       (768,    2688, 12,      12,     12),
    "600m":       (1024,   3584, 24,      16,     8),
    "1.4b":       (2048,   7168, 16,      16,     8),
    "tiny-67k":   (48,     168,  2,       2,      2),
    "tiny-120k":  (64,     224,  2,       2,      2),
    "tiny-240k":  (64,     224,  4,       2,      2),
    "tiny-530k":  (96,     336,  4,       3,      3),
    "tiny-950k":  (128,    448,  4,       4,      4),
    "tiny-2.1m":  (192,    672,  4,       6,      6),
    "tiny-3.8m":  (256,    896,  4,       8,      8),
    "tiny-7.6m":  (256,    896,  8,       8,      8),
    "tiny-17m":   (384,    1344, 8,       6,      6),
    "tiny-45m":   (512,    1792, 12,      8,      8),
}


def config_from_preset(name, vocab_size, block_size, **overrides):
    """The preset's shape; overrides set any other GPTConfig field (attn="flex", doc_mask=True, ...)."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of: {', '.join(PRESETS)}")
    n_embd, ffn, n_layer, n_head, n_kv_head = PRESETS[name]
    return GPTConfig(**{**dict(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=n_head,
                               n_kv_head=n_kv_head, n_embd=n_embd, ffn=ffn), **overrides})


# ----------------------------------------------------------------------------
# Building blocks

class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        # normalize in fp32 for stability under bf16 autocast, then cast back
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return xf.type_as(x) * self.weight


def rotary_tables(head_dim, max_len, theta):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2).float() / head_dim))  # (hd/2,)
    t = torch.arange(max_len).float()
    freqs = torch.outer(t, inv_freq)                                                 # (T, hd/2)
    return freqs.cos(), freqs.sin()


def apply_rotary(x, cos, sin):
    # x: (B, H, T, hd); rotate pairs (first half, second half) as Llama / Levanter do
    x1, x2 = x.chunk(2, dim=-1)                                                      # (B, H, T, hd/2)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


# ----------------------------------------------------------------------------
# Attention masks. A packed training window holds several documents, each closed by the end-of-text
# token (EOT). With doc_mask, query q may see key k only if k <= q and both are in the same document.

def document_ids(idx, eot):
    """(B, T) token ids -> (B, T) document index: the number of EOTs strictly before each token, so
    an EOT belongs to the document it closes (it still sees that document; the next one starts after)."""
    is_eot = (idx == eot).int()
    return torch.cumsum(is_eot, dim=1) - is_eot


def sdpa_doc_mask(doc_q, doc_k):
    """Boolean SDPA mask (B, 1, Tq, Tk), True = may attend, for Tq queries that are the LAST Tq of the
    Tk keys (Tq == Tk in training; Tq < Tk after a KV cache): document-causal."""
    Tq, Tk = doc_q.size(1), doc_k.size(1)
    causal = torch.ones(Tq, Tk, dtype=torch.bool, device=doc_q.device).tril(Tk - Tq)
    return (doc_q[:, :, None] == doc_k[:, None, :]).unsqueeze(1) & causal


def flex_block_mask(idx, cfg):
    """FlexAttention BlockMask for one forward pass: causal, or document-causal with cfg.doc_mask."""
    B, T = idx.shape
    if cfg.doc_mask:
        doc = document_ids(idx, cfg.eot_token)

        def mask_mod(b, h, q, k):
            return (k <= q) & (doc[b, q] == doc[b, k])
    else:
        B = None    # the same mask for every sequence

        def mask_mod(b, h, q, k):
            return k <= q
    return create_block_mask(mask_mod, B=B, H=None, Q_LEN=T, KV_LEN=T, device=idx.device)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0 and cfg.n_head % cfg.n_kv_head == 0
        self.n_head, self.n_kv_head = cfg.n_head, cfg.n_kv_head
        self.head_dim = cfg.n_embd // cfg.n_head
        self.q = nn.Linear(cfg.n_embd, cfg.n_head * self.head_dim, bias=False)
        self.k = nn.Linear(cfg.n_embd, cfg.n_kv_head * self.head_dim, bias=False)
        self.v = nn.Linear(cfg.n_embd, cfg.n_kv_head * self.head_dim, bias=False)
        self.o = nn.Linear(cfg.n_head * self.head_dim, cfg.n_embd, bias=False)

    def forward(self, x, cos, sin, kv_cache=None, mask=None):
        """mask: None (causal), a boolean SDPA mask (B, 1, T, Tk) or a FlexAttention BlockMask."""
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)     # (B, H, T, hd)
        k = self.k(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, Hkv, T, hd)
        v = self.v(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, Hkv, T, hd)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if kv_cache is not None:
            # generation: append this step's keys/values; attend to everything cached so far
            if kv_cache.get("k") is not None:
                k = torch.cat([kv_cache["k"], k], dim=2)                         # (B, Hkv, Tc+T, hd)
                v = torch.cat([kv_cache["v"], v], dim=2)
            kv_cache["k"], kv_cache["v"] = k, v
        if isinstance(mask, BlockMask):
            # FlexAttention does grouped-query attention itself (query head h reads kv head h // rep)
            attend = compiled_flex_attention() if x.device.type == "cuda" else flex_attention
            y = attend(q, k, v, block_mask=mask, enable_gqa=self.n_kv_head != self.n_head)  # (B, H, T, hd)
            return self.o(y.transpose(1, 2).contiguous().view(B, T, -1))
        gqa = {}
        if self.n_kv_head != self.n_head:
            if SDPA_GQA:   # SDPA reads kv head h // rep for query head h itself: no copies of K and V
                gqa = {"enable_gqa": True}
            else:          # torch < 2.5
                rep = self.n_head // self.n_kv_head
                k = k.repeat_interleave(rep, dim=1)                              # (B, H, Tk, hd)
                v = v.repeat_interleave(rep, dim=1)
        Tk = k.size(2)
        if mask is not None:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, **gqa)   # document-causal
        elif Tk == T:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, **gqa)   # (B, H, T, hd)
        else:
            # T new queries after Tk - T cached keys: query i sees keys 0 .. Tk - T + i
            mask = torch.ones(T, Tk, dtype=torch.bool, device=x.device).tril(Tk - T)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, **gqa)
        y = y.transpose(1, 2).contiguous().view(B, T, -1)                        # (B, T, C)
        return self.o(y)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gate = nn.Linear(cfg.n_embd, cfg.ffn, bias=False)
        self.up = nn.Linear(cfg.n_embd, cfg.ffn, bias=False)
        self.down = nn.Linear(cfg.ffn, cfg.n_embd, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))                      # SwiGLU


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, kv_cache=None, mask=None):
        x = x + self.attn(self.attn_norm(x), cos, sin, kv_cache, mask)
        x = x + self.mlp(self.mlp_norm(x))
        return x


# ----------------------------------------------------------------------------
# The model

class GPT(nn.Module):
    checkpoint_head = True   # recompute each chunk's logits in backward (chunked_logits); off under vmap

    def __init__(self, cfg):
        super().__init__()
        if cfg.attn not in ("sdpa", "flex"):
            raise ValueError(f"unknown attn {cfg.attn!r}; choose sdpa or flex")
        if cfg.doc_mask and cfg.eot_token < 0:
            raise ValueError("doc_mask needs eot_token (the dataset's end-of-text token id)")
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)          # untied
        cos, sin = rotary_tables(cfg.n_embd // cfg.n_head, cfg.block_size, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)                  # (T, hd/2)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        # scale the residual-branch outputs down with depth (GPT-2 / nanoGPT convention)
        for name, p in self.named_parameters():
            if name.endswith("attn.o.weight") or name.endswith("mlp.down.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding=False):
        """Total parameters (both embedding tables, as the paper counts N), or without them."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.embed.weight.numel() + self.lm_head.weight.numel()
        return n

    def forward(self, idx, targets=None, kv_cache=None, pos=0, reduction="mean", skip=0, hidden=False):
        """idx: (B, T) token ids. Three uses:
          model(idx)              -> (logits (B, T, V) fp32, None): sampling, parity tests, short inputs
          model(idx, targets)     -> (None, cross-entropy): training and evaluation. No (B, T, V) tensor
                                     is returned, and none exists at once (chunked_logits below)
          model(idx, hidden=True) -> (final hidden states (B, T, C), None), for chunked_logits callers
                                     (ensemble scoring, logit distillation)
        With targets: reduction "mean" or "sum" over the targets of positions skip.. (targets equal to
        -100 are left out: evaluation masks padded rows that way)."""
        B, T = idx.shape
        assert pos + T <= self.cfg.block_size, f"sequence length {pos + T} > block_size {self.cfg.block_size}"
        cos, sin = self.rope_cos[pos:pos + T], self.rope_sin[pos:pos + T]       # (T, hd/2)
        mask = self.attention_mask(idx, kv_cache)                                 # one for all layers
        x = self.embed(idx)                                                       # (B, T, C)
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, None if kv_cache is None else kv_cache[i], mask)
        x = self.norm(x)                                                          # (B, T, C)
        if hidden:
            return x, None
        if targets is None:
            return self.lm_head(x).float(), None                                  # (B, T, V) fp32
        return None, chunked_cross_entropy(x, self.lm_head.weight, targets, reduction, skip, self.checkpoint_head)

    def attention_mask(self, idx, kv_cache=None):
        """The mask every block uses in this forward pass: None means plain causal (SDPA's is_causal
        fast path, the default), else a boolean SDPA mask or a FlexAttention BlockMask.
        With a KV cache (generation) attention always goes through SDPA, whatever cfg.attn says: flex
        is for training on packed windows. With doc_mask the cache also keeps each cached key's document
        id, so sampling after an EOT sees only the new document, exactly as in training."""
        cfg = self.cfg
        if kv_cache is not None:
            if not cfg.doc_mask:
                return None
            cache = kv_cache[0]                                                   # kept in layer 0's dict
            n_eot = cache.get("n_eot", 0)                                         # EOTs already cached, (B, 1)
            doc = n_eot + document_ids(idx, cfg.eot_token)                        # (B, T)
            cache["n_eot"] = n_eot + (idx == cfg.eot_token).sum(1, keepdim=True)
            cache["doc"] = torch.cat([cache["doc"], doc], 1) if "doc" in cache else doc   # (B, Tc + T)
            return sdpa_doc_mask(doc, cache["doc"])
        if cfg.attn == "flex":
            return flex_block_mask(idx, cfg)
        if cfg.doc_mask:
            doc = document_ids(idx, cfg.eot_token)
            return sdpa_doc_mask(doc, doc)
        return None

    # ------------------------------------------------------------------
    def optimizer_groups(self, weight_decay):
        """Weight decay goes on every Linear weight (attention, MLP, the untied output head) and on
        nothing else: not the input embedding, not the RMSNorm weights (the paper's Levanter
        convention). This is the one place that decides which tensors decay."""
        decay = [m.weight for m in self.modules() if isinstance(m, nn.Linear)]
        decay_ids = {id(p) for p in decay}
        no_decay = [p for p in self.parameters() if id(p) not in decay_ids]
        return [{"params": decay, "weight_decay": weight_decay},
                {"params": no_decay, "weight_decay": 0.0}]

    def flops_per_token(self, seq_len):
        """Training FLOPs per token: 6 x (params minus the input embedding) for the matmuls, forward
        and backward, plus 6 x layers x d x T for causal attention (nanoGPT counts
        12 x layers x d x T, i.e. it does not halve for causality)."""
        n = self.num_params() - self.embed.weight.numel()
        return 6 * n + 6 * self.cfg.n_layer * self.cfg.n_embd * seq_len

    # ------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None):
        """Sample continuations of idx (B, T0) with a KV cache; returns (B, T0 + max_new_tokens)."""
        return generate([self], idx, max_new_tokens, temperature, top_k, generator)


# ----------------------------------------------------------------------------
# Chunked output head. At the paper's shapes (V = 128,256, T = 4096) one sequence's fp32 logits take
# 2 GiB, and autograd would keep them (or their log-softmax) for backward. So every loss over the
# vocabulary goes through chunked_logits: the positions are cut into chunks whose fp32 logits stay
# under LOGIT_CHUNK_ELEMENTS, each chunk's logits are made, reduced and dropped, and when gradients
# are recorded each chunk is checkpointed (its logits are recomputed in backward, one extra head
# forward) so nothing of size (B, T, V) is saved either. Small shapes (the tiny presets: 32 x 256 x
# 257 = 2.1M logits) are one chunk, computed exactly as an unchunked head would.

LOGIT_CHUNK_ELEMENTS = 2**25     # fp32 logits per chunk: 128 MiB (e.g. 256 tokens at V = 128,256)


def logit_chunks(T, rows, V, start=0):
    """Slices of the positions start..T-1 such that rows x len(slice) x V logits fit one chunk."""
    per = max(1, LOGIT_CHUNK_ELEMENTS // max(1, rows * V))
    return [slice(s, min(s + per, T)) for s in range(start, T, per)]


def head_logits(hs, heads, c):
    """(K, B, t, V) fp32 logits at positions c (a slice) of K models with final hidden states hs[k]
    (B, T, C) and output-head weights heads[k] (V, C)."""
    z = [F.linear(h[:, c], w).float() for h, w in zip(hs, heads)]                # K x (B, t, V)
    return z[0].unsqueeze(0) if len(z) == 1 else torch.stack(z)


def chunked_logits(fn, hs, heads, start=0, copies=None, checkpoint=True):
    """The one chunked log-prob API: sum over position chunks c of fn(head_logits(hs, heads, c), c),
    for final hidden states hs from model(idx, hidden=True); combine members with
    ensemble_log_probs(z, rule) inside fn. Chunks are sized for `copies` (B, t, V) tensors at once
    (default len(hs)). Gradients flow to hs and heads without keeping any chunk's logits for backward
    (checkpoint=False keeps them: for torch.func.vmap, where checkpoint fails: its recompute runs
    outside the vmap)."""
    B, T, _ = hs[0].shape
    chunks = logit_chunks(T, B * (copies or len(hs)), heads[0].size(0), start)

    def one(c, *hs):
        return fn(head_logits(hs, heads, c), c)

    recompute = checkpoint and len(chunks) > 1 and torch.is_grad_enabled()
    total = 0
    for c in chunks:
        if recompute:
            total = total + torch.utils.checkpoint.checkpoint(one, c, *hs, use_reentrant=False)
        else:
            total = total + one(c, *hs)
    return total


def chunked_cross_entropy(h, weight, targets, reduction="mean", skip=0, checkpoint=True):
    """Cross-entropy of the output head weight (V, C) on final hidden states h (B, T, C) against
    targets (B, T), over positions skip..T-1, chunked (chunked_logits). Targets -100 are ignored."""
    V = weight.size(0)
    if len(logit_chunks(h.size(1), h.size(0), V, skip)) == 1:   # one chunk: F.cross_entropy's own mean
        return chunked_logits(lambda z, c: F.cross_entropy(z[0].reshape(-1, V), targets[:, c].reshape(-1),
                                                           reduction=reduction), [h], [weight], skip)
    total = chunked_logits(lambda z, c: F.cross_entropy(z[0].reshape(-1, V), targets[:, c].reshape(-1),
                                                        reduction="sum"), [h], [weight], skip,
                           checkpoint=checkpoint)
    if reduction == "sum":
        return total
    return total / (targets[:, skip:] != -100).sum()


def ensemble_log_probs(logits, rule="logits"):
    """How an ensemble's members are combined, everywhere in the project (evaluation, sampling,
    distillation, downstream scoring). logits: (K, ..., V), one slice per member -> (..., V) log-probs.
      rule "logits": log_softmax(mean_k logits_k)             (the paper's rule)
      rule "probs":  logsumexp_k log_softmax(logits_k) - log K (average the probabilities)"""
    logits = logits.float()
    if rule == "logits":
        return F.log_softmax(logits.mean(0), dim=-1)
    if rule == "probs":
        return torch.logsumexp(F.log_softmax(logits, dim=-1), dim=0) - math.log(logits.size(0))
    raise ValueError(f"unknown ensemble rule {rule!r}; choose logits or probs")


def sample_next(logits, temperature=1.0, top_k=None, generator=None):
    """logits: (B, V) -> next token ids (B, 1). temperature 0 means greedy."""
    if temperature == 0:
        return logits.argmax(-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]    # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)


@torch.no_grad()
def generate(models, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None,
             combine="logits"):
    """Sample from one model or from an ensemble's combined distribution (averaged logits by default,
    the paper's rule; or averaged probabilities), with a KV cache per model. When the sequence would
    outgrow block_size the cache is dropped and the context is cropped to the last block_size - 1
    tokens."""
    block_size = min(m.cfg.block_size for m in models)
    caches, pos, fed = None, 0, idx
    for _ in range(max_new_tokens):
        if caches is None or pos + fed.size(1) > block_size:
            fed = idx[:, -(block_size - 1):]                    # (re)start: feed the whole context
            caches, pos = [[{} for _ in m.blocks] for m in models], 0
        per_model = [m(fed, kv_cache=c, pos=pos)[0][:, -1, :] for m, c in zip(models, caches)]
        pos += fed.size(1)
        logp = ensemble_log_probs(torch.stack(per_model), combine)                 # (B, V)
        nxt = sample_next(logp, temperature, top_k, generator)                     # (B, 1)
        idx = torch.cat([idx, nxt], dim=1)
        fed = nxt
    return idx
