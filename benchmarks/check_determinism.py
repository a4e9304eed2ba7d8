"""Are the stored bytes independent of the thread count? Runs the CAM stages of the tiny config
(prepare → train_cam → make_cam → erase → seeds → scores, one AE round) once per OMP_NUM_THREADS
value, each in a fresh process in the same folder (the manifest records paths), and prints the sha256 of every file of every output (stores'
shards and meta.json, checkpoint, metrics) with whether all runs agree.

    python benchmarks/check_determinism.py [--threads 1 2] [--out /tmp/determinism]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

RUN = ("import sys; from pathlib import Path; from tests.pipeline import run_cam_pipeline; "
       "run_cam_pipeline(Path(sys.argv[1]), ['tests/configs/tiny.yaml'], rounds=1, refine=False)")


def digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "params.yaml"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", default="/tmp/maskforge_determinism")
    args = parser.parse_args(argv)
    runs = {}
    shutil.rmtree(args.out, ignore_errors=True)
    root = Path(args.out) / "run"
    for threads in args.threads:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        subprocess.run([sys.executable, "-c", RUN, str(root)], check=True, env=env, capture_output=True)
        runs[threads] = digests(root)
        root.rename(root.with_name(f"threads{threads}"))
    names = sorted(set().union(*runs.values()))
    rows = [[name, *(runs[t].get(name, "-")[:12] for t in args.threads),
             "same" if len({runs[t].get(name) for t in args.threads}) == 1 else "DIFFERENT"] for name in names]
    print("| file | " + " | ".join(f"sha256, OMP_NUM_THREADS={t}" for t in args.threads) + " | bytes |")
    print("| --- |" + " --- |" * (len(args.threads) + 1))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    differing = sum(row[-1] == "DIFFERENT" for row in rows)
    print(f"\n{len(names) - differing} of {len(names)} files identical across thread counts {args.threads}")


if __name__ == "__main__":
    main()
