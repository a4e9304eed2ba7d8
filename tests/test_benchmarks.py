"""benchmarks/run_all.py runs and prints the one table (smoke test: no timing is checked)."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_run_all_smallest_mode_prints_the_table_columns():
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "benchmarks/run_all.py", "--size", "tiny", "--only", "randomwalk", "startup"],
                         cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert "| name | ours | baseline | ratio | memory | note |" in lines
    rows = [line for line in lines if line.startswith("| random walk")]
    assert len(rows) == 1 and rows[0].count("|") == 7 and "×" in rows[0]
    assert any(line.startswith("| start-up") and "not run: pass --workspace" in line for line in lines)
