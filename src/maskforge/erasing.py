"""AE-PSL adversarial erasing (Wei et al., CVPR 2017, §3.1).

Round t mines, per labelled class, the pixels whose normalised CAM is within the top 20% of its
largest value (normalised CAM ≥ 0.8); they join the class's object region F. Round t+1 trains
and infers on images whose accumulated F is filled with the mean pixel of the training images.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np


def mine_regions(cams: np.ndarray, threshold: float) -> np.ndarray:
    """K×H×W normalised CAMs → bool K×H×W: the pixels at or above `threshold` of each class."""
    return cams >= threshold


def accumulate_regions(previous: np.ndarray | None, previous_classes: Sequence[int],
                       mined: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """F_t = F_{t-1} ∪ mined_t, class by class; `mined` is K×H×W over `classes`, and so is the result."""
    if previous is None:
        return mined.copy()
    merged = mined.copy()
    for k, c in enumerate(classes):
        if c in previous_classes:
            merged[k] |= previous[list(previous_classes).index(c)].astype(bool)
    return merged


def erase(image: np.ndarray, region: np.ndarray, mean_pixel: np.ndarray) -> np.ndarray:
    """Fill the pixels of `region` (bool H×W, any class) in an H×W×3 image with the mean pixel."""
    out = image.copy()
    out[region] = np.round(mean_pixel).astype(image.dtype)
    return out


def mean_pixel(images: Iterable[np.ndarray]) -> np.ndarray:
    """The mean RGB value over all pixels of the given H×W×3 images (float64, 3)."""
    total, count = np.zeros(3), 0
    for image in images:
        total += image.reshape(-1, 3).sum(axis=0, dtype=np.float64)
        count += image.shape[0] * image.shape[1]
    return total / max(count, 1)


def round_image(manifest, regions, image_id: str) -> np.ndarray:
    """The H×W×3 image an AE round sees: the original, with the regions mined so far (a region
    store, or None in round 0) filled with the training mean pixel (recorded by `prepare`)."""
    image = manifest.load_image(image_id)
    if regions is None or image_id not in regions:
        return image
    return erase(image, regions[image_id].any(axis=0), np.asarray(manifest.stats["mean_pixel"]))
