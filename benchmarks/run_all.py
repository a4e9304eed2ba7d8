"""Every benchmark at a small size, one table: name, ours, baseline, ratio, memory, note.

Ratios are "times better than the baseline" (speed, or size on disk), each measured in this one
run on this machine; on a shared machine timings interleave ours and the baseline (see each
benchmark's docstring). Full-size runs: each benchmarks/bench_*.py on its own (--help).

    python benchmarks/run_all.py [--size tiny|small] [--only make_cam crf ...] [--workspace DIR]

--size tiny is a smoke test (seconds; numbers meaningless). Start-up rows need a finished
workspace: `python benchmarks/bench_startup.py --prepare DIR` once, then --workspace DIR (and
--python / --baseline-python as in bench_startup.py).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

import bench_crf
import bench_make_cam
import bench_randomwalk
import bench_stage_memory
import bench_startup
import bench_store_io
from _table import Row, print_rows

BENCHMARKS = {"make_cam": bench_make_cam, "crf": bench_crf, "randomwalk": bench_randomwalk,
              "store_io": bench_store_io, "stage_memory": bench_stage_memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "small"], default="small")
    parser.add_argument("--only", nargs="+", choices=[*BENCHMARKS, "startup"], help="run just these")
    parser.add_argument("--workspace", help="a finished workspace (bench_startup.py --prepare) for the start-up rows")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--baseline-python", default=sys.executable)
    parser.add_argument("--repeats", type=int, default=5, help="start-up runs per command")
    args = parser.parse_args()
    torch.set_num_threads(1)
    chosen = args.only or [*BENCHMARKS, "startup"]
    rows: list[Row] = []
    start = time.perf_counter()
    for name in chosen:
        if name == "startup":
            if args.workspace:
                from pathlib import Path
                rows += bench_startup.measure(Path(args.workspace), args.python, args.baseline_python, args.repeats)
            else:
                rows.append(Row("start-up (snakemake no-op, dvc status)", "", "", None, "",
                                "not run: pass --workspace (see bench_startup.py --prepare)"))
            continue
        print(f"running {name} …", file=sys.stderr, flush=True)
        rows += BENCHMARKS[name].table_rows(args.size == "tiny")
    print(f"size {args.size}, {torch.get_num_threads()} torch thread(s), {time.perf_counter() - start:.0f} s in all")
    print_rows(rows)


if __name__ == "__main__":
    main()
