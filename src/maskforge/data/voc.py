"""VOC-layout datasets: JPEGImages/, <mask_dir>/, ImageSets/Segmentation/<split>.txt.

Reads PASCAL VOC 2012 (+SBD), MSRC in VOC layout and the synthetic set into a Manifest.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from .manifest import (DatasetError, ImageRecord, Manifest, check_image_id, open_image, read_index_png, read_text_file,
                       rgb_conversion, split_stats)

VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]


def voc_palette() -> list[int]:
    """The PASCAL VOC colour map (256 RGB triples, flattened), as PIL's putpalette wants it."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def write_index_png(path: str | os.PathLike, mask: np.ndarray) -> None:
    """Write a uint8 class-index map as a VOC palette PNG (temp name, then rename)."""
    path = Path(path)
    img = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="P")
    img.putpalette(voc_palette())
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    img.save(tmp, optimize=False)
    os.replace(tmp, path)


def read_classes(root: str | os.PathLike) -> list[str]:
    """Class names from root/classes.json ({"classes": [...]}, index 0 background), else VOC's 21."""
    path = Path(root) / "classes.json"
    if not path.exists():
        return list(VOC_CLASSES)
    try:
        classes = json.loads(read_text_file(path, "class list"))["classes"]
    except (ValueError, KeyError, TypeError) as e:
        raise DatasetError(f"{path}: expected {{\"classes\": [\"background\", ...]}} ({e}); fix the file") from None
    if not (isinstance(classes, list) and len(classes) >= 2 and all(isinstance(c, str) for c in classes)
            and len(set(classes)) == len(classes)):
        raise DatasetError(f"{path}: 'classes' must list distinct names, background first; fix the file")
    return classes


def read_split(root: str | os.PathLike, name: str) -> list[str]:
    """Ids of ImageSets/Segmentation/<name>.txt in file order (first token of each line)."""
    path = Path(root) / "ImageSets" / "Segmentation" / f"{name}.txt"
    if not path.exists():
        raise DatasetError(f"{path}: split file missing; set dataset.train_split/val_split to a file "
                           "in ImageSets/Segmentation/")
    ids = [line.split()[0] for line in read_text_file(path, "split file").splitlines() if line.strip()]
    for image_id in ids:
        check_image_id(path, image_id)
    if not ids:
        raise DatasetError(f"{path}: split file lists no ids; fill it or pick another split")
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DatasetError(f"{path}: id {dup!r} is listed twice; remove the duplicate")
    return ids


