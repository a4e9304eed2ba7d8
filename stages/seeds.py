"""seeds: IRN-style seed masks from a CAM store — background score τ (cam.bg_threshold) prepended
to the normalised CAMs, argmax per pixel — written as a mask store. τ "otsu" is derived from the
store itself without GT: Otsu's threshold of the histogram of every pixel's seed score."""

from __future__ import annotations

from typing import Sequence

from maskforge.seed_masks import otsu_threshold, score_histogram, seeds_from_cams
from maskforge.store import StoreReader, StoreWriter, input_digest, open_store
from stages._stage import parse_stage_args, run_stage


def background_threshold(cams: StoreReader, setting: float | str) -> float:
    """τ of cam.bg_threshold: the number itself, or for "otsu" Otsu's threshold of the store's seed scores."""
    if setting != "otsu":
        return float(setting)
    return otsu_threshold(sum(score_histogram(cams[i], cams.label_classes(i)) for i in cams.ids))


def main(argv: Sequence[str] | None = None) -> None:
    args, params = parse_stage_args(__spec__.name, __doc__, argv)
    cams = open_store(args.cams, kind="cam")
    tau = background_threshold(cams, params["cam"]["bg_threshold"])
    print(f"seeds: background score tau {tau:.3f} (cam.bg_threshold: {params['cam']['bg_threshold']})", flush=True)
    with StoreWriter(args.store, kind="mask", stage="seeds", params=params,
                     inputs={"cams": input_digest(args.cams)}, manifest=cams.manifest_sha256, classes=cams.classes,
                     derived={"bg_threshold": tau}) as writer:
        for image_id in cams.ids:
            writer.add(image_id, seeds_from_cams(cams[image_id], cams.label_classes(image_id), tau))


if __name__ == "__main__":
    run_stage(main)
