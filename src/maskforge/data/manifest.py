"""The dataset manifest: ids per split, image/mask paths, sizes and image-level labels.

Written once by the prepare stage; every later stage reads the dataset only through it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from maskforge.atomic import atomic_write_text

MANIFEST_VERSION = 2   # 2: dataset_sha256
_KEYS = ("manifest_version", "root", "format", "label_source", "dataset_sha256", "classes", "splits", "images", "stats")
_RECORD_KEYS = {"image", "mask", "height", "width", "label_ids"}


class DatasetError(ValueError):
    """A dataset or manifest that cannot be used as it is; the message names the file and the fix."""


@dataclass(frozen=True)
class ImageRecord:
    image: str
    mask: str | None
    height: int
    width: int
    labels: tuple[int, ...]  # multi-hot over the foreground classes classes[1:]


@dataclass
class Manifest:
    root: str
    format: str
    label_source: str
    classes: list[str]
    splits: dict[str, list[str]]
    images: dict[str, ImageRecord]
    stats: dict
    dataset_sha256: str = ""   # content hash of the dataset files (data/fingerprint.py); "" until prepare sets it
    # sha256 of the manifest file's bytes, set by read/write: the fingerprint every store records
    # and every reader checks (store.py), so no store is used with another dataset's manifest
    sha256: str = field(default="", compare=False)
    path: str = field(default="", compare=False)   # the file read or written

    def write(self, path: str | os.PathLike) -> None:
        """Deterministic JSON (same content, same bytes; one image per line), temp name + rename;
        sets `sha256`."""
        head = {
            "manifest_version": MANIFEST_VERSION,
            "root": self.root,
            "format": self.format,
            "label_source": self.label_source,
            "dataset_sha256": self.dataset_sha256,
            "classes": self.classes,
            "splits": self.splits,
            "stats": self.stats,
        }
        lines = [f"{json.dumps(k)}: {json.dumps(v, indent=1, sort_keys=True)}" for k, v in sorted(head.items())]
        records = [f" {json.dumps(i)}: {json.dumps(_record_json(self.images[i]), sort_keys=True)}"
                   for i in sorted(self.images)]
        lines.append('"images": {\n' + ",\n".join(records) + "\n}")
        text = "{\n" + ",\n".join(lines) + "\n}\n"
        atomic_write_text(path, text)
        self.sha256, self.path = hashlib.sha256(text.encode()).hexdigest(), str(path)

    @classmethod
    def read(cls, path: str | os.PathLike) -> Manifest:
        """Load a manifest written by `write`; DatasetError naming the file on any defect."""
        def fail(why: str) -> DatasetError:
            return DatasetError(f"{path}: {why}; re-run the prepare stage")

        try:
            data = Path(path).read_bytes()
            doc = json.loads(data)
        except FileNotFoundError:
            raise fail("manifest not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise fail(f"not a readable manifest ({e})") from None
        if not isinstance(doc, dict) or sorted(doc) != sorted(_KEYS):
            got = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
            raise fail(f"expected keys {sorted(_KEYS)}, got {got}")
        if doc["manifest_version"] != MANIFEST_VERSION:
            raise fail(f"manifest_version {doc['manifest_version']!r}, this code reads {MANIFEST_VERSION}")
        classes = doc["classes"]
        if not (isinstance(classes, list) and len(classes) >= 2 and all(isinstance(c, str) for c in classes)):
            raise fail("'classes' must list at least background and one class")
        try:
            images = {i: _record_from_json(r, len(classes)) for i, r in doc["images"].items()}
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise fail(f"bad image record ({e})") from None
        splits = doc["splits"]
        if not isinstance(splits, dict) or not all(isinstance(v, list) for v in splits.values()):
            raise fail("'splits' must map split names to id lists")
        missing = [i for ids in splits.values() for i in ids if i not in images]
        if missing:
            raise fail(f"split ids without an image record, e.g. {missing[0]!r}")
        return cls(root=doc["root"], format=doc["format"], label_source=doc["label_source"], classes=classes,
                   splits=splits, images=images, stats=doc["stats"], dataset_sha256=doc["dataset_sha256"],
                   sha256=hashlib.sha256(data).hexdigest(), path=str(path))

    def moved(self, old: str, new: str) -> Manifest:
        """The manifest with the paths inside folder `old` pointing inside `new` instead (prepare
        builds in a temporary folder, then renames it)."""
        def move(path: str | None) -> str | None:
            inside = path is not None and (path == old or path.startswith(old + os.sep))
            return new + path[len(old):] if inside else path
        images = {i: dataclasses.replace(r, image=move(r.image), mask=move(r.mask)) for i, r in self.images.items()}
        return dataclasses.replace(self, root=move(self.root), images=images)

    def ids(self, split: str) -> list[str]:
        """The ids of `split` in split-file order."""
        if split not in self.splits:
            raise DatasetError(f"unknown split {split!r}; the manifest has {sorted(self.splits)}")
        return list(self.splits[split])

    def record(self, image_id: str) -> ImageRecord:
        """The record of one id; DatasetError if the manifest does not list it."""
        try:
            return self.images[image_id]
        except KeyError:
            raise DatasetError(f"image id {image_id!r} is not in the manifest of {self.root}; "
                               "re-run the prepare stage") from None

    def label_ids(self, image_id: str) -> np.ndarray:
        """int64 indices (1..K-1) of the foreground classes labelled present."""
        return np.flatnonzero(np.asarray(self.record(image_id).labels)).astype(np.int64) + 1

    def multi_hot(self, image_id: str) -> np.ndarray:
        """float32 multi-hot of length K-1."""
        return np.asarray(self.record(image_id).labels, dtype=np.float32)

    def load_image(self, image_id: str) -> np.ndarray:
        """uint8 H×W×3 RGB."""
        rec = self.record(image_id)
        image = np.asarray(open_image(rec.image, decode=True).convert("RGB"))
        _check_size(rec.image, image, rec)
        return image

    def load_mask(self, image_id: str) -> np.ndarray | None:
        """uint8 H×W class indices (255 = void), or None when the dataset has no GT for the id."""
        rec = self.record(image_id)
        if rec.mask is None:
            return None
        mask = read_index_png(rec.mask)
        _check_size(rec.mask, mask, rec)
        return mask


def read_index_png(path: str | os.PathLike) -> np.ndarray:
    """A palette ('P') or grey ('L') PNG as a uint8 index map (VOC masks: the palette is ignored)."""
    img = open_image(path, decode=True)
    if img.mode not in ("P", "L"):
        raise DatasetError(f"{path}: mask has mode {img.mode}, expected a palette or grey index PNG "
                           "(convert colour or 16-bit masks to 8-bit class indices)")
    return np.asarray(img, dtype=np.uint8)


def open_image(path: str | os.PathLike, decode: bool = False) -> Image.Image:
    """PIL-open a file (and decode it when `decode`), a missing or corrupt file raising a DatasetError."""
    try:
        img = Image.open(path)
        if decode:
            img.load()
        return img
    except FileNotFoundError:
        raise DatasetError(f"{path}: file missing (dataset moved since prepare?); "
                           "restore it or re-run the prepare stage") from None
    except OSError as e:
        raise DatasetError(f"{path}: unreadable image ({e}); replace the file") from None


# Image modes PIL converts to RGB faithfully; the manifest counts the images that needed it.
RGB_CONVERTIBLE = ("1", "L", "LA", "P", "PA", "RGBA", "RGBX", "CMYK", "YCbCr")


def rgb_conversion(path: str | os.PathLike, mode: str) -> str | None:
    """The mode an image is converted to RGB from when read (None: it is RGB); DatasetError for
    modes PIL cannot convert faithfully (16-bit or float images)."""
    if mode == "RGB":
        return None
    if mode not in RGB_CONVERTIBLE:
        raise DatasetError(f"{path}: image mode {mode} (16-bit or float) cannot be read as 8-bit RGB; "
                           "convert the image to 8-bit RGB")
    return mode


def read_text_file(path: str | os.PathLike, what: str) -> str:
    """A dataset text file as UTF-8 (a BOM is dropped); DatasetError naming it if unreadable."""
    try:
        return Path(path).read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: {what} is not UTF-8 ({e.reason} at byte {e.start}); save it as UTF-8 "
                           "(and rename files whose names are not)") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read the {what} ({e.strerror}); fix its permissions or restore it") from None


def check_image_id(path: str | os.PathLike, image_id: str) -> None:
    """An id names an HDF5 dataset and files (<id>.png): non-empty, no '/' or '\\', not '.'/'..',
    no control characters. DatasetError naming the file that lists it."""
    bad = (not image_id or image_id in (".", "..") or any(c in image_id for c in "/\\")
           or any(ord(c) < 32 or ord(c) == 127 for c in image_id))
    if bad:
        raise DatasetError(f"{path}: id {image_id!r} is not a plain file name (no '/', '\\', control "
                           "characters, '.' or '..'); rename the image and fix the list")


def split_stats(classes: list[str], ids: list[str], images: dict[str, ImageRecord],
                void_pixels: dict[str, tuple[int, int]]) -> dict:
    """Per-split summary: image count, images per class, void fraction of GT pixels
    (`void_pixels`: id -> (void, total) for ids with a mask), images without labels."""
    counts = np.sum([images[i].labels for i in ids], axis=0, dtype=np.int64) if ids else np.zeros(len(classes) - 1)
    with_mask = [void_pixels[i] for i in ids if i in void_pixels]
    total = sum(t for _, t in with_mask)
    return {
        "n_images": len(ids),
        "n_masks": len(with_mask),
        "class_counts": {name: int(n) for name, n in zip(classes[1:], counts)},
        "void_fraction": round(sum(v for v, _ in with_mask) / total, 6) if total else None,
        "images_without_labels": sum(1 for i in ids if not any(images[i].labels)),
    }


def _record_json(rec: ImageRecord) -> dict:
    return {"image": rec.image, "mask": rec.mask, "height": rec.height, "width": rec.width,
            "label_ids": [int(k) + 1 for k in np.flatnonzero(rec.labels)]}


def _record_from_json(r: dict, num_classes: int) -> ImageRecord:
    if set(r) != _RECORD_KEYS:
        raise ValueError(f"keys {sorted(r)}, expected {sorted(_RECORD_KEYS)}")
    labels = [0] * (num_classes - 1)
    for k in r["label_ids"]:
        if not (isinstance(k, int) and 1 <= k < num_classes):
            raise ValueError(f"label id {k!r} outside 1..{num_classes - 1}")
        labels[k - 1] = 1
    if not isinstance(r["image"], str) or not (r["mask"] is None or isinstance(r["mask"], str)):
        raise ValueError("image/mask must be paths")
    return ImageRecord(image=r["image"], mask=r["mask"], height=int(r["height"]), width=int(r["width"]),
                       labels=tuple(labels))


def _check_size(path: str, array: np.ndarray, rec: ImageRecord) -> None:
    if array.shape[:2] != (rec.height, rec.width):
        raise DatasetError(f"{path}: size {array.shape[1]}x{array.shape[0]}, manifest says "
                           f"{rec.width}x{rec.height}; re-run the prepare stage")
