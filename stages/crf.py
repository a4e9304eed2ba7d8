"""crf: dense-CRF refinement of a mask store (Krähenbühl & Koltun 2011, IRN's settings): unary
from the labels with confidence gt_prob (255 pixels unsure), Gaussian + bilateral pairwise terms,
mean-field; images in parallel worker processes, one store writer."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from maskforge.crf import CRFParams, crf_from_labels
from maskforge.data.manifest import Manifest
from maskforge.parallel import map_into_store
from maskforge.store import input_digest, open_store
from stages._stage import parse_stage_args, run_stage


def refine(item: tuple[np.ndarray, np.ndarray, list[int], CRFParams]) -> np.ndarray:
    return crf_from_labels(*item)


def main(argv: Sequence[str] | None = None) -> None:
    args, params = parse_stage_args(__spec__.name, __doc__, argv)
    manifest = Manifest.read(Path(args.prepared) / "manifest.json")
    masks = open_store(args.masks, kind="mask", manifest=manifest)
    settings = CRFParams.from_params(params["crf"])
    items = ((manifest.load_image(i), masks[i], [0, *manifest.label_ids(i).tolist()], settings) for i in masks.ids)
    inputs = {"prepared": input_digest(args.prepared), "masks": input_digest(args.masks)}
    map_into_store(args.store, refine, masks.ids, items, params["crf"]["workers"], kind="mask", stage="crf",
                   params=params, inputs=inputs, manifest=manifest.sha256, classes=masks.classes)


if __name__ == "__main__":
    run_stage(main)
