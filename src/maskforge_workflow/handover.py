"""Hand-over between the two engines, so that neither trusts outputs it cannot vouch for.

- Snakemake → DVC: after a successful Snakemake run, `record_for_dvc` runs `dvc commit -f` on the
  DVC stages whose outputs are newer than dvc.lock (the Snakefile's `onsuccess` calls it), so
  `dvc status` is clean and `dvc repro` reruns nothing. It only does so when the run's config is
  params.yaml itself and dvc.yaml is generated from it: a run under an overlay is not what
  dvc.yaml describes, and recording it would pair overlay outputs with params.yaml values.
- DVC → Snakemake: an output Snakemake has no record of (written by `dvc repro`, `dvc checkout`,
  `dvc exp apply`, `maskforge report`), or one rewritten after Snakemake recorded it, would be
  trusted by mtime alone, with params and code unchecked (measured with Snakemake 9.27). `start_snakemake_run`
  (the Snakefile calls it first) finds them: when `dvc status` vouches that they match params.yaml,
  the code and their inputs, Snakemake records them (`adopt_for_snakemake`, also `maskforge
  handover --to snakemake`); otherwise it marks them incomplete in Snakemake's own records, so
  Snakemake recomputes them (the profiles' `rerun-incomplete`). An output Snakemake itself marked
  incomplete (a run killed after the rename, before Snakemake's bookkeeping) is Snakemake's own
  and is simply rerun. Nothing refuses: each engine afterwards either has nothing to do or reruns
  what it cannot vouch for.
- A real Snakemake run first takes the working directory's lock (`maskforge_workflow.lock`, shared
  with DVC), then removes what killed runs left: Snakemake's own lock files (no other Snakemake can
  be running while the lock is held) and temporary `*.tmp-<pid>` writes (`maskforge.atomic`).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from maskforge.atomic import remove_leftovers
from maskforge_workflow.dvc_yaml import render_dvc_yaml
from maskforge_workflow.expand import jobs
from maskforge_workflow.lock import hold, lent

ADOPTING = "MASKFORGE_ADOPTING"   # set while `maskforge handover --to snakemake` records outputs
MTIME_SLACK_S = 2.0               # an output modified this long after Snakemake's record is foreign


class HandoverError(RuntimeError):
    """The outputs cannot be handed over; the message says what to run."""


def planned_outputs(config: Mapping[str, Any]) -> list[str]:
    return [out for job in jobs(config) for out in job.outs.values()]


def _record_file(kind: str, path: str, root: Path) -> Path:
    """Where Snakemake's file persistence keeps its `kind` record of `path` (kind: `metadata`, the
    record of a finished job; `incomplete`, the marker of a job started and not finished)."""
    from snakemake.persistence.file import FilePersistence
    folder = root / ".snakemake" / kind
    folder.mkdir(parents=True, exist_ok=True)
    return Path(FilePersistence._record_path(_PathOnly(), str(folder), path))


def _snakemake_record(path: str, root: Path) -> dict | None:
    """Snakemake's metadata record of `path`, or None."""
    if not (root / ".snakemake" / "metadata").is_dir():
        return None
    try:
        return json.loads(_record_file("metadata", path, root).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _marked_incomplete(path: str, root: Path) -> bool:
    return (root / ".snakemake" / "incomplete").is_dir() and _record_file("incomplete", path, root).exists()


def mark_incomplete(paths: list[str], root: Path) -> None:
    """Mark `paths` as Snakemake marks the outputs of a job it started: Snakemake then recomputes
    them (with `--rerun-incomplete`, set in the profiles) instead of trusting them."""
    for path in paths:
        _record_file("incomplete", path, root).write_text(json.dumps({"external_jobid": None}))


class _PathOnly:
    """Enough of FilePersistence for its `_record_path` (the key → file-name encoding)."""
    def _fetch_max_len(self, subject: str) -> int:
        return os.pathconf(subject, "PC_NAME_MAX")


def _modified(path: Path) -> float:
    stamp = path / ".snakemake_timestamp"   # Snakemake's own timestamp inside directory outputs
    return max(path.stat().st_mtime, stamp.stat().st_mtime if stamp.exists() else 0.0) if path.is_dir() \
        else path.stat().st_mtime


def untrusted_outputs(config: Mapping[str, Any], root: Path = Path(".")) -> list[str]:
    """Outputs of the graph that exist but that Snakemake did not write or has since changed hands;
    not those of Snakemake's own unfinished jobs (it reruns them)."""
    foreign = []
    for out in planned_outputs(config):
        path = root / out
        if not path.exists() or _marked_incomplete(out, root):
            continue
        record = _snakemake_record(out, root)
        if record is None or _modified(path) > record["endtime"] + MTIME_SLACK_S:
            foreign.append(out)
    return foreign


def _dvc(*args: str, root: Path) -> subprocess.CompletedProcess:
    """A DVC command, lent this process's working-directory lock (DVC takes the same lock)."""
    with lent():
        return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True)


