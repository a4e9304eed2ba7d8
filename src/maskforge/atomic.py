"""Atomic writes: an output is written under `<name>.tmp-<pid>` and renamed into place (a store
replaces its previous version through `<name>.old-<pid>`). A writer killed before its rename
leaves such a sibling behind; the next writer of the same output removes it (`temp_path`), a
Snakemake run removes all of them at its start (`remove_leftovers`), and no input hash reads them
(`is_leftover`)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

_LEFTOVER = re.compile(r"\.(?:tmp|old)-(\d+)$")   # <name>.tmp-<pid> / <name>.old-<pid>


def is_leftover(name: str) -> bool:
    """True for the temporary name of a write in progress or of one that was killed."""
    return _LEFTOVER.search(name) is not None


def _writer_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # another user's process
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _remove_dead(candidates) -> list[Path]:
    removed = []
    for path in candidates:
        match = _LEFTOVER.search(path.name)
        if match and not _writer_alive(int(match.group(1))):
            _remove(path)
            removed.append(path)
    return removed


def remove_leftovers(folder: str | os.PathLike) -> list[Path]:
    """Remove every `*.tmp-<pid>` / `*.old-<pid>` under `folder` whose writer is gone; returns them."""
    folder = Path(folder)
    return _remove_dead(sorted(folder.rglob("*.tmp-*")) + sorted(folder.rglob("*.old-*"))) if folder.is_dir() else []


def temp_path(path: str | os.PathLike) -> Path:
    """This process's temporary name for `path`, `<path>.tmp-<pid>`, after removing the temporary
    names of earlier writers of `path` that were killed (their process is gone)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead([*path.parent.glob(f"{path.name}.tmp-*"), *path.parent.glob(f"{path.name}.old-*")])
    return path.with_name(f"{path.name}.tmp-{os.getpid()}")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `<path>.tmp-<pid>` and rename it into place; a failure leaves no temp file
    and never a half-written target."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
