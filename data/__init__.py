"""Datasets for infinite-compute GPT: token files on disk and the windows a trainer reads.

    from data import load_dataset, train_sequences, val_windows, get_tokenizer
    ds = load_dataset("synthetic")              # or "shakespeare_byte", a folder, a shard glob
    train = train_sequences(ds.train, D, T)     # Windows: len(train), train.get(idx) -> (B, T+1)
    val = val_windows(ds.val, T, max_tokens)    # int64 (n, T+1)
    tok = get_tokenizer(ds.meta)

Modules: format.py (the on-disk format; imports nothing else of data/), dataset.py (loading,
windows), tokenizer.py (byte, tiktoken, BPE files such as Llama 3's), synthetic.py (the default
dataset and its entropy / Bayes limits), prepare.py (text -> dataset CLI), stream.py (its
streaming path: any corpus -> shards in bounded memory), shards.py (llm.c shards, and many of
them read as one lazy TokenStream).
"""

from .dataset import (DATA_ROOT, Dataset, DataError, OneLineParser, Samples, Windows, load_dataset, meta_fingerprint,
                      range_error, token_dtype, train_sequences, val_windows, write_dataset)
from .tokenizer import get_tokenizer


__all__ = ["DATA_ROOT", "Dataset", "DataError", "Windows", "get_tokenizer",
           "load_dataset", "meta_fingerprint", "token_dtype", "train_sequences", "val_windows", "write_dataset"]
