"""assemble_ae: AE-PSL pseudo masks S = F ∪ B from the regions mined over all AE rounds and the
saliency background; contested, unsalient-object and neither pixels are ignored (255). Also writes
the fraction of pixels each ignore rule claims (metrics/assemble_ae_ignored.json)."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from maskforge.assemble import assemble_pseudo_mask, ignore_reasons
from maskforge.metric_files import write_json
from maskforge.store import StoreWriter, input_digest, open_store, same_manifest
from stages._stage import parse_stage_args, run_stage


def main(argv: Sequence[str] | None = None) -> None:
    args, params = parse_stage_args(__spec__.name, __doc__, argv)
    rules = params["assemble"]
    regions, saliency = open_store(args.regions, kind="region"), open_store(args.saliency, kind="saliency")
    ignored, pixels = Counter(), 0
    inputs = {"regions": input_digest(args.regions), "saliency": input_digest(args.saliency)}
    with StoreWriter(args.store, kind="mask", stage="assemble_ae", params=params, inputs=inputs, manifest=same_manifest(regions, saliency),
                     classes=regions.classes) as writer:
        for image_id in regions.ids:
            mined, classes, salient = regions[image_id], regions.label_classes(image_id), saliency[image_id]
            writer.add(image_id, assemble_pseudo_mask(mined, classes, salient, **rules))
            ignored.update(ignore_reasons(mined, salient, **rules))
            pixels += salient.size
    write_json(args.ignored, {"pixels": pixels, "ignored_fraction": sum(ignored.values()) / pixels,
                              **{f"{rule}_fraction": count / pixels for rule, count in sorted(ignored.items())}})


if __name__ == "__main__":
    run_stage(main)
