"""seeds: IRN-style seed masks from a CAM store — background score τ (cam.bg_threshold) prepended
to the normalised CAMs, argmax per pixel — written as a mask store."""

from __future__ import annotations

from typing import Sequence

from maskforge.cam import seeds_from_cams
from maskforge.store import StoreWriter, input_digest, open_store
from stages._stage import parse_stage_args, run_stage


def main(argv: Sequence[str] | None = None) -> None:
    args, params = parse_stage_args(__spec__.name, __doc__, argv)
    cams = open_store(args.cams, kind="cam")
    with StoreWriter(args.store, kind="mask", stage="seeds", params=params,
                     inputs={"cams": input_digest(args.cams)}, manifest=cams.manifest_sha256, classes=cams.classes) as writer:
        for image_id in cams.ids:
            writer.add(image_id, seeds_from_cams(cams[image_id], cams.label_classes(image_id), params["cam"]["bg_threshold"]))


if __name__ == "__main__":
    run_stage(main)
