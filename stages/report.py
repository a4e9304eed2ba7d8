"""report: one offline HTML page (reports/index.html) that opens with the leaderboard (every
variant's stores, best mIoU first, with the ratio to the store each was made from), then the
metrics table of every scored store and galleries — image, GT and every store side by side — of the first train ids (pseudo labels)
and val ids (predictions). `snakemake --report` embeds it; `maskforge report` writes it ad hoc."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from maskforge.atomic import atomic_write_text
from maskforge.data.manifest import Manifest
from maskforge.leaderboard import run_labels
from maskforge.store import open_store
from maskforge.viz import report_html
from stages._stage import parse_stage_args, run_stage


def main(argv: Sequence[str] | None = None) -> None:
    args, params = parse_stage_args(__spec__.name, __doc__, argv)
    manifest = Manifest.read(Path(args.prepared) / "manifest.json")
    stores = {label: open_store(path, manifest=manifest) for label, path in zip(run_labels(args.stores), args.stores)}
    summaries = {label: json.loads(Path(path).read_text()) for label, path in zip(run_labels(args.metrics), args.metrics)}
    atomic_write_text(args.html, report_html(manifest, stores, summaries, params["report"]["images"],
                                             params["report"]["thumbnail"]))
    print(f"report: {len(stores)} stores, {len(summaries)} metrics files -> {args.html}", flush=True)


if __name__ == "__main__":
    run_stage(main)
