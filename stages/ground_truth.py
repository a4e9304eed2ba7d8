"""ground_truth: the GT masks of the train split as a mask store (255 = void), so that
`seg.labels: gt` trains the fully supervised upper bound through the same path as any pseudo-label
store and reports can show GT beside each store. Train images without a GT mask are left out."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from maskforge.data.manifest import Manifest
from maskforge.store import StoreWriter, input_digest
from stages._stage import parse_stage_args, run_stage


def main(argv: Sequence[str] | None = None) -> None:
    args, params = parse_stage_args(__spec__.name, __doc__, argv)
    manifest = Manifest.read(Path(args.prepared) / "manifest.json")
    ids = manifest.ids("train")
    written = 0
    with StoreWriter(args.store, kind="mask", stage="ground_truth", params=params,
                     inputs={"prepared": input_digest(args.prepared)}, manifest=manifest.sha256, classes=manifest.classes) as writer:
        for image_id in ids:
            mask = manifest.load_mask(image_id)
            if mask is not None:
                writer.add(image_id, mask)
                written += 1
    print(f"ground_truth: {written} of {len(ids)} train images have GT masks", flush=True)


if __name__ == "__main__":
    run_stage(main)
