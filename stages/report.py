"""report: one offline HTML page (reports/index.html) that opens with warnings about degenerate
stores and the leaderboard (every variant's stores, best mIoU first, with the ratio to the store
each was made from), then the metrics and per-class precision/recall tables, the training curves
and CAM threshold sweeps as PNG plots (also written to reports/plots/ for `dvc plots diff`), the
colour legend and galleries — image, GT and the stores side by side — of the first train ids
(pseudo labels) and val ids (predictions). `snakemake --report` embeds it; `maskforge report`
writes it ad hoc."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from maskforge.data.manifest import Manifest
from maskforge.leaderboard import run_labels
from maskforge.store import open_store
from maskforge.viz import write_report
from stages._stage import parse_stage_args, run_stage


def main(argv: Sequence[str] | None = None) -> None:
    args, params = parse_stage_args(__spec__.name, __doc__, argv)
    manifest = Manifest.read(Path(args.prepared) / "manifest.json")
    stores = {label: open_store(path, manifest=manifest) for label, path in zip(run_labels(args.stores), args.stores)}
    summaries = {label: json.loads(Path(path).read_text()) for label, path in zip(run_labels(args.metrics), args.metrics)}
    warnings = write_report(args.html, args.plots, manifest, stores, summaries, args.curves, params["report"]["images"],
                            params["report"]["thumbnail"])
    print(f"report: {len(stores)} stores, {len(summaries)} metrics files, {len(args.curves)} curves -> {args.html}",
          flush=True)
    for warning in warnings:
        print(f"WARNING {warning}", flush=True)


if __name__ == "__main__":
    run_stage(main)
