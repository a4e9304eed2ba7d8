"""Dense-CRF refinement of pseudo labels (Krähenbühl & Koltun, NeurIPS 2011).

A fully connected CRF over the pixels of one image: a unary per pixel and label, plus a Gaussian
(smoothness) kernel and a bilateral (appearance: position + RGB) kernel between every pair of
pixels, solved by mean-field inference on the permutohedral lattice. The solver is the original
C++ code through `pydensecrf2` (imported as ``pydensecrf``); this module builds the unaries and
maps the result back to class ids. Defaults are IRN's (Ahn et al., CVPR 2019): Gaussian sxy 3,
compat 3; bilateral sxy 50, srgb 5, compat 10; 10 iterations.

Two unaries:
- `crf_from_labels`: from a label map (seeds, assembled masks). A labelled pixel has probability
  `gt_prob` for its label and (1 − gt_prob)/(n − 1) for each other label; a 255 pixel is unsure
  (uniform 1/n). Every output pixel is labelled.
- `crf_from_scores`: from non-negative per-class scores (e.g. [background score, normalised
  CAMs]), normalised per pixel to probabilities; unary −log p.

Many images are refined in worker processes with `maskforge.parallel.map_into_store`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from pydensecrf import densecrf

from maskforge.config import ConfigError

__all__ = ["CRFParams", "crf_from_labels", "crf_from_scores"]

UNSURE = 255      # label value with no information: uniform unary
SCORE_EPS = 1e-5  # probability floor before −log, so a zero score is a large finite energy



@dataclass(frozen=True)
class CRFParams:
    """Dense-CRF settings (params.yaml `crf`, IRN's values by default)."""

    iterations: int = 10          # mean-field iterations
    gauss_sxy: float = 3          # Gaussian kernel: spatial sigma (pixels)
    gauss_compat: float = 3       # Gaussian kernel: weight (Potts compatibility)
    bilateral_sxy: float = 50     # bilateral kernel: spatial sigma (pixels)
    bilateral_srgb: float = 5     # bilateral kernel: colour sigma (0..255 RGB units)
    bilateral_compat: float = 10  # bilateral kernel: weight
    gt_prob: float = 0.7          # probability of a labelled pixel's label in `crf_from_labels`

    def __post_init__(self) -> None:
        def number(name: str) -> float:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                raise ConfigError(f"crf.{name} must be a finite number, got {value!r}")
            return value

        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) or self.iterations < 1:
            raise ConfigError(f"crf.iterations must be an integer >= 1, got {self.iterations!r}")
        for name in ("gauss_sxy", "bilateral_sxy", "bilateral_srgb"):
            if number(name) <= 0:
                raise ConfigError(f"crf.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("gauss_compat", "bilateral_compat"):
            if number(name) < 0:
                raise ConfigError(f"crf.{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 < number("gt_prob") < 1:
            raise ConfigError(f"crf.gt_prob must be in (0, 1), got {self.gt_prob!r}")

    @classmethod
    def from_params(cls, section: Mapping[str, Any]) -> CRFParams:
        """From params.yaml's `crf` section: exactly this class's fields, plus `workers` (a speed
        setting for `map_in_pool`, ignored here). A missing or unknown key raises ConfigError."""
        names = [f.name for f in fields(cls)]
        if not isinstance(section, Mapping):
            raise ConfigError(f"crf params must be a mapping, got {type(section).__name__}")
        unknown = sorted(set(section) - set(names) - {"workers"})
        missing = [n for n in names if n not in section]
        if unknown or missing:
            raise ConfigError(f"crf params: unknown keys {unknown}, missing keys {missing}; "
                              f"expected exactly {names} (+ workers)")
        return cls(**{n: section[n] for n in names})


def crf_from_labels(image: np.ndarray, labels: np.ndarray, classes: Sequence[int], params: CRFParams) -> np.ndarray:
    """Refine a label map with a dense CRF.

    `image` uint8 H×W×3 RGB; `labels` uint8 H×W with class ids and 255 = unsure; `classes` the
    ids that may appear (background 0 plus the image's labelled classes). Unary over
    n = len(classes) labels: a labelled pixel −log gt_prob for its label, −log((1 − gt_prob)/(n − 1))
    for the others; an unsure pixel −log(1/n) for all. Returns uint8 H×W class ids, every pixel
    labelled. A label id not in `classes` raises ValueError; with a single class the result is
    that class everywhere (no CRF run)."""
    image = _check_image(image)
    classes = _check_classes(classes)
    labels = np.asarray(labels)
    if labels.shape != image.shape[:2] or labels.dtype != np.uint8:
        raise ValueError(f"labels must be uint8 H×W matching the image {image.shape[:2]}, "
                         f"got {labels.dtype} {labels.shape}")
    lookup = np.full(256, -1, np.int64)              # class id -> label index; 255 -> n (unsure)
    lookup[list(classes)] = np.arange(len(classes))
    lookup[UNSURE] = len(classes)
    index = lookup[labels]
    if (index < 0).any():
        stray = sorted(set(np.unique(labels[index < 0]).tolist()))
        raise ValueError(f"labels hold class ids {stray} that are not in the image's classes {list(classes)} "
                         f"(nor {UNSURE} = unsure); the mask and the image-level labels disagree")
    n = len(classes)
    if n == 1:
        return np.full(labels.shape, classes[0], np.uint8)
    on, off, unsure = -np.log(params.gt_prob), -np.log((1 - params.gt_prob) / (n - 1)), -np.log(1 / n)
    energy = np.array([[off] * n + [unsure]] * n, np.float32)   # energy[label, index of the pixel's label]
    energy[np.arange(n), np.arange(n)] = on
    unary = energy[:, index.ravel()]
    return np.asarray(classes, np.uint8)[_mean_field(image, unary, params)]


def crf_from_scores(image: np.ndarray, scores: np.ndarray, classes: Sequence[int], params: CRFParams) -> np.ndarray:
    """Refine per-class scores with a dense CRF.

    `scores` K×H×W non-negative (K = len(classes), e.g. [background score, normalised CAMs]),
    normalised per pixel to probabilities (a pixel whose scores are all 0 is uniform; each
    probability floored at 1e-5); unary −log p. Returns uint8 H×W of classes[argmax of the
    CRF marginals]; with a single class that class everywhere (no CRF run)."""
    image = _check_image(image)
    classes = _check_classes(classes)
    scores = np.asarray(scores, np.float32)
    n = len(classes)
    if scores.shape != (n, *image.shape[:2]):
        raise ValueError(f"scores must be K×H×W = {(n, *image.shape[:2])} (one map per class), got {scores.shape}")
    if not np.isfinite(scores).all() or (scores < 0).any():
        raise ValueError("scores must be finite and non-negative")
    if n == 1:
        return np.full(image.shape[:2], classes[0], np.uint8)
    total = scores.sum(axis=0, keepdims=True)
    prob = np.divide(scores, total, out=np.full_like(scores, 1 / n), where=total > 0)
    unary = -np.log(np.maximum(prob, SCORE_EPS)).reshape(n, -1)
    return np.asarray(classes, np.uint8)[_mean_field(image, unary, params)]


def _mean_field(image: np.ndarray, unary: np.ndarray, params: CRFParams) -> np.ndarray:
    """Label index (int) H×W of the most probable label after mean-field inference."""
    height, width = image.shape[:2]
    n = unary.shape[0]
    crf = densecrf.DenseCRF2D(width, height, n)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, np.float32))
    crf.addPairwiseGaussian(sxy=float(params.gauss_sxy), compat=float(params.gauss_compat))
    crf.addPairwiseBilateral(sxy=float(params.bilateral_sxy), srgb=float(params.bilateral_srgb),
                             rgbim=image, compat=float(params.bilateral_compat))
    marginals = np.asarray(crf.inference(params.iterations), np.float32).reshape(n, height, width)
    return marginals.argmax(axis=0)


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 H×W×3 RGB, got {image.dtype} {image.shape}")
    return np.require(image, requirements=["C", "W"])    # the library's buffer needs a writable array


def _check_classes(classes: Sequence[int]) -> tuple[int, ...]:
    ids = tuple(int(c) for c in classes)
    if not ids or len(set(ids)) != len(ids) or not all(0 <= c < UNSURE for c in ids):
        raise ValueError(f"classes must be distinct ids in 0..{UNSURE - 1}, at least one, got {list(classes)}")
    return ids
