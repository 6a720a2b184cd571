"""
Run folders named on a command line: folders, globs, or an ensemble folder (its member_* runs), in
name order (member_2 before member_10). ensemble.py, sample.py, evaluate.py, distill.py and export.py
all take their runs this way.
"""
import glob
import os
import re

from train import ConfigError


def natural_key(path):
    """Sort key that orders the numbers in a path by value: member_2 before member_10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)]


def find_members(paths, flag="--members"):
    """Run folders from folders, globs, or an ensemble folder (its member_* runs), ordered by name."""
    found = []
    for p in paths:
        hits = glob.glob(p) if glob.has_magic(p) else [p]
        if not hits:
            raise ConfigError(f"{flag} {p} matches nothing")
        for h in hits:
            if not os.path.isdir(h):
                raise ConfigError(f"{flag} {h}: no such run folder")
            inner = [d for d in glob.glob(os.path.join(h, "member_*")) if os.path.isdir(d)]
            is_run = os.path.exists(os.path.join(h, "summary.json")) or os.path.exists(os.path.join(h, "ckpt.pt"))
            found += inner if inner and not is_run else [h]
    return sorted({os.path.normpath(f) for f in found}, key=natural_key)