def dvc_yaml_describes(config: Mapping[str, Any], root: Path) -> bool:
    """True when dvc.yaml is the one generated from `config` and `config` is params.yaml itself."""
    from maskforge.config import load_config
    dvc_yaml = root / "dvc.yaml"
    return (dvc_yaml.exists() and load_config(root / "params.yaml") == dict(config)
            and dvc_yaml.read_text() == render_dvc_yaml(config))


def stages_to_record(config: Mapping[str, Any], root: Path) -> list[str]:
    """DVC stages whose outputs all exist and are newer than dvc.lock (or that it lacks); cheap
    (mtimes only) when nothing is newer, which keeps a no-op `snakemake` run fast."""
    lock = root / "dvc.lock"
    since = lock.stat().st_mtime if lock.exists() else 0.0
    complete = [job for job in jobs(config) if all((root / out).exists() for out in job.outs.values())]
    newer = {job.name for job in complete if max(_modified(root / out) for out in job.outs.values()) > since}
    if lock.exists() and not newer:
        return []
    import yaml
    locked = (yaml.load(lock.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}).get("stages", {}) \
        if lock.exists() else {}
    return [job.name for job in complete if job.name in newer or job.name not in locked]


@contextlib.contextmanager
def _mtimes_kept(paths: list[Path]) -> Iterator[None]:
    """Put back the mtimes of `paths` (and of everything inside them) after the block:
    `dvc commit` relinks outputs from its cache with the same bytes but new mtimes, which would
    make Snakemake see them as rewritten and rerun what reads them."""
    every = [p for path in paths for p in ([*path.rglob("*"), path] if path.is_dir() else [path]) if p.exists()]
    times = {p: (p.stat().st_atime_ns, p.stat().st_mtime_ns) for p in every}
    try:
        yield
    finally:
        for p in sorted(times, key=lambda q: -len(q.parts)):     # contents first, then their folders
            if p.exists():
                os.utime(p, ns=times[p], follow_symlinks=False)


