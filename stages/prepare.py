"""prepare: validate the dataset (or generate the synthetic one) and write <prepared>/manifest.json.

The manifest lists ids per split, image/mask paths, sizes and multi-hot image-level labels (and
where those came from), per-class counts, the void fraction, the training mean pixel, the images
converted to RGB (by original mode), the train images left out for having no label, and the
content hash of the dataset files (`dataset_sha256`). Everything is built in a temporary folder
and renamed into place: a dataset error leaves the previous <prepared> untouched.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from maskforge.data.fingerprint import dataset_sha256
from maskforge.data.prepare import prepare_dataset
from maskforge.erasing import mean_pixel
from maskforge.store import replace_folder
from stages._stage import parse_stage_args, run_stage


def main(argv: Sequence[str] | None = None) -> None:
    args, params = parse_stage_args(__spec__.name, __doc__, argv)
    dataset = params["dataset"]
    out = Path(args.prepared)
    with replace_folder(out) as tmp:      # generated files land here; the manifest comes last
        manifest = prepare_dataset(dataset["root"], train_split=dataset["train_split"], val_split=dataset["val_split"],
                                   label_file=dataset["label_file"], mask_dir=dataset["mask_dir"],
                                   synthetic=dataset["synthetic"], out_dir=str(tmp))
        manifest.stats["mean_pixel"] = mean_pixel(manifest.load_image(i) for i in manifest.ids("train")).tolist()
        manifest.dataset_sha256 = dataset_sha256(dataset)
        manifest = manifest.moved(str(tmp), str(out))
        manifest.write(tmp / "manifest.json")
    print(f"prepare: {manifest.format} dataset, {len(manifest.ids('train'))} train / "
          f"{len(manifest.ids('val'))} val ids, labels from {manifest.label_source}", file=sys.stderr)
    skipped = manifest.stats["train"]["skipped_without_labels"]
    if skipped:
        print(f"prepare: {len(skipped)} train images have no label and are left out (e.g. {skipped[0]!r}; "
              "all listed in the manifest's stats.train.skipped_without_labels)", file=sys.stderr)
    converted = manifest.stats.get("converted_to_rgb")
    if converted:
        print("prepare: images converted to RGB when read: "
              + ", ".join(f"{n} {mode}" for mode, n in converted.items()), file=sys.stderr)


if __name__ == "__main__":
    run_stage(main)
