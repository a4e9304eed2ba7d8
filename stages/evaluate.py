"""evaluate: score a mask or region store against the GT of the training ids and write
metrics/<store>.json ({"store", "split", "miou" (percent), "per_class": {name: IoU %}, ...};
region stores add class-aware foreground recall and precision)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from maskforge.data.manifest import Manifest
from maskforge.degenerate import store_warning
from maskforge.evaluation import evaluate_masks, evaluate_regions
from maskforge.metric_files import write_json
from maskforge.store import StoreError, open_store
from stages._stage import parse_stage_args, run_stage


def main(argv: Sequence[str] | None = None) -> None:
    args, _ = parse_stage_args(__spec__.name, __doc__, argv)
    manifest = Manifest.read(Path(args.prepared) / "manifest.json")
    store = open_store(args.store, manifest=manifest)
    scorers = {"mask": evaluate_masks, "region": evaluate_regions}
    if store.kind not in scorers:
        raise StoreError(f"{args.store}: a {store.kind} store; evaluate scores mask and region stores (cam: evaluate_cam)")
    summary = scorers[store.kind](store, manifest)
    write_json(args.metrics, summary)
    print(f"evaluate {store.path.name}: mIoU {summary['miou']:.2f}", flush=True)
    warning = store_warning(args.store, store)
    if warning:
        print(f"WARNING {warning}", flush=True)


if __name__ == "__main__":
    run_stage(main)
