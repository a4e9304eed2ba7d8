"""evaluate_saliency: score the saliency store as a foreground/background mask at the assembly's
background threshold (foreground = saliency >= assemble.bg_saliency) against the GT of the
training ids; writes metrics/saliency.json."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from maskforge.data.manifest import Manifest
from maskforge.evaluation import evaluate_saliency
from maskforge.metric_files import write_json
from maskforge.store import open_store
from stages._stage import parse_stage_args, run_stage


def main(argv: Sequence[str] | None = None) -> None:
    args, params = parse_stage_args(__spec__.name, __doc__, argv)
    manifest = Manifest.read(Path(args.prepared) / "manifest.json")
    summary = evaluate_saliency(open_store(args.store, kind="saliency", manifest=manifest), manifest, params["assemble"]["bg_saliency"])
    write_json(args.metrics, summary)
    print(f"evaluate_saliency: fg/bg mIoU {summary['miou']:.2f} at {summary['threshold']}", flush=True)


if __name__ == "__main__":
    run_stage(main)
