"""Download a public Shakespeare text, check its SHA-256, and prepare it as a byte-level dataset:
the corpus for a fresh clone on a machine that has no ../shared folder.

    python -m data.fetch                       # tiny Shakespeare -> data/tinyshakespeare_byte
    python -m data.fetch --file input.txt      # the same file, copied here by hand (offline)
    python -m data.fetch --url URL --sha256 HEX --out data/NAME   # any other public text file

The default is Andrej Karpathy's tiny Shakespeare (char-rnn, data/tinyshakespeare/input.txt:
1,115,394 bytes, about 40,000 lines from several plays, MIT licence). The SHA-256 pinned below is
the one TensorFlow Datasets records for that URL (tensorflow_datasets/datasets/tiny_shakespeare/
checksums.tsv, with the same size); a download whose hash differs is refused. It was taken from
that record, not from a download: the machine this was written on has no internet.

The file is one document, so data.prepare cuts it once, at the paragraph break nearest 90% of its
characters: the head is train, the tail val. That is NOT the corpus of data/shakespeare_byte (the
42 works of ../shared/data/shakespeare/shakespeare.txt, five whole plays held out), which the
course's expected numbers and the mini miniature use: losses on this one differ.

The offline path stays the default everywhere else: python -m data.prepare shakespeare reads
$ICGPT_SHARED/data/shakespeare/shakespeare.txt (ICGPT_SHARED defaults to ../shared).
"""
import http.client
import os
import sys
import urllib.error
import urllib.request

from .format import DATA_ROOT, DataError, OneLineParser, file_sha256
from .prepare import prepare

TINY_SHAKESPEARE = dict(
    name="tinyshakespeare",
    # the same file in two places; the hash decides, so a wrong mirror is refused, not used
    urls=["https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
          "https://storage.googleapis.com/download.tensorflow.org/data/shakespeare.txt"],
    sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    bytes=1_115_394,
    sha256_source="TensorFlow Datasets, tensorflow_datasets/datasets/tiny_shakespeare/checksums.tsv")


def download(url, path, timeout=60):
    """url -> path, written to path.part first so an interrupted download never looks finished."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    part = path + ".part"
    with urllib.request.urlopen(url, timeout=timeout) as r, open(part, "wb") as f:
        for block in iter(lambda: r.read(1 << 20), b""):
            f.write(block)
    os.replace(part, path)


def check(path, sha256, size=None):
    """The file's SHA-256; raises DataError when an expected hash (or size) is given and differs."""
    got = file_sha256(path)
    if size is not None and os.path.getsize(path) != size:
        raise DataError(f"{path} has {os.path.getsize(path):,} bytes, expected {size:,} (sha256 {got}); "
                        f"not the expected file: fetch it again, or pass the right file to --file")
    if sha256 and got != sha256.lower():
        raise DataError(f"{path} has sha256 {got}, expected {sha256}; not the expected file: fetch it "
                        f"again, pass the right file to --file, or --sha256 with the hash you trust")
    return got


def fetch(urls=None, sha256=None, out=None, file=None, force=False, say=print):
    """Download (or take `file`), verify, prepare; returns the dataset folder. With no urls and no file
    the pinned tiny Shakespeare is fetched and checked against its recorded hash and size."""
    pinned = urls is None
    src = TINY_SHAKESPEARE if pinned else dict(name=os.path.splitext(os.path.basename(urls[0]))[0],
                                                urls=urls, sha256=None, bytes=None, sha256_source=None)
    expected = sha256 or src["sha256"]
    size = src["bytes"] if pinned and not sha256 else None
    raw = file or os.path.join(DATA_ROOT, "raw", src["name"] + ".txt")
    used = file
    if not file and not os.path.exists(raw):
        errors = []
        for url in src["urls"]:
            try:
                say(f"downloading {url}")
                download(url, raw)
                check(raw, expected, size)
                used = url
                break
            except (urllib.error.URLError, http.client.HTTPException, OSError, DataError) as e:
                errors.append(f"{url}: {getattr(e, 'reason', e)}")
                if os.path.exists(raw):
                    os.remove(raw)
        else:
            raise DataError("could not fetch the corpus (" + "; ".join(errors) + "). Without internet, copy "
                            "the file here and pass --file, or use the offline path: shakespeare.txt under "
                            "$ICGPT_SHARED/data/shakespeare, then python -m data.prepare shakespeare --tokenizer byte")
    elif not file:
        used = f"{raw} (downloaded before)"
    got = check(raw, expected, size)
    # where the expected hash came from: the pinned record, the user's --sha256, or nowhere
    origin = src["sha256_source"] if expected and expected == src["sha256"] else "--sha256" if expected else None
    say(f"sha256 {got}: " + (f"matches {origin}" if origin else "NOT VERIFIED (no expected hash; pass --sha256)"))
    meta = {"download": {"from": used, "sha256": got, "bytes": os.path.getsize(raw), "verified": bool(origin),
                         "expected_sha256": expected, "expected_from": origin}}
    out = out or os.path.join(DATA_ROOT, f"{src['name']}_byte")
    return prepare(raw, "byte", out, val_fraction=0.1, force=force, extra_meta=meta)


def main(argv=None):
    ap = OneLineParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", action="append", default=None,
                    help="a text file to download instead of tiny Shakespeare (repeat for mirrors)")
    ap.add_argument("--sha256", default=None, help="the SHA-256 the file must have (the default corpus's is pinned)")
    ap.add_argument("--file", default=None, help="an already-downloaded copy to verify and prepare (offline)")
    ap.add_argument("--out", default=None, help="dataset folder (default data/<name>_byte)")
    ap.add_argument("--force", action="store_true", help="replace a different existing dataset")
    args = ap.parse_args(argv)
    if args.sha256 is not None and (len(args.sha256) != 64 or any(c not in "0123456789abcdefABCDEF" for c in args.sha256)):
        ap.error(f"--sha256 must be 64 hex digits (got {args.sha256!r})")
    if args.file and not os.path.isfile(args.file):
        ap.error(f"--file {args.file}: no such file")
    try:
        path = fetch(args.url, args.sha256, args.out, args.file, args.force)
        from .dataset import load_dataset
        meta = load_dataset(path).meta
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {path}: {meta['train_tokens']:,} train + {meta['val_tokens']:,} val tokens (byte, vocab "
          f"{meta['vocab_size']}); train with --dataset {os.path.basename(path)}")


if __name__ == "__main__":
    main()
