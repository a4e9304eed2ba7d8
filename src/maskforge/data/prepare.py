"""The prepare stage's core: pick the reader for `dataset.root` (or generate the synthetic set)."""

from __future__ import annotations

import os
from pathlib import Path

from .coco import read_coco
from .manifest import DatasetError, Manifest
from .synthetic import generate_synthetic
from .voc import read_voc


def prepare_dataset(root: str, *, train_split: str, val_split: str, label_file: str | None, mask_dir: str,
                    synthetic: dict, out_dir: str) -> Manifest:
    """Validate the dataset at `root` and return its Manifest (the caller writes it).
    "synthetic": generate into `out_dir`/synthetic and read that; a folder with JPEGImages/: VOC
    layout; with annotations/: COCO 2014, masks written to `out_dir`/coco_masks."""
    splits = {"train": train_split, "val": val_split}
    if root == "synthetic":
        path = os.path.join(out_dir, "synthetic")
        generate_synthetic(path, **synthetic)
        return read_voc(path, splits={"train": "train", "val": "val"}, label_file=None, format="synthetic")
    if (Path(root) / "JPEGImages").is_dir():
        return read_voc(root, splits=splits, label_file=label_file, mask_dir=mask_dir)
    if (Path(root) / "annotations").is_dir():
        return read_coco(root, splits=splits, mask_out=os.path.join(out_dir, "coco_masks"))
    raise DatasetError(f"{root}: not a VOC-layout folder (no JPEGImages/) nor COCO (no annotations/); set "
                       "dataset.root to such a folder or to \"synthetic\"")
