"""erase: AE-PSL region mining for one round — pixels whose normalised CAM reaches the erase
threshold join their class's object region F, accumulated over the rounds so far (a region store)."""

from __future__ import annotations

from typing import Sequence

from maskforge.erasing import accumulate_regions, mine_regions
from maskforge.store import StoreWriter, input_digest, open_store, same_manifest
from stages._stage import parse_stage_args, run_stage


def main(argv: Sequence[str] | None = None) -> None:
    args, params = parse_stage_args(__spec__.name, __doc__, argv)
    cams = open_store(args.cams, kind="cam")
    previous = open_store(args.regions, kind="region") if args.regions else None
    inputs = {"cams": input_digest(args.cams), **({"regions": input_digest(args.regions)} if args.regions else {})}
    with StoreWriter(args.store, kind="region", stage="erase", params=params, inputs=inputs,
                     manifest=same_manifest(cams, *([previous] if previous else [])),
                     classes=cams.classes) as writer:
        for image_id in cams.ids:
            classes = cams.label_classes(image_id).tolist()
            mined = mine_regions(cams[image_id], params["ae"]["erase_threshold"])
            before = (previous[image_id], previous.label_classes(image_id).tolist()) if previous else (None, [])
            writer.add(image_id, accumulate_regions(*before, mined, classes), classes=classes)


if __name__ == "__main__":
    run_stage(main)
