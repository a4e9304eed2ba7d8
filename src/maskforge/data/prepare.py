"""The prepare stage's core: pick the reader for `dataset.root` (or generate the synthetic set)."""

from __future__ import annotations

import dataclasses
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
    layout; with annotations/: COCO 2014, masks written to `out_dir`/coco_masks. Train images
    without any label are left out of the train split (see `skip_unlabelled`)."""
    splits = {"train": train_split, "val": val_split}
    if root == "synthetic":
        path = os.path.join(out_dir, "synthetic")
        generate_synthetic(path, **synthetic)
        manifest = read_voc(path, splits={"train": "train", "val": "val"}, label_file=None, format="synthetic")
    elif (Path(root) / "JPEGImages").is_dir():
        manifest = read_voc(root, splits=splits, label_file=label_file, mask_dir=mask_dir)
    elif (Path(root) / "annotations").is_dir():
        manifest = read_coco(root, splits=splits, mask_out=os.path.join(out_dir, "coco_masks"))
    else:
        raise DatasetError(f"{root}: not a VOC-layout folder (no JPEGImages/) nor COCO (no annotations/); set "
                           "dataset.root to such a folder or to \"synthetic\"")
    return skip_unlabelled(manifest)


def skip_unlabelled(manifest: Manifest) -> Manifest:
    """The policy for train images with no image-level label: a WSSS classifier learns nothing of
    them and they have no CAM to refine, so they leave the train split; their ids are kept in
    `stats["train"]["skipped_without_labels"]` (the split's other stats describe the split file).
    A train split with no labelled image at all is a DatasetError."""
    train = manifest.ids("train")
    skipped = [i for i in train if not any(manifest.images[i].labels)]
    if len(skipped) == len(train):
        raise DatasetError(f"{manifest.root}: none of the {len(train)} train images has an image-level label; "
                           f"check dataset.label_file ({manifest.label_source}) and classes.json")
    stats = {**manifest.stats, "train": {**manifest.stats["train"], "skipped_without_labels": skipped}}
    splits = {**manifest.splits, "train": [i for i in train if i not in set(skipped)]}
    return dataclasses.replace(manifest, splits=splits, stats=stats)