def record_for_dvc(config: Mapping[str, Any], root: Path = Path(".")) -> str:
    """`dvc commit -f` the stages Snakemake (re)wrote; returns what was done, for the log."""
    if not (root / ".dvc").is_dir():
        return "not a DVC repository: nothing recorded for DVC"
    if os.environ.get(ADOPTING):
        return "adopting what dvc.lock already records: nothing to record"
    names = stages_to_record(config, root)
    if not names:
        return "dvc.lock is up to date"
    if not dvc_yaml_describes(config, root):
        return ("not recorded for DVC: this run's config is not params.yaml, or dvc.yaml is stale "
                "(run `maskforge dvc-yaml`, then `maskforge handover --to dvc`)")
    outputs = [root / out for job in jobs(config) if job.name in names for out in job.outs.values()]
    with _mtimes_kept(outputs):
        done = _dvc("commit", "--force", "--quiet", *names, root=root)
    if done.returncode != 0:
        raise HandoverError(f"dvc commit failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    return f"recorded {len(names)} stages in dvc.lock (dvc commit -f)"


def dvc_changed_stages(config: Mapping[str, Any], root: Path) -> list[str] | None:
    """The stages `dvc status` lists as changed, or None when DVC cannot vouch for anything (no DVC
    repository, or dvc.yaml not generated from `config` = params.yaml)."""
    if not (root / ".dvc").is_dir() or not dvc_yaml_describes(config, root):
        return None
    status = _dvc("status", "--json", root=root)
    if status.returncode != 0:
        raise HandoverError(f"dvc status failed: {status.stderr.strip()}")
    return sorted(json.loads(status.stdout or "{}"))


def _touch_all(root: Path, cores: int) -> None:
    """`snakemake --touch --forceall`: Snakemake records every output as it is now."""
    env = {**os.environ, ADOPTING: "1"}
    with lent():
        done = subprocess.run([sys.executable, "-m", "snakemake", "--touch", "--forceall", "--cores", str(cores), "--quiet"],
                              cwd=root, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise HandoverError(f"snakemake --touch failed: {done.stderr.strip()[-500:]}")
    os.utime(root / "dvc.lock")    # it already records these outputs: no `dvc commit` after the next run


def adopt_for_snakemake(config: Mapping[str, Any], root: Path = Path("."), cores: int = 1) -> str:
    """Let Snakemake record outputs DVC wrote, once `dvc status` vouches for all of them."""
    changed = dvc_changed_stages(config, root)
    if changed is None:
        raise HandoverError("dvc.yaml is not generated from params.yaml: run `maskforge dvc-yaml` and `dvc repro` first")
    if changed:
        raise HandoverError(f"dvc status lists {len(changed)} changed stages ({', '.join(changed[:5])}…): "
                            "run `dvc repro` first, or rerun them with snakemake --forcerun")
    foreign = untrusted_outputs(config, root)
    if not foreign:
        return "Snakemake already has a record of every output"
    _touch_all(root, cores)
    return f"Snakemake recorded {len(foreign)} outputs that dvc status vouches for"


def run_flags(argv: Sequence[str]) -> set[str]:
    """Which of dryrun, forceall and touch a Snakemake command line asks for (the workflow object
    learns them only after the Snakefile is parsed, too late for `start_snakemake_run`)."""
    long = {"--dry-run": "dryrun", "--dryrun": "dryrun", "--forceall": "forceall", "--touch": "touch"}
    short = {"n": "dryrun", "F": "forceall", "t": "touch"}
    found: set[str] = set()
    for arg in argv[1:]:
        if arg.startswith("--"):
            found.add(long.get(arg.split("=")[0], ""))
        elif arg.startswith("-") and arg[1:].isalpha():       # -n, -nF, -Ft (a value is never alphabetic-only flags)
            found.update(short.get(c, "") for c in arg[1:])
    return found - {""}


def _shown(paths: list[str]) -> str:
    return ", ".join(paths[:4]) + (f" and {len(paths) - 4} more" if len(paths) > 4 else "")


def start_snakemake_run(config: Mapping[str, Any], argv: Sequence[str], root: Path = Path(".")) -> str:
    """What the Snakefile does before Snakemake builds its DAG (see the module): take the lock and
    clear what killed runs left (real runs), then adopt or mark incomplete the outputs Snakemake
    cannot vouch for. Returns what was done, for the log ("" when nothing)."""
    flags = run_flags(argv)
    if "dryrun" not in flags:
        hold(root, "snakemake")
        for stale in (root / ".snakemake" / "locks").glob("*.lock"):   # a killed Snakemake's: none runs now
            stale.unlink()
        for top in sorted({Path(out).parts[0] for out in planned_outputs(config)}):
            remove_leftovers(root / top)
    if os.environ.get(ADOPTING) or flags & {"forceall", "touch"}:
        return ""
    foreign = untrusted_outputs(config, root)
    if not foreign:
        return ""
    changed = dvc_changed_stages(config, root)
    dry = "dryrun" in flags                     # a dry run changes nothing: it says what a real run does
    if changed == []:
        if not dry:
            _touch_all(root, cores=1)
        return (f"{'a real run adopts' if dry else 'adopted'} {len(foreign)} outputs written by DVC "
                f"({_shown(foreign)}): `dvc status` vouches for them")
    if not dry:
        mark_incomplete(foreign, root)
    why = "dvc.yaml does not describe this config" if changed is None else f"dvc status lists {', '.join(changed[:4])}"
    return (f"{_shown(foreign)}: written by another tool or changed since Snakemake wrote them, and not vouched "
            f"for by DVC ({why}): {'a real run marks them incomplete and' if dry else 'marked incomplete,'} "
            "Snakemake recomputes them")
