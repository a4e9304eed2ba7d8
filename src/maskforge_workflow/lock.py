"""One lock per working directory, shared by both engines.

The lock is DVC's own repository lock, `.dvc/tmp/lock`: every DVC command that reads or writes the
workspace (`repro`, `exp run`, `commit`, `checkout`, `status`) takes it with `flock(LOCK_EX |
LOCK_NB)` on the open file (zc.lockfile), before it touches an output. A Snakemake run and
`maskforge handover` take the same lock the same way, so
- `dvc repro` (or `dvc exp run`, ...) beside a running `snakemake` is refused by DVC itself within
  its 3 s retry ("Unable to acquire lock"); the file names the holder (`cat .dvc/tmp/lock`);
- `snakemake` beside a running `dvc` or `snakemake` is refused at once by `hold`, naming the
  holder's pid, command and start time.
The kernel drops a flock when the process holding the open file dies, SIGKILL included: a lock is
never left behind by a killed run, so no unlock command exists or is needed. (With DVC's
`core.hardlink_lock` set, DVC uses a lock file of another kind and this lock does not exclude it.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from typing import IO, Iterator

LOCK_FILE = Path(".dvc/tmp/lock")      # relative to the working directory; DVC's repository lock


class WorkdirLocked(RuntimeError):
    """Another process holds the working directory's lock; the message names it."""


def _command(pid: int) -> str:
    try:
        return " ".join(Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").replace("\0", " ").split())
    except OSError:
        return ""


def holder(path: Path) -> str:
    """Who holds the lock at `path`: pid, engine, command line and since when (the file's mtime,
    set when the lock was taken). `hold` writes `<pid> <engine>`, DVC ` <pid>`."""
    try:
        words, since = path.read_text().split(), path.stat().st_mtime
    except OSError:
        return "an unknown process"
    pid = int(words[0]) if words and words[0].isdigit() else None
    engine = " ".join(words[1:]) or "dvc"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
    return f"pid {pid} ({engine}: `{_command(pid)[:160] if pid else '?'}`), since {started}"


class _Held:
    """The lock this process holds: its open file, the directory and the engine named in it."""
    file: IO[str] | None = None
    root = Path(".")
    engine = ""


def hold(root: Path, engine: str) -> None:
    """Take the lock of the working directory `root` for the rest of this process's life (or
    until `lent`); raises WorkdirLocked naming the holder when another process has it."""
    if _Held.file is not None:
        return
    path = root / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    file = open(path, "a+")
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        file.close()
        raise WorkdirLocked(
            f"{path}: this working directory is in use by {holder(path)} — wait for it to finish (or stop it), "
            "then rerun; one run at a time per directory, Snakemake and DVC alike") from None
    file.seek(0)
    file.truncate()
    file.write(f"{os.getpid()} {engine}\n")
    file.flush()
    _Held.file, _Held.root, _Held.engine = file, root, engine


def holding() -> bool:
    return _Held.file is not None


def release() -> None:
    """Give the lock up before this process ends (a no-op when it holds none)."""
    if _Held.file is not None:
        fcntl.flock(_Held.file.fileno(), fcntl.LOCK_UN)
        _Held.file.close()
        _Held.file = None


@contextlib.contextmanager
def lent() -> Iterator[None]:
    """Let a child engine command (`dvc commit`, `snakemake --touch`) take this process's lock for
    itself while the block runs, then take it back (a no-op when this process holds none)."""
    if _Held.file is None:
        yield
        return
    release()
    try:
        yield
    finally:
        hold(_Held.root, _Held.engine)
