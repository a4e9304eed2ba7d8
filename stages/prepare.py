"""prepare: validate the dataset (or generate the synthetic one) and write <prepared>/manifest.json.

The manifest lists ids per split, image/mask paths, sizes and multi-hot image-level labels (and
where those came from), per-class counts, the void fraction and the training mean pixel.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Sequence

from maskforge.data.prepare import prepare_dataset
from maskforge.erasing import mean_pixel
from stages._stage import parse_stage_args, run_stage


def main(argv: Sequence[str] | None = None) -> None:
    args, params = parse_stage_args(__spec__.name, __doc__, argv)
    dataset = params["dataset"]
    out = Path(args.prepared)
    shutil.rmtree(out, ignore_errors=True)   # generated files land here; the manifest comes last
    out.mkdir(parents=True)
    manifest = prepare_dataset(dataset["root"], train_split=dataset["train_split"], val_split=dataset["val_split"],
                               label_file=dataset["label_file"], mask_dir=dataset["mask_dir"],
                               synthetic=dataset["synthetic"], out_dir=str(out))
    manifest.stats["mean_pixel"] = mean_pixel(manifest.load_image(i) for i in manifest.ids("train")).tolist()
    manifest.write(out / "manifest.json")   # temp name + rename: present only when complete
    print(f"prepare: {manifest.format} dataset, {len(manifest.ids('train'))} train / "
          f"{len(manifest.ids('val'))} val ids, labels from {manifest.label_source}", file=sys.stderr)


if __name__ == "__main__":
    run_stage(main)
