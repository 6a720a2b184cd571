"""Tokenizers, chosen by a dataset's meta["tokenizer"].

All three have encode(str) -> list[int], decode(list[int]) -> str, eot (the end-of-document id)
and vocab_size. Every tokenizer has an end-of-document token so documents can be joined with it
and sampling can start from it (an "empty" context):

    byte       UTF-8 bytes 0..255, plus 256 = end of document (vocab 257)
    <tiktoken> any tiktoken encoding, e.g. r50k_base (GPT-2's BPE); eot = <|endoftext|>
    synthetic  the Markov source's symbols 0..V-1 as numbers, plus V = eot (vocab V+1)
"""

import os

import numpy as np

from .format import DataError, shared_dir

EOT_TEXT = "\n<|eot|>\n"

# tiktoken's "gpt2" and "r50k_base" are the same 50,257-token BPE; only r50k_base is in the
# offline cache, so we always load it under that name.
ALIASES = {"gpt2": "r50k_base"}


class ByteTokenizer:
    vocab_size, eot = 257, 256

    def encode(self, text):
        return list(text.encode("utf-8"))

    def encode_docs(self, texts):  # fast path for whole corpora: one array per document
        return [np.frombuffer(t.encode("utf-8"), dtype=np.uint8).astype(np.uint16) for t in texts]

    def decode(self, ids):
        # decode each document separately so an eot never lands inside a UTF-8 sequence;
        # bytes that are not valid UTF-8 (a model can emit those) show as U+FFFD
        docs, cur = [], []
        for i in ids:
            if i == self.eot:
                docs.append(bytes(cur).decode("utf-8", errors="replace"))
                cur = []
            else:
                cur.append(int(i))
        docs.append(bytes(cur).decode("utf-8", errors="replace"))
        return EOT_TEXT.join(docs)


class TiktokenTokenizer:
    def __init__(self, name):
        # Offline machines: use the shared cache unless the user set one.
        cache = os.path.join(shared_dir(), "tiktoken_cache")
        if "TIKTOKEN_CACHE_DIR" not in os.environ and os.path.isdir(cache):
            os.environ["TIKTOKEN_CACHE_DIR"] = cache
        import tiktoken
        try:
            self.enc = tiktoken.get_encoding(ALIASES.get(name, name))
        except Exception as e:  # unknown name, or no network and no cache
            raise DataError(f"cannot load tiktoken encoding {name!r} ({type(e).__name__}); "
                            f"use r50k_base or set TIKTOKEN_CACHE_DIR to a cache that has it")
        self.name, self.vocab_size, self.eot = self.enc.name, self.enc.n_vocab, self.enc.eot_token

    def encode(self, text):
        # text is data: a literal "<|endoftext|>" in it is ordinary text, not the eot token
        return self.enc.encode_ordinary(text)

    def encode_docs(self, texts):  # tiktoken spreads a batch over threads
        return [np.array(ids, dtype=np.uint32) for ids in self.enc.encode_ordinary_batch(texts)]

    def decode(self, ids):
        return self.enc.decode([int(i) for i in ids])


class SyntheticTokenizer:
    """Symbols as space-separated numbers; the (never emitted) eot shows as <|eot|>."""

    def __init__(self, V):
        self.vocab_size, self.eot = V + 1, V

    def encode(self, text):
        return [self.eot if w == "<|eot|>" else int(w) for w in text.split()]

    def decode(self, ids):
        return " ".join("<|eot|>" if int(i) == self.eot else str(int(i)) for i in ids)


def get_tokenizer(meta):
    """The tokenizer named by meta["tokenizer"] ("byte", "synthetic" or a tiktoken name)."""
    name = meta["tokenizer"] if isinstance(meta, dict) else meta  # a bare name works too
    if name == "byte":
        return ByteTokenizer()
    if name == "synthetic":
        if not isinstance(meta, dict):
            raise DataError("the synthetic tokenizer needs the dataset's meta (its vocab_size)")
        return SyntheticTokenizer(meta["vocab_size"] - 1)
    return TiktokenTokenizer(name)
