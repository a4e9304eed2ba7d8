"""Hand-over between the two engines, so that neither trusts outputs it cannot vouch for.

- Snakemake → DVC: after a successful Snakemake run, `record_for_dvc` runs `dvc commit -f` on the
  DVC stages whose outputs are newer than dvc.lock (the Snakefile's `onsuccess` calls it), so
  `dvc status` is clean and `dvc repro` reruns nothing. It only does so when the run's config is
  params.yaml itself and dvc.yaml is generated from it: a run under an overlay is not what
  dvc.yaml describes, and recording it would pair overlay outputs with params.yaml values.
- DVC → Snakemake: an output Snakemake has no record of (written by `dvc repro`, `dvc checkout`,
  `dvc exp apply`), or one rewritten after Snakemake recorded it, would be trusted by mtime alone,
  with params and code unchecked (measured with Snakemake 9.27). `untrusted_outputs` finds them and the
  Snakefile stops on them; `adopt_for_snakemake` lets Snakemake record them only once
  `dvc status` says they match params.yaml, the code and their inputs.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator, Mapping

from maskforge_workflow.codedeps import ROOT
from maskforge_workflow.dvc_yaml import render_dvc_yaml
from maskforge_workflow.expand import jobs

ADOPTING = "MASKFORGE_ADOPTING"   # set while `maskforge handover --to snakemake` records outputs
MTIME_SLACK_S = 2.0               # an output modified this long after Snakemake's record is foreign


class HandoverError(RuntimeError):
    """The outputs cannot be handed over; the message says what to run."""


def planned_outputs(config: Mapping[str, Any]) -> list[str]:
    return [out for job in jobs(config) for out in job.outs.values()]


def _snakemake_record(path: str, root: Path) -> dict | None:
    """Snakemake's metadata record of `path` (its file persistence backend), or None."""
    from snakemake.persistence.file import FilePersistence
    metadata = root / ".snakemake" / "metadata"
    if not metadata.is_dir():
        return None
    record = FilePersistence._record_path(_PathOnly(), str(metadata), path)
    try:
        with open(record) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


class _PathOnly:
    """Enough of FilePersistence for its `_record_path` (the key → file-name encoding)."""
    def _fetch_max_len(self, subject: str) -> int:
        return os.pathconf(subject, "PC_NAME_MAX")


def _modified(path: Path) -> float:
    stamp = path / ".snakemake_timestamp"   # Snakemake's own timestamp inside directory outputs
    return max(path.stat().st_mtime, stamp.stat().st_mtime if stamp.exists() else 0.0) if path.is_dir() \
        else path.stat().st_mtime


def untrusted_outputs(config: Mapping[str, Any], root: Path = Path(".")) -> list[str]:
    """Outputs of the graph that exist but that Snakemake did not write or has since changed hands."""
    foreign = []
    for out in planned_outputs(config):
        path = root / out
        if not path.exists():
            continue
        record = _snakemake_record(out, root)
        if record is None or record.get("incomplete") or _modified(path) > record["endtime"] + MTIME_SLACK_S:
            foreign.append(out)
    return foreign


def _dvc(*args: str, root: Path) -> subprocess.CompletedProcess:
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


def adopt_for_snakemake(config: Mapping[str, Any], root: Path = Path("."), cores: int = 1) -> str:
    """Let Snakemake record outputs DVC wrote, once `dvc status` vouches for all of them."""
    if not dvc_yaml_describes(config, root):
        raise HandoverError("dvc.yaml is not generated from params.yaml: run `maskforge dvc-yaml` and `dvc repro` first")
    status = _dvc("status", "--json", root=root)
    if status.returncode != 0:
        raise HandoverError(f"dvc status failed: {status.stderr.strip()}")
    changed = sorted(json.loads(status.stdout or "{}"))
    if changed:
        raise HandoverError(f"dvc status lists {len(changed)} changed stages ({', '.join(changed[:5])}…): "
                            "run `dvc repro` first, or rerun them with snakemake --forcerun")
    foreign = untrusted_outputs(config, root)
    if not foreign:
        return "Snakemake already has a record of every output"
    env = {**os.environ, ADOPTING: "1"}
    done = subprocess.run([sys.executable, "-m", "snakemake", "--touch", "--forceall", "--cores", str(cores), "--quiet"],
                          cwd=root, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise HandoverError(f"snakemake --touch failed: {done.stderr.strip()[-500:]}")
    os.utime(root / "dvc.lock")    # it already records these outputs: no `dvc commit` after the next run
    return f"Snakemake recorded {len(foreign)} outputs that dvc status vouches for"


def guard_snakemake(config: Mapping[str, Any], root: Path = ROOT) -> None:
    """Stop a Snakemake run that would trust outputs it has no record of (called from common.smk)."""
    if os.environ.get(ADOPTING):
        return
    foreign = untrusted_outputs(config, root)
    if foreign:
        shown = ", ".join(foreign[:4]) + (f" and {len(foreign) - 4} more" if len(foreign) > 4 else "")
        raise HandoverError(
            f"{shown}: written by another tool (dvc repro/checkout?) or changed since Snakemake wrote them; "
            "run `maskforge handover --to snakemake` (adopts them if `dvc status` is clean) "
            "or `snakemake --forceall`/delete them")
