"""Tokenizers, chosen by a dataset's meta["tokenizer"] (and meta["tokenizer_file"] for a BPE file).

All of them have encode(str) -> list[int], decode(list[int]) -> str, eot (the end-of-document
id) and vocab_size (every id, special tokens included). Every tokenizer has an end-of-document
token so documents can be joined with it and sampling can start from it (an "empty" context):

    byte       UTF-8 bytes 0..255, plus 256 = end of document (vocab 257)
    <tiktoken> any tiktoken encoding, e.g. r50k_base (GPT-2's BPE); eot = <|endoftext|>
    <file>     a BPE file in tiktoken's format -- one "<base64 token> <rank>" per line, the
               format of Llama 3's tokenizer.model and of tiktoken's own cache files -- with a
               named split pattern and that family's special tokens after the file's ranks:
                 llama3  Llama 3's pattern and its 256 special tokens (128,000 ranks + 256 =
                         128,256 ids); eot = <|end_of_text|> (128,001)
                 gpt2    GPT-2's pattern and <|endoftext|> (50,256 ranks + 1 = 50,257 ids)
    synthetic  the Markov source's symbols 0..V-1 as numbers, plus V = eot (vocab V+1)

An HF tokenizer.json is not read: Llama 3's own tokenizer.model is the tiktoken file (Meta's
download, or original/tokenizer.model in the Hugging Face repository), so the `tokenizers`
dependency would buy nothing for the paper's tokenizer.
"""

import base64
import binascii
import os

import numpy as np

from .format import DataError, file_sha256, shared_dir

EOT_TEXT = "\n<|eot|>\n"

# tiktoken's "gpt2" and "r50k_base" are the same 50,257-token BPE; only r50k_base is in the
# offline cache, so we always load it under that name.
ALIASES = {"gpt2": "r50k_base"}

