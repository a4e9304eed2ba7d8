"""evaluate_cam: sweep the seed background threshold τ over a cached CAM store (no inference),
write the sweep as CSV and metrics/<store>.json scored at the best τ."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from maskforge.data.manifest import Manifest
from maskforge.evaluation import evaluate_cams
from maskforge.metric_files import write_csv, write_json
from maskforge.store import open_store
from stages._stage import parse_stage_args, run_stage


def main(argv: Sequence[str] | None = None) -> None:
    args, params = parse_stage_args(__spec__.name, __doc__, argv)
    manifest = Manifest.read(Path(args.prepared) / "manifest.json")
    summary, rows = evaluate_cams(open_store(args.store, kind="cam", manifest=manifest), manifest, params["evaluate"]["thresholds"])
    write_csv(args.sweep, rows)
    write_json(args.metrics, summary)
    print(f"evaluate_cam {summary['store']}: best tau {summary['bg_threshold']}, mIoU {summary['miou']:.2f}", flush=True)


if __name__ == "__main__":
    run_stage(main)
