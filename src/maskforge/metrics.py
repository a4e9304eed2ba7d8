"""Confusion-matrix metrics: mIoU, pixel accuracy, precision/recall of pseudo labels.

Conventions (every number in metrics/*.json follows them):
- GT pixels equal to `ignore_index` (VOC void, 255) are skipped everywhere.
- A predicted/pseudo-label pixel equal to 255 ("ignore" in a mask store) is *unlabelled*: it is
  counted in an extra column, so it is a miss for its GT class (lowers that class's recall and
  IoU) and never a false positive of another class. It lowers `labelled_fraction`.
"""

from __future__ import annotations

import numpy as np

IGNORE = 255  # the mask-store value for "no label"


def iou_from_confusion(mat: np.ndarray) -> np.ndarray:
    """Per-class IoU from counts mat[i, j] (row = one labelling, column = the other; rows and
    columns share class indices, extra rows/columns count as neither). nan where a class is
    absent from both."""
    k = min(mat.shape)
    inter = np.diag(mat)[:k].astype(np.float64)
    union = mat[:k].sum(axis=1) + mat[:, :k].sum(axis=0) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(num, np.float64) / den


class ConfusionMatrix:
    """Pixel counts `mat[gt, pred]` accumulated over images (torchvision reference style);
    `mat` is K×(K+1), the last column counting pseudo-label-ignored (255) pixels."""

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.mat = np.zeros((num_classes, num_classes + 1), np.int64)

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one image; `pred` holds class indices or 255, `gt` class indices or ignore_index."""
        if pred.shape != gt.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from GT shape {gt.shape}")
        k = self.num_classes
        valid = gt != self.ignore_index
        g = gt[valid].astype(np.int64)
        p = pred[valid].astype(np.int64)
        if g.size and (g.min() < 0 or g.max() >= k):
            raise ValueError(f"GT holds class {g.max()} outside 0..{k - 1} (void must be {self.ignore_index})")
        if ((p < 0) | ((p >= k) & (p != IGNORE))).any():
            raise ValueError(f"prediction holds a value outside 0..{k - 1} and {IGNORE}")
        p[p == IGNORE] = k
        self.mat += np.bincount(g * (k + 1) + p, minlength=k * (k + 1)).reshape(k, k + 1)

    def iou(self) -> np.ndarray:
        """Per-class IoU (fraction); nan for classes absent from both GT and prediction."""
        return iou_from_confusion(self.mat)

    def miou(self) -> float:
        """Mean IoU over classes present in GT or prediction, in percent."""
        iou = self.iou()
        return float(100 * np.nanmean(iou)) if not np.isnan(iou).all() else float("nan")

    def pixel_accuracy(self) -> float:
        """Correct pixels / non-void GT pixels, in percent (unlabelled pixels count as wrong)."""
        return float(100 * _ratio(np.trace(self.mat[:, : self.num_classes]), self.mat.sum()))

    def precision(self) -> np.ndarray:
        """Per class: correct pixels of c / pixels labelled c (over non-void GT); nan if none labelled c."""
        return _ratio(np.diag(self.mat), self.mat[:, : self.num_classes].sum(axis=0))

    def recall(self) -> np.ndarray:
        """Per class: correct pixels of c / GT pixels of c; nan if c is absent from GT."""
        return _ratio(np.diag(self.mat), self.mat.sum(axis=1))

    def labelled_fraction(self) -> float:
        """Fraction of non-void GT pixels the prediction does not ignore."""
        return float(1 - _ratio(self.mat[:, -1].sum(), self.mat.sum()))

    def as_dict(self, class_names: list[str]) -> dict:
        """JSON-ready summary (nan → None) for metrics/*.json."""
        per_class = zip(class_names, self.iou(), self.precision(), self.recall(), strict=True)
        return _json_safe({
            "miou": self.miou(),
            "pixel_accuracy": self.pixel_accuracy(),
            "labelled_fraction": self.labelled_fraction(),
            "per_class": {name: {"iou": i, "precision": p, "recall": r} for name, i, p, r in per_class},
        })


class ForegroundRecallPrecision:
    """Foreground recall/precision of mined regions (bool H×W) against GT foreground, over images."""

    def __init__(self) -> None:
        self.tp = self.fp = self.fn = 0

    def update(self, region: np.ndarray, gt_fg: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Add one image; `valid` (bool H×W) drops void GT pixels."""
        if region.shape != gt_fg.shape:
            raise ValueError(f"region shape {region.shape} differs from GT shape {gt_fg.shape}")
        keep = np.ones(region.shape, bool) if valid is None else valid.astype(bool)
        r, g = region.astype(bool) & keep, gt_fg.astype(bool) & keep
        self.tp += int(np.count_nonzero(r & g))
        self.fp += int(np.count_nonzero(r & ~g))
        self.fn += int(np.count_nonzero(~r & g))

    def recall(self) -> float:
        """Mined GT-foreground pixels / GT-foreground pixels (nan without foreground)."""
        return float(_ratio(self.tp, self.tp + self.fn))

    def precision(self) -> float:
        """Mined pixels that are GT foreground / mined pixels (nan if nothing mined)."""
        return float(_ratio(self.tp, self.tp + self.fp))


def _json_safe(value):
    """Floats as Python floats, nan as None, recursively."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    f = float(value)
    return None if np.isnan(f) else f
