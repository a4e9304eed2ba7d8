"""IRN (Ahn, Cho & Kwak, CVPR 2019): inter-pixel relation labels, pixel pairs and the boundary loss.

1. IR labels (IRN step/cam_to_ir_label.py): confident foreground = argmax of the CAMs with a
   background score τ_fg (0.30) prepended, through a dense CRF; confident background likewise with
   τ_bg (0.05); a pixel the τ_fg map calls background but the τ_bg map calls an object is ignored.
2. Pixel pairs at stride 4 within a radius r (IRN misc/indexing.py PathIndex): each unordered pair
   once, as a source pixel i and an offset o from IRN's half-disc of directions (j = i + o).
3. Affinity a_ij = 1 − max_{k ∈ Π_ij} B(k) over the pixels Π_ij on the line from i to j.
4. Affinity labels from the IR labels at stride 4: same foreground class, both background,
   different classes; pairs touching 255 are dropped (IRN voc12/dataloader.py).
5. The class-boundary loss of IRN's step/train_irn.py (without the displacement-field terms).
"""

from __future__ import annotations

from functools import cache
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from maskforge.augment import random_scale_flip_crop_pair
from maskforge.seed_masks import seeds_from_cams
from maskforge.crf import CRFParams, crf_from_labels

__all__ = ["STRIDE", "IGNORE", "ir_labels", "pair_offsets", "path_offsets", "pair_affinities",
           "downsample_labels", "affinity_labels", "boundary_loss", "affinity_batches"]

STRIDE = 4      # the boundary map and the pixel pairs live at 1/4 of the image resolution
IGNORE = 255
LOG_EPS = 1e-5  # IRN: log(a + 1e-5), log(1 + 1e-5 − a), counts + 1e-5


def ir_labels(image: np.ndarray, cams: np.ndarray, classes: Sequence[int], fg_threshold: float,
              bg_threshold: float, crf_params: CRFParams) -> np.ndarray:
    """IRN's inter-pixel relation labels (step/cam_to_ir_label.py).

    `cams` K×H×W normalised CAMs of the labelled `classes` (1-based ids). fg_conf = CRF(argmax of
    [τ_fg, cams]) and bg_conf = CRF(argmax of [τ_bg, cams]), each CRF over the labels
    [0, *classes]; then conf = fg_conf, with 255 where fg_conf is background, and 0 where both
    are background (IRN: conf[fg == 0] = 255; conf[bg + fg == 0] = 0). Returns uint8 H×W."""
    labels = [0, *(int(c) for c in classes)]
    fg_conf = crf_from_labels(image, seeds_from_cams(cams, classes, fg_threshold), labels, crf_params)
    bg_conf = crf_from_labels(image, seeds_from_cams(cams, classes, bg_threshold), labels, crf_params)
    conf = fg_conf.copy()
    conf[fg_conf == 0] = IGNORE
    conf[(fg_conf == 0) & (bg_conf == 0)] = 0
    return conf


@cache
def pair_offsets(radius: int) -> tuple[tuple[int, int], ...]:
    """IRN's search directions (misc/indexing.py get_all_dir_paths): (0, dx) for 0 < dx < r, then
    (dy, dx) for 0 < dy < r, |dx| < r, dy² + dx² < r². Half the disc of radius r (strictly inside),
    so each unordered pair {i, i + o} appears once; r = 5 gives 34 offsets, r = 10 gives 152."""
    if radius < 1:
        raise ValueError(f"radius must be >= 1, got {radius}")
    offsets = [(0, dx) for dx in range(1, radius)]
    offsets += [(dy, dx) for dy in range(1, radius) for dx in range(-radius + 1, radius)
                if dy * dy + dx * dx < radius * radius]
    return tuple(offsets)


@cache
def path_offsets(dy: int, dx: int) -> tuple[tuple[int, int], ...]:
    """The pixels Π between (0, 0) and (dy, dx), both ends included: those of the bounding box whose
    distance to the line through the two ends is below 1 (IRN's path, misc/indexing.py)."""
    length_sq = dy * dy + dx * dx
    if length_sq == 0:
        return ((0, 0),)
    (y0, y1), (x0, x1) = sorted((0, dy)), sorted((0, dx))
    return tuple((y, x) for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)
                 if (dy * x - dx * y) ** 2 < length_sq)


def _shifted_views(x: Tensor, radius: int, fill: float) -> tuple[Tensor, int, int]:
    """x (…×h×w) padded by r − 1 left/right/bottom with `fill`, so that x[…, y + dy, x + dx] of any
    half-disc offset is padded[…, dy:dy + h, r − 1 + dx:r − 1 + dx + w]."""
    pad = radius - 1
    return F.pad(x, (pad, pad, 0, pad), value=fill), x.shape[-2], x.shape[-1]


