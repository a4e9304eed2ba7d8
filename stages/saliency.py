"""saliency: a saliency map in [0, 1] per training image — from OpenCV's static saliency (no
weights) or from a folder of precomputed maps (<folder>/<id>.png, any size) — as a saliency store."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from maskforge.data.manifest import Manifest
from maskforge.progress import track
from maskforge.saliency import saliency_map
from maskforge.store import StoreWriter, input_digest
from stages._stage import parse_stage_args, run_stage


def main(argv: Sequence[str] | None = None) -> None:
    args, params = parse_stage_args(__spec__.name, __doc__, argv)
    settings = params["saliency"]
    manifest = Manifest.read(Path(args.prepared) / "manifest.json")
    inputs = {"prepared": input_digest(args.prepared)}
    if settings["source"] == "folder":
        inputs["folder"] = input_digest(settings["folder"])
    with StoreWriter(args.store, kind="saliency", stage="saliency", params=params, inputs=inputs, manifest=manifest.sha256,
                     classes=manifest.classes) as writer:
        ids = manifest.ids("train")
        for image_id in track(ids, len(ids), "saliency"):
            writer.add(image_id, saliency_map(manifest.load_image(image_id), source=settings["source"],
                                              folder=settings["folder"], image_id=image_id,
                                              blur_sigma=settings["blur_sigma"]))


if __name__ == "__main__":
    run_stage(main)
