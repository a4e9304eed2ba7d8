"""Seed masks from stored CAMs (numpy only, so the stages that score or threshold stores start
without torch): IRN's seeds (Ahn et al., CVPR 2019, §3.1) prepend a constant background score τ to
the normalised CAMs and take the argmax per pixel; τ is a number, or "otsu": Otsu's threshold of
the store's seed scores, which needs no ground truth.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def cam_argmax(cams: np.ndarray, classes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the class id of the strongest labelled CAM and that score (0 where none)."""
    if len(classes) == 0:
        shape = cams.shape[-2:]
        return np.zeros(shape, np.uint8), np.zeros(shape, np.float32)
    best = cams.argmax(axis=0)
    return np.asarray(classes, np.uint8)[best], cams.max(axis=0).astype(np.float32)


def seeds_from_cams(cams: np.ndarray, classes: Sequence[int], bg_threshold: float) -> np.ndarray:
    """IRN seeds: prepend a background score τ to the normalised CAMs and take the argmax."""
    label, score = cam_argmax(cams, classes)
    return np.where(score > bg_threshold, label, 0).astype(np.uint8)


SCORE_BINS = 256   # histogram bins of the seed scores in [0, 1] for Otsu's threshold


def score_histogram(cams: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """Counts of one image's seed scores (the strongest labelled normalised CAM per pixel) in
    SCORE_BINS equal bins of [0, 1]; summed over a store they feed `otsu_threshold`."""
    return np.histogram(cam_argmax(cams, classes)[1], bins=SCORE_BINS, range=(0.0, 1.0))[0]


def otsu_threshold(histogram: np.ndarray) -> float:
    """Otsu (IEEE Trans. SMC 1979, eq. 18): the cut of a histogram over [0, 1] that maximises the
    between-class variance σ_B² = (μ_T ω - μ)² / (ω (1 - ω)); returns the upper edge of the last
    bin below the cut. Needs no ground truth: the seeds' GT-free background score τ."""
    counts = np.asarray(histogram, np.float64)
    if counts.sum() <= 0:
        raise ValueError("otsu_threshold: empty histogram (no labelled CAM pixels in the store)")
    edges = np.linspace(0.0, 1.0, len(counts) + 1)
    p = counts / counts.sum()
    omega = np.cumsum(p)[:-1]                     # weight of the lower class for each cut after bin i
    mu = np.cumsum(p * (edges[:-1] + edges[1:]) / 2)[:-1]
    mu_total = float(np.sum(p * (edges[:-1] + edges[1:]) / 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu_total * omega - mu) ** 2 / (omega * (1 - omega))
    if not np.isfinite(between).any():           # one occupied bin: no cut separates anything
        return float(edges[int(np.argmax(counts)) + 1])
    return float(edges[1:-1][np.nanargmax(np.where(np.isfinite(between), between, np.nan))])