# Split patterns (how text is cut into pieces before BPE merges bytes within a piece), by name.
# gpt2: tiktoken's faster equivalent of GPT-2's; llama3: Meta's llama3/tokenizer.py, verbatim.
PATTERNS = {
    "gpt2": r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s""",
    "llama3": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
              r"\s*[\r\n]+|\s+(?!\S)|\s+",
}
LLAMA3_SPECIAL = (["<|begin_of_text|>", "<|end_of_text|>"]
                  + [f"<|reserved_special_token_{i}|>" for i in range(4)]
                  + ["<|start_header_id|>", "<|end_header_id|>", "<|reserved_special_token_4|>",
                     "<|eot_id|>"]
                  + [f"<|reserved_special_token_{i}|>" for i in range(5, 251)])   # 256 in all
SPECIAL = {"gpt2": (["<|endoftext|>"], "<|endoftext|>"),     # (tokens after the ranks, eot)
           "llama3": (LLAMA3_SPECIAL, "<|end_of_text|>")}
DEFAULT_PATTERN = "llama3"  # the paper's tokenizer


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
    """A tiktoken Encoding: a registered one by name, or one built from a BPE file (bpe_file)."""

    def __init__(self, name, enc=None, eot=None):
        self.enc = enc or _registered(name)
        self.name = name if enc else self.enc.name
        self.vocab_size = self.enc.n_vocab
        self.eot = self.enc.eot_token if eot is None else eot

    def encode(self, text):
        # text is data: a literal "<|endoftext|>" in it is ordinary text, not the eot token
        return self.enc.encode_ordinary(text)

    def encode_docs(self, texts):  # tiktoken spreads a batch over threads (its Rust code drops the GIL)
        return [np.array(ids, dtype=np.uint32)
                for ids in self.enc.encode_ordinary_batch(texts, num_threads=os.cpu_count() or 1)]

    def decode(self, ids):
        return self.enc.decode([int(i) for i in ids])


def _registered(name):
    # Offline machines: use the shared cache unless the user set one.
    cache = os.path.join(shared_dir(), "tiktoken_cache")
    if "TIKTOKEN_CACHE_DIR" not in os.environ and os.path.isdir(cache):
        os.environ["TIKTOKEN_CACHE_DIR"] = cache
    import tiktoken
    try:
        return tiktoken.get_encoding(ALIASES.get(name, name))
    except Exception as e:  # unknown name, or no network and no cache
        raise DataError(f"cannot load tiktoken encoding {name!r} ({type(e).__name__}); use byte, "
                        f"r50k_base, a tiktoken-format BPE file (path/to/tokenizer.model), or set "
                        f"TIKTOKEN_CACHE_DIR to a cache that has it")


def read_bpe_ranks(path):
    """{token bytes: rank} from a tiktoken-format file, checked: ranks 0..n-1, every byte a token."""
    ranks = {}
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                token, rank = line.split()
                ranks[base64.b64decode(token, validate=True)] = int(rank)
            except (ValueError, binascii.Error):
                raise DataError(f"{path} line {lineno} is not '<base64 token> <rank>': not a "
                                f"tiktoken-format BPE file (Llama 3's tokenizer.model is one; an "
                                f"HF tokenizer.json is not)") from None
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise DataError(f"{path}: the ranks are not 0..{len(ranks) - 1} without gaps or repeats; "
                        f"the BPE file is damaged")
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:  # byte-level BPE: any text must fall back to single bytes
        raise DataError(f"{path} lacks {len(missing)} of the 256 single-byte tokens (e.g. byte "
                        f"{missing[0]}); only byte-level BPE files are supported")
    return ranks


def bpe_file(path, pattern=DEFAULT_PATTERN, sha256=None):
    """A byte-level BPE from a tiktoken-format file, with a named split pattern and that family's
    special tokens numbered after the file's ranks. sha256, if given, must match the file (the
    hash a dataset recorded when it was prepared)."""
    if pattern not in PATTERNS:
        raise DataError(f"unknown split pattern {pattern!r}; use one of {', '.join(PATTERNS)}")
    if not os.path.isfile(path):
        raise DataError(f"no tokenizer file {path}; pass the path of a tiktoken-format BPE file "
                        f"(e.g. Llama 3's tokenizer.model)")
    if sha256 is not None and file_sha256(path) != sha256:
        raise DataError(f"{path} is not the tokenizer file this dataset was prepared with (its "
                        f"sha256 differs); put the original back or prepare the dataset again")
    import tiktoken
    ranks = read_bpe_ranks(path)
    specials, eot = SPECIAL[pattern]
    special_ids = {tok: len(ranks) + i for i, tok in enumerate(specials)}
    enc = tiktoken.Encoding(f"{pattern}:{os.path.basename(path)}", pat_str=PATTERNS[pattern],
                            mergeable_ranks=ranks, special_tokens=special_ids)
    tok = TiktokenTokenizer(pattern, enc, eot=special_ids[eot])
    tok.file, tok.pattern = os.path.abspath(path), pattern
    return tok


class SyntheticTokenizer:
    """Symbols as space-separated numbers; the (never emitted) eot shows as <|eot|>."""

    def __init__(self, V):
        self.vocab_size, self.eot = V + 1, V

    def encode(self, text):
        return [self.eot if w == "<|eot|>" else int(w) for w in text.split()]

    def decode(self, ids):
        return " ".join("<|eot|>" if int(i) == self.eot else str(int(i)) for i in ids)


def get_tokenizer(meta, pattern=None):
    """The tokenizer a dataset's meta names: "byte", "synthetic", a tiktoken name, or a BPE file
    (meta["tokenizer_file"]); a bare name or file path works too (pattern: for a file)."""
    if isinstance(meta, dict) and meta.get("tokenizer_file"):
        return bpe_file(meta["tokenizer_file"], meta.get("tokenizer_pattern", DEFAULT_PATTERN),
                        meta.get("tokenizer_sha256"))
    name = meta["tokenizer"] if isinstance(meta, dict) else meta  # a bare name works too
    if name == "byte":
        return ByteTokenizer()
    if name == "synthetic":
        if not isinstance(meta, dict):
            raise DataError("the synthetic tokenizer needs the dataset's meta (its vocab_size)")
        return SyntheticTokenizer(meta["vocab_size"] - 1)
    if os.sep in name or os.path.isfile(name):  # a path: a BPE file
        return bpe_file(name, pattern or DEFAULT_PATTERN)
    if pattern is not None:
        raise DataError(f"--pattern is for a tokenizer file; {name!r} is a tiktoken name, whose "
                        f"pattern is its own")
    return TiktokenTokenizer(name)
