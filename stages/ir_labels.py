"""ir_labels: IRN's inter-pixel relation labels from the round-0 CAM store (Ahn et al., CVPR 2019,
step/cam_to_ir_label.py): confident foreground = argmax of the CAMs with background score
irn.fg_threshold prepended, refined by the dense CRF (crf section); confident background likewise
with irn.bg_threshold; where the first says background and the second an object: ignore (255).
Images in parallel worker processes (crf.workers); written as a mask store."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from maskforge.crf import CRFParams
from maskforge.data.manifest import Manifest
from maskforge.irn import ir_labels
from maskforge.parallel import map_into_store
from maskforge.store import input_digest, open_store
from stages._stage import parse_stage_args, run_stage


def label(item: tuple[np.ndarray, np.ndarray, list[int], float, float, CRFParams]) -> np.ndarray:
    return ir_labels(*item)


def main(argv: Sequence[str] | None = None) -> None:
    args, params = parse_stage_args(__spec__.name, __doc__, argv)
    irn = params["irn"]
    manifest = Manifest.read(Path(args.prepared) / "manifest.json")
    cams = open_store(args.cams, kind="cam", manifest=manifest)
    settings = CRFParams.from_params(params["crf"])
    items = ((manifest.load_image(i), cams[i], cams.label_classes(i).tolist(), irn["fg_threshold"], irn["bg_threshold"],
              settings) for i in cams.ids)
    inputs = {"prepared": input_digest(args.prepared), "cams": input_digest(args.cams)}
    map_into_store(args.store, label, cams.ids, items, params["crf"]["workers"], kind="mask", stage="ir_labels",
                   params=params, inputs=inputs, manifest=manifest.sha256, classes=cams.classes)


if __name__ == "__main__":
    run_stage(main)
