"""COCO 2014: <split>/*.jpg and annotations/instances_<split>.json, read with pycocotools.

Semantic masks are painted from the instance annotations and written as palette PNGs.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

from .manifest import DatasetError, ImageRecord, Manifest, split_stats
from .voc import write_index_png


def read_coco(root: str | os.PathLike, *, splits: dict[str, str], mask_out: str | os.PathLike) -> Manifest:
    """Build the Manifest of a COCO 2014 folder; `splits` maps roles ("train", "val") to split
    names ("train2014"). Classes: background + the categories sorted by id; labels: the categories
    annotated on each image; masks written to `mask_out`/<id>.png."""
    root = str(root)
    cocos = {role: _load(root, name) for role, name in splits.items()}
    classes = None
    images: dict[str, ImageRecord] = {}
    split_ids: dict[str, list[str]] = {}
    void_pixels: dict[str, tuple[int, int]] = {}
    Path(mask_out).mkdir(parents=True, exist_ok=True)
    for role, coco in cocos.items():
        names = ["background"] + [c["name"] for c in sorted(coco.loadCats(coco.getCatIds()), key=lambda c: c["id"])]
        if classes is not None and names != classes:
            raise DatasetError(f"{_ann_path(root, splits[role])}: categories differ from the other split's; "
                               "use annotation files of one COCO release")
        classes = names
        index = {cat_id: k + 1 for k, cat_id in enumerate(sorted(coco.getCatIds()))}
        split_ids[role] = []
        for info in sorted(coco.loadImgs(coco.getImgIds()), key=lambda i: i["file_name"]):
            image_id = Path(info["file_name"]).stem
            image = os.path.join(root, splits[role], info["file_name"])
            if not os.path.exists(image):
                raise DatasetError(f"{image}: image for id {image_id!r} missing; add it or use the matching "
                                   "annotation file")
            anns = coco.loadAnns(coco.getAnnIds(imgIds=info["id"]))
            mask = paint_mask(coco, anns, index, (info["height"], info["width"]))
            mask_path = os.path.join(str(mask_out), f"{image_id}.png")
            write_index_png(mask_path, mask)
            present = {index[a["category_id"]] for a in anns}
            images[image_id] = ImageRecord(image=image, mask=mask_path, height=info["height"], width=info["width"],
                                           labels=tuple(int(k in present) for k in range(1, len(classes))))
            void_pixels[image_id] = (int(np.count_nonzero(mask == 255)), mask.size)
            split_ids[role].append(image_id)
    stats = {role: {"split_file": os.path.relpath(_ann_path(root, splits[role]), root),
                    **split_stats(classes, ids, images, void_pixels)} for role, ids in split_ids.items()}
    return Manifest(root=root, format="coco", label_source="coco-annotations", classes=classes,
                    splits=split_ids, images=images, stats=stats)


def paint_mask(coco: COCO, anns: list[dict], index: dict[int, int], size: tuple[int, int]) -> np.ndarray:
    """uint8 H×W semantic mask: instance masks painted in annotation order, class index
    (`index`: category id -> class index) for ordinary instances and 255 for crowd regions."""
    mask = np.zeros(size, np.uint8)
    with warnings.catch_warnings():  # pycocotools 2.0.11 + numpy 2: DeprecationWarning on every decode
        warnings.simplefilter("ignore", DeprecationWarning)
        for ann in anns:
            mask[coco.annToMask(ann) > 0] = 255 if ann.get("iscrowd", 0) else index[ann["category_id"]]
    return mask


def _ann_path(root: str, split: str) -> str:
    return os.path.join(root, "annotations", f"instances_{split}.json")


def _load(root: str, split: str) -> COCO:
    path = _ann_path(root, split)
    if not os.path.exists(path):
        raise DatasetError(f"{path}: annotation file missing; set dataset.train_split/val_split to the COCO "
                           "split names (train2014, val2014)")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            return COCO(path)
    except (ValueError, KeyError, TypeError) as e:
        raise DatasetError(f"{path}: not a COCO instances file ({e}); re-download it") from None
