"""Degenerate outputs a researcher must hear about: a mask store (pseudo labels or a model's
predictions) that paints one class on nearly every labelled pixel, or leaves (almost) no
background. No ground truth needed: only the store's own pixels are counted."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from maskforge.metrics import IGNORE
from maskforge.store import StoreReader

DOMINANT_SHARE = 0.95      # one class on at least this share of the labelled pixels
MIN_BACKGROUND_SHARE = 0.05  # background on less than this share: "everything foreground"

# The knob most likely behind a degenerate store, by the stage that wrote it.
LIKELY_KNOB = {
    "seeds": "cam.bg_threshold (lower it if everything is background, raise it if nothing is)",
    "crf": "crf.gt_prob and the input store's own knob (cam.bg_threshold for seeds, assemble.* for assemble_ae)",
    "assemble_ae": "assemble.bg_saliency and ae.erase_threshold",
    "ir_labels": "irn.fg_threshold / irn.bg_threshold",
    "refine_irn": "irn.infer.bg_power / bg_score / exp_times (and irn.train: a boundary net that learnt nothing)",
    "predict": "seg.train (more epochs, another lr), seg.labels (the store it learns from) or seg.infer.confidence",
}


def class_shares(store: StoreReader, num_classes: int, ids: Sequence[str] | None = None) -> np.ndarray:
    """Share of each class among the labelled (non-ignore) pixels of a mask store's images."""
    counts = np.zeros(num_classes, np.int64)
    for image_id in store.ids if ids is None else ids:
        mask = store[image_id]
        counts += np.bincount(mask[mask != IGNORE].ravel(), minlength=num_classes)[:num_classes]
    return counts / max(counts.sum(), 1)


def degenerate_warning(name: str, stage: str, shares: np.ndarray, classes: Sequence[str]) -> str | None:
    """A one-line warning naming the likely knob when `shares` (class_shares) is degenerate:
    one class on ≥ DOMINANT_SHARE of the labelled pixels, or background (class 0) on less than
    MIN_BACKGROUND_SHARE; None otherwise (and for a store with no labelled pixel)."""
    if not shares.sum():
        return None
    top = int(np.argmax(shares))
    knob = LIKELY_KNOB.get(stage, "the params of the stage that wrote it")
    if shares[top] >= DOMINANT_SHARE:
        return (f"{name}: {classes[top]} on {100 * shares[top]:.0f}% of the labelled pixels "
                f"(degenerate; likely knob: {knob})")
    if shares[0] < MIN_BACKGROUND_SHARE:
        return (f"{name}: background on only {100 * shares[0]:.1f}% of the labelled pixels, nearly everything "
                f"foreground (degenerate; likely knob: {knob})")
    return None


def store_warning(name: str, store: StoreReader) -> str | None:
    """degenerate_warning for a mask store written by a pipeline stage (GT and other kinds: None)."""
    stage = store.meta["stage"]
    if store.kind != "mask" or stage == "ground_truth":
        return None
    return degenerate_warning(name, stage, class_shares(store, len(store.classes)), store.classes)
