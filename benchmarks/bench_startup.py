"""Start-up: a no-op `snakemake --cores all` and `dvc status` on a finished workspace.

`--prepare DIR` builds the workspace: the project's files (git ls-files, uncommitted included)
with params.yaml = params.yaml + tests/configs/tiny.yaml, dvc.yaml regenerated, one full
`snakemake --cores 2` run (the hand-over records it for DVC), and a git commit — minutes.
Then each command runs `--repeats` times (median wall seconds; CPU seconds = user + sys of the
child, which contention on a shared machine inflates far less than wall time) with:
  - `--python` (default: this interpreter): the install measured as "ours", e.g. the default
    install `pip install -e .` (no SLURM executor plugin);
  - `--baseline-python`: the install compared with, e.g. `.[test,cluster]` (with the plugin,
    which imports pandas at Snakemake start-up). For `dvc status` the baseline is DVC's own
    floor: `dvc status` in an empty DVC repository.

A default install beside a `.[test]` one without reinstalling torch: a venv whose .pth points at
a folder of symlinks to the `.[test]` site-packages minus snakemake_executor_plugin_slurm* and
pandas* (pandas comes only with the plugin, and Snakemake 9 imports pandas whenever it is
installed, to hash params).

    python benchmarks/bench_startup.py --prepare /tmp/ws
    python benchmarks/bench_startup.py --workspace /tmp/ws [--python P] [--baseline-python P] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from _table import Row, print_rows

REPO = Path(__file__).resolve().parents[1]


def run(cwd: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result


def prepare(workspace: Path) -> None:
    """The project with the tiny config, after one full Snakemake run, committed."""
    from maskforge.config import load_config

    if workspace.exists():
        raise SystemExit(f"{workspace} exists: pass a new folder to --prepare")
    files = run(REPO, "git", "ls-files", "-co", "--exclude-standard").stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (workspace / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, workspace / name)
    tiny = load_config(REPO / "params.yaml", [REPO / "tests/configs/tiny.yaml"])
    (workspace / "params.yaml").write_text(yaml.safe_dump(tiny, sort_keys=False))
    run(workspace, sys.executable, "-m", "maskforge.cli", "dvc-yaml")
    run(workspace, "git", "init", "-q")
    run(workspace, sys.executable, "-m", "snakemake", "--cores", "2")
    run(workspace, "git", "add", "-A")
    run(workspace, "git", "commit", "-qm", "workspace")


def timed(cwd: Path, cmd: list[str], repeats: int) -> tuple[float, float]:
    """Median wall and CPU (user + sys of the child) seconds of `cmd` over `repeats` runs."""
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        run(cwd, *cmd)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def measure(workspace: Path, python: str, baseline_python: str, repeats: int) -> list[Row]:
    out = run(workspace, python, "-m", "snakemake", "--cores", "all")
    if "Nothing to be done" not in out.stdout + out.stderr:
        raise SystemExit(f"{workspace}: `snakemake --cores all` had work to do — not a finished workspace")
    ours = timed(workspace, [python, "-m", "snakemake", "--cores", "all"], repeats)
    theirs = timed(workspace, [baseline_python, "-m", "snakemake", "--cores", "all"], repeats)
    dvc = timed(workspace, [python, "-m", "dvc", "status"], repeats)
    with tempfile.TemporaryDirectory() as empty:
        run(Path(empty), "git", "init", "-q")
        run(Path(empty), python, "-m", "dvc", "init", "-q")
        floor = timed(Path(empty), [python, "-m", "dvc", "status"], repeats)
    note = f"median of {repeats}; wall (CPU) seconds"
    return [Row("no-op snakemake --cores all: default install vs with SLURM plugin", f"{ours[0]:.2f} s ({ours[1]:.2f})",
                f"{theirs[0]:.2f} s ({theirs[1]:.2f})", theirs[0] / ours[0], "", note),
            Row("dvc status on the finished workspace vs an empty DVC repo", f"{dvc[0]:.2f} s ({dvc[1]:.2f})",
                f"{floor[0]:.2f} s ({floor[1]:.2f})", floor[0] / dvc[0], "", note + "; baseline = DVC's floor")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepare", type=Path, help="build a finished workspace in this new folder and stop")
    parser.add_argument("--workspace", type=Path, help="a folder made by --prepare")
    parser.add_argument("--python", default=sys.executable, help="interpreter of the install measured")
    parser.add_argument("--baseline-python", default=sys.executable, help="interpreter of the install compared with")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.prepare:
        prepare(args.prepare)
        print(f"prepared {args.prepare}")
    elif args.workspace:
        print_rows(measure(args.workspace, args.python, args.baseline_python, args.repeats))
    else:
        parser.error("pass --prepare DIR or --workspace DIR")


if __name__ == "__main__":
    main()