def pair_affinities(boundary: Tensor, radius: int) -> Tensor:
    """IRN's affinity from a class-boundary map: a_ij = 1 − max_{k ∈ Π_ij} B(k) (the paper's a_ij;
    IRN misc/indexing.py edge_to_affinity). `boundary` …×h×w in [0, 1]; returns …×O×h×w where
    [o, y, x] is the pair (y, x) → (y, x) + pair_offsets(radius)[o]. Pairs whose second pixel lies
    outside the map get 0 (the map is padded with boundary 1, as IRN pads it)."""
    padded, h, w = _shifted_views(boundary, radius, 1.0)
    p = radius - 1
    views: dict[tuple[int, int], Tensor] = {}

    def view(dy: int, dx: int) -> Tensor:
        if (dy, dx) not in views:
            views[(dy, dx)] = padded[..., dy:dy + h, p + dx:p + dx + w]
        return views[(dy, dx)]

    affinities = [1 - torch.stack([view(*k) for k in path_offsets(*o)]).amax(dim=0) for o in pair_offsets(radius)]
    return torch.stack(affinities, dim=-3) if affinities else boundary.new_zeros((*boundary.shape[:-2], 0, h, w))


def downsample_labels(labels: Tensor) -> Tensor:
    """Labels at stride 4: pixel (4y, 4x) for each (y, x), as IRN's cv2 nearest resize by 1/4; the
    size ⌈h/4⌉ × ⌈w/4⌉ matches the boundary map of an h × w input."""
    return labels[..., ::STRIDE, ::STRIDE]


def affinity_labels(labels: Tensor, radius: int) -> tuple[Tensor, Tensor, Tensor]:
    """Pair labels of IRN (voc12/dataloader.py GetAffinityLabelFromIndices) from a stride-4 label
    map …×h×w (255 = ignore): bool …×O×h×w masks (bg_pos, fg_pos, neg) — both pixels background;
    both the same foreground class; different classes. Pairs touching 255 or leaving the map are
    in none of them."""
    padded, h, w = _shifted_views(labels, radius, IGNORE)
    p = radius - 1
    if not pair_offsets(radius):                          # radius 1: no pairs
        none = torch.zeros((*labels.shape[:-2], 0, h, w), dtype=torch.bool, device=labels.device)
        return none, none, none
    target = torch.stack([padded[..., dy:dy + h, p + dx:p + dx + w] for dy, dx in pair_offsets(radius)], dim=-3)
    source = labels.unsqueeze(-3)
    valid = (source != IGNORE) & (target != IGNORE)
    same = valid & (source == target)
    return same & (source == 0), same & (source != 0), valid & (source != target)


def boundary_loss(boundary: Tensor, labels: Tensor, radius: int) -> Tensor:
    """IRN's class-boundary loss (paper: L_B; code: step/train_irn.py, displacement terms left out):

        L = ½ (½ L_bg+ + ½ L_fg+ + L_neg)
        L_bg+ = Σ_{bg pairs} −log(a_ij + ε) / |bg pairs|,  L_fg+ likewise over same-class fg pairs,
        L_neg = Σ_{different-class pairs} −log(1 + ε − a_ij) / |neg pairs|,  ε = 1e-5,

    with each count + ε and the sums over the whole batch. `boundary` B×h×w in [0, 1] (the
    network's sigmoid output at stride 4), `labels` B×h×w stride-4 IR labels (255 = ignore)."""
    affinity = pair_affinities(boundary, radius)
    bg_pos, fg_pos, neg = affinity_labels(labels, radius)

    def mean(values: Tensor, mask: Tensor) -> Tensor:
        return (values * mask).sum() / (mask.sum() + LOG_EPS)

    positive = -torch.log(affinity + LOG_EPS)
    pos_loss = mean(positive, bg_pos) / 2 + mean(positive, fg_pos) / 2
    neg_loss = mean(-torch.log(1 + LOG_EPS - affinity), neg)
    return (pos_loss + neg_loss) / 2


def affinity_batches(images: Sequence[Tensor], masks: Sequence[Tensor], *, batch_size: int, crop_size: int,
                     scale_range: tuple[float, float], rng: np.random.Generator) -> Iterator[tuple[Tensor, Tensor]]:
    """One epoch of shuffled IRN training batches: the same random rescale, flip and crop of each
    image (float 0..255, 3×H×W) and its IR label map (H×W, padded with 255); yields images
    B×3×crop×crop and stride-4 labels B×⌈crop/4⌉×⌈crop/4⌉ (long)."""
    order = rng.permutation(len(images))
    for start in range(0, len(order), batch_size):
        pairs = [random_scale_flip_crop_pair(images[i].float(), masks[i], crop_size, scale_range, rng)
                 for i in order[start:start + batch_size]]
        yield (torch.stack([image for image, _ in pairs]),
               downsample_labels(torch.stack([mask for _, mask in pairs]).long()))
