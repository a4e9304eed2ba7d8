"""Scoring stores against GT: mIoU of masks, threshold sweeps of CAMs, region recall.

Every IoU here is in percent. Only ids with a GT mask count. Pseudo labels are scored on the train
split where they are generated (the WSSS convention), predictions on val; each summary names its split.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from maskforge.assemble import contested_pixels, object_labels
from maskforge.seed_masks import cam_argmax
from maskforge.data.manifest import Manifest
from maskforge.metrics import IGNORE, ConfusionMatrix, ForegroundRecallPrecision
from maskforge.store import StoreReader


def _scored_ids(store: StoreReader, manifest: Manifest) -> list[str]:
    return [i for i in store.ids if i in manifest.images and manifest.images[i].mask is not None]


def split_of(ids: Sequence[str], manifest: Manifest) -> str:
    """The manifest split holding all of `ids` ("train" first; "mixed" if none does)."""
    chosen = set(ids)
    for split in sorted(manifest.splits, key=lambda s: s != "train"):
        if chosen <= set(manifest.splits[split]):
            return split
    return "mixed"


def _summary(store: StoreReader, matrix: ConfusionMatrix, classes: list[str], ids: list[str],
             manifest: Manifest) -> dict[str, Any]:
    n_images = len(ids)
    scores = matrix.as_dict(classes)
    percent = {n: (None if v["iou"] is None else 100 * v["iou"]) for n, v in scores["per_class"].items()}
    return {
        "store": store.path.name,
        "split": split_of(ids, manifest),
        "images": n_images,
        "miou": scores["miou"],
        "per_class": percent,
        "pixel_accuracy": scores["pixel_accuracy"],
        "labelled_fraction": scores["labelled_fraction"],
        "precision": {n: v["precision"] for n, v in scores["per_class"].items()},
        "recall": {n: v["recall"] for n, v in scores["per_class"].items()},
    }


def evaluate_masks(store: StoreReader, manifest: Manifest) -> dict[str, Any]:
    """mIoU, per-class IoU, precision/recall and labelled fraction of a mask store."""
    ids = _scored_ids(store, manifest)
    matrix = ConfusionMatrix(len(manifest.classes))
    for image_id in ids:
        matrix.update(store[image_id], manifest.load_mask(image_id))
    return _summary(store, matrix, manifest.classes, ids, manifest)


def sweep_cam_thresholds(store: StoreReader, manifest: Manifest,
                         thresholds: Sequence[float]) -> list[tuple[float, ConfusionMatrix]]:
    """Seeds at every background threshold τ from one pass over the cached CAMs (no inference)."""
    matrices = [(t, ConfusionMatrix(len(manifest.classes))) for t in thresholds]
    for image_id in _scored_ids(store, manifest):
        label, score = cam_argmax(store[image_id], store.label_classes(image_id))
        gt = manifest.load_mask(image_id)
        for threshold, matrix in matrices:
            matrix.update(np.where(score > threshold, label, 0).astype(np.uint8), gt)
    return matrices


def evaluate_cams(store: StoreReader, manifest: Manifest, thresholds: Sequence[float]) -> tuple[dict[str, Any], list[dict]]:
    """Score a CAM store at the best swept τ; also return the sweep rows (threshold, miou)."""
    matrices = sweep_cam_thresholds(store, manifest, thresholds)
    rows = [{"threshold": t, "miou": m.miou()} for t, m in matrices]
    best_threshold, best = max(matrices, key=lambda tm: tm[1].miou())
    summary = _summary(store, best, manifest.classes, _scored_ids(store, manifest), manifest)
    summary["bg_threshold"] = best_threshold
    return summary, rows


def regions_to_mask(regions: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """A label map from K×H×W regions: one claiming class → it, none → background, several → 255."""
    return np.where(contested_pixels(regions), IGNORE, object_labels(regions, classes)).astype(np.uint8)


def evaluate_regions(store: StoreReader, manifest: Manifest) -> dict[str, Any]:
    """Mined object regions F: class-aware foreground recall/precision (region of c vs GT c),
    plus the mIoU of the regions read as a mask (unclaimed → background, contested → ignore)."""
    ids = _scored_ids(store, manifest)
    matrix = ConfusionMatrix(len(manifest.classes))
    recall_precision = ForegroundRecallPrecision()
    for image_id in ids:
        regions, classes, gt = store[image_id], store.label_classes(image_id), manifest.load_mask(image_id)
        valid = gt != IGNORE
        for k, c in enumerate(classes):
            recall_precision.update(regions[k], gt == c, valid)
        missed_classes = set(np.unique(gt[valid]).tolist()) - set(classes.tolist()) - {0}
        for c in missed_classes:      # GT objects of unlabelled classes still count as missed foreground
            recall_precision.update(np.zeros_like(valid), gt == c, valid)
        matrix.update(regions_to_mask(regions, classes), gt)
    summary = _summary(store, matrix, manifest.classes, ids, manifest)
    summary["fg_recall"] = _percent_or_none(recall_precision.recall())
    summary["fg_precision"] = _percent_or_none(recall_precision.precision())
    return summary


def _percent_or_none(fraction: float) -> float | None:
    """A fraction as percent for JSON; None where it is undefined (nan), never an invalid NaN."""
    return None if np.isnan(fraction) else 100 * fraction


def evaluate_saliency(store: StoreReader, manifest: Manifest, threshold: float) -> dict[str, Any]:
    """A saliency store as a foreground/background mask (foreground = saliency >= threshold):
    background/foreground IoU, their mean, and how much GT background falls below the threshold."""
    ids = _scored_ids(store, manifest)
    matrix = ConfusionMatrix(2)
    for image_id in ids:
        gt = manifest.load_mask(image_id)
        binary_gt = np.where(gt == IGNORE, IGNORE, gt > 0).astype(np.uint8)
        matrix.update((store[image_id] >= threshold).astype(np.uint8), binary_gt)
    summary = _summary(store, matrix, ["background", "foreground"], ids, manifest)
    summary["threshold"] = threshold
    return summary
