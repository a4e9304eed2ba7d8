"""AE-PSL pseudo-mask assembly, S = F ∪ B (Wei et al., CVPR 2017, §3.2).

F: the object regions mined over the adversarial-erasing rounds (a region store, one channel per
labelled class). B: background, the pixels whose saliency is below a threshold (0.06 in AE-PSL).
Every other pixel is left unlabelled (255). Each rule is its own function so it can be tested and
reported on its own; `assemble_pseudo_mask` applies them in order.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

IGNORE = 255


def contested_pixels(regions: np.ndarray) -> np.ndarray:
    """Pixels claimed by two or more classes' mined regions: no single label can be trusted."""
    return regions.astype(bool).sum(axis=0) >= 2


def object_labels(regions: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """The class id of the one region claiming each pixel (0 where no region claims it)."""
    claims = regions.astype(bool)
    if len(classes) == 0:
        return np.zeros(claims.shape[1:], np.uint8)
    label = np.asarray(classes, np.uint8)[claims.argmax(axis=0)]
    return np.where(claims.any(axis=0), label, 0).astype(np.uint8)


def saliency_background(saliency: np.ndarray, bg_saliency: float) -> np.ndarray:
    """B: pixels whose saliency is below `bg_saliency` (AE-PSL: 0.06)."""
    return saliency < bg_saliency


def unsalient_objects(regions: np.ndarray, saliency: np.ndarray, min_object_saliency: float) -> np.ndarray:
    """Mined object pixels whose saliency is below `min_object_saliency`: F and the saliency disagree."""
    return regions.astype(bool).any(axis=0) & (saliency < min_object_saliency)


def assemble_pseudo_mask(regions: np.ndarray, classes: Sequence[int], saliency: np.ndarray, *,
                         bg_saliency: float, min_object_saliency: float) -> np.ndarray:
    """S = F ∪ B as a uint8 H×W mask: a class where exactly one mined region claims the pixel and
    the saliency supports it, 0 on the saliency background outside F, 255 elsewhere (contested,
    unsalient object, or neither object nor background)."""
    mask = np.full(saliency.shape, IGNORE, np.uint8)
    in_objects = regions.astype(bool).any(axis=0)
    mask[saliency_background(saliency, bg_saliency) & ~in_objects] = 0
    labels = object_labels(regions, classes)
    mask[in_objects] = labels[in_objects]
    mask[contested_pixels(regions) | unsalient_objects(regions, saliency, min_object_saliency)] = IGNORE
    return mask


def ignore_reasons(regions: np.ndarray, saliency: np.ndarray, *, bg_saliency: float,
                   min_object_saliency: float) -> dict[str, int]:
    """How many pixels each rule sets to ignore (for the report): contested, unsalient object,
    and neither object nor background. The three are disjoint and add up to the ignored pixels."""
    contested = contested_pixels(regions)
    unsalient = unsalient_objects(regions, saliency, min_object_saliency) & ~contested
    neither = ~regions.astype(bool).any(axis=0) & ~saliency_background(saliency, bg_saliency)
    return {"contested": int(contested.sum()), "unsalient_object": int(unsalient.sum()), "neither": int(neither.sum())}
