"""File conventions without heavy imports (the workflow engines import this at parse time):
atomic text writes, and the names of the parts of a store written by several jobs."""

from __future__ import annotations

import os
import re
from pathlib import Path

PART = re.compile(r"^part-(\d{5})-of-(\d{5})$")   # <store>/part-<i>-of-<n>/: one job's share of a store


def part_name(index: int, count: int) -> str:
    """The folder of part `index` of a store written by `count` jobs (e.g. sharded make_cam)."""
    return f"part-{index:05d}-of-{count:05d}"


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `<path>.tmp-<pid>` and rename it into place; a failure leaves no temp file
    and never a half-written target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