def read_label_file(path: str | os.PathLike, classes: list[str]) -> dict[str, tuple[int, ...]]:
    """Image-level labels: `.json` {id: [class names]} or IRN/PSA `cls_labels.npy`
    (pickled {id: K-1 multi-hot}, ids as str or int 2007000032 for "2007_000032")."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: label file missing; set dataset.label_file (relative to the root) "
                           "or null to derive labels from the masks")
    if path.suffix == ".json":
        return _labels_from_json(path, classes)
    if path.suffix == ".npy":
        return _labels_from_npy(path, classes)
    raise DatasetError(f"{path}: unknown label file type; use a .json {{id: [names]}} or IRN's cls_labels.npy")


def read_voc(root: str | os.PathLike, *, splits: dict[str, str], label_file: str | None,
             mask_dir: str = "SegmentationClass", format: str = "voc") -> Manifest:
    """Validate a VOC-layout folder and build its Manifest; `splits` maps roles ("train", "val")
    to split file names. Labels: `label_file`, else root/cls_labels.json, else the masks."""
    root = str(root)
    classes = read_classes(root)
    split_ids = {role: read_split(root, name) for role, name in splits.items()}
    if label_file is not None:
        label_path, label_source = Path(root) / label_file, Path(label_file).name
    elif (Path(root) / "cls_labels.json").exists():
        label_path, label_source = Path(root) / "cls_labels.json", "cls_labels.json"
    else:
        label_path, label_source = None, "masks"
    file_labels = read_label_file(label_path, classes) if label_path is not None else None

    images: dict[str, ImageRecord] = {}
    void_pixels: dict[str, tuple[int, int]] = {}
    converted: dict[str, int] = {}
    for image_id in dict.fromkeys(i for ids in split_ids.values() for i in ids):
        image = _image_path(root, image_id)
        with open_image(image) as im:
            width, height = im.size
            mode = rgb_conversion(image, im.mode)
        if mode is not None:
            converted[mode] = converted.get(mode, 0) + 1
        mask_path = os.path.join(root, mask_dir, f"{image_id}.png")
        mask = None
        if os.path.exists(mask_path):
            mask = read_index_png(mask_path)
            _check_mask(mask_path, mask, (height, width), len(classes))
            void_pixels[image_id] = (int(np.count_nonzero(mask == 255)), mask.size)
        elif file_labels is None:
            raise DatasetError(f"{mask_path}: mask missing and there is no label file to take {image_id!r}'s "
                               "labels from; add the mask or set dataset.label_file")
        if file_labels is None:
            present = np.unique(mask)
            labels = tuple(int(k in present) for k in range(1, len(classes)))
        elif image_id in file_labels:
            labels = file_labels[image_id]
        else:
            raise DatasetError(f"{label_path}: no labels for id {image_id!r}; add it to the label file")
        images[image_id] = ImageRecord(image=image, mask=mask_path if mask is not None else None,
                                       height=height, width=width, labels=labels)

    stats = {role: {"split_file": f"ImageSets/Segmentation/{splits[role]}.txt",
                    **split_stats(classes, ids, images, void_pixels)}
             for role, ids in split_ids.items()}
    stats["converted_to_rgb"] = dict(sorted(converted.items()))
    return Manifest(root=root, format=format, label_source=label_source, classes=classes,
                    splits=split_ids, images=images, stats=stats)


def _image_path(root: str, image_id: str) -> str:
    for ext in (".jpg", ".png"):
        path = os.path.join(root, "JPEGImages", image_id + ext)
        if os.path.exists(path):
            return path
        if os.path.lexists(path):
            raise DatasetError(f"{path}: a symlink to nothing (broken, or a loop); point it at the image or "
                               "remove the id from the split file")
    raise DatasetError(f"{os.path.join(root, 'JPEGImages', image_id)}.jpg: image for id {image_id!r} missing "
                       "(.jpg or .png); add it or remove the id from the split file")


def _check_mask(path: str, mask: np.ndarray, size: tuple[int, int], num_classes: int) -> None:
    if mask.shape != size:
        raise DatasetError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
                           f"{size[1]}x{size[0]}; fix the mask")
    bad = np.setdiff1d(np.unique(mask), [*range(num_classes), 255])
    if bad.size:
        raise DatasetError(f"{path}: mask values {bad.tolist()} are not class indices 0..{num_classes - 1} "
                           "or 255; fix the mask or classes.json")


def _labels_from_json(path: Path, classes: list[str]) -> dict[str, tuple[int, ...]]:
    try:
        doc = json.loads(read_text_file(path, "label file"))
    except ValueError as e:
        raise DatasetError(f"{path}: not valid JSON ({e}); fix the label file") from None
    if not isinstance(doc, dict):
        raise DatasetError(f"{path}: expected {{id: [class names]}}; fix the label file")
    index = {name: k for k, name in enumerate(classes)}
    labels = {}
    for image_id, names in doc.items():
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise DatasetError(f"{path}: labels of {image_id!r} must be a list of class names; fix the label file")
        unknown = [n for n in names if index.get(n, 0) == 0]
        if unknown:
            raise DatasetError(f"{path}: {image_id!r} has label {unknown[0]!r}, not a foreground class of "
                               f"{classes[1:]}; fix the label file or classes.json")
        labels[image_id] = tuple(int(name in names) for name in classes[1:])
    return labels


def _labels_from_npy(path: Path, classes: list[str]) -> dict[str, tuple[int, ...]]:
    try:
        doc = np.load(path, allow_pickle=True).item()
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: not a pickled {{id: multi-hot}} dict ({e}); use IRN's cls_labels.npy") from None
    if not isinstance(doc, dict):
        raise DatasetError(f"{path}: holds a {type(doc).__name__}, not a {{id: multi-hot}} dict; "
                           "use IRN's cls_labels.npy")
    labels = {}
    for key, vec in doc.items():
        vec = np.asarray(vec).reshape(-1)
        if vec.size != len(classes) - 1:
            raise DatasetError(f"{path}: labels of {key!r} have length {vec.size}, expected {len(classes) - 1} "
                               "(foreground classes); use the label file that matches classes.json")
        image_id = key if isinstance(key, str) else f"{str(key)[:4]}_{str(key)[4:]}"
        labels[image_id] = tuple(int(v > 0) for v in vec)
    return labels
