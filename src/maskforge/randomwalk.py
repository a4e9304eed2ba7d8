"""IRN's random walk (Ahn et al., CVPR 2019; IRN misc/indexing.py propagate_to_edge and
step/make_sem_seg_labels.py): CAMs propagated over the inter-pixel affinities of a boundary map.

At stride 4, for pixel pairs within `radius` (IRN: 5): a_ij = 1 − max_{k ∈ Π_ij} B(k) (see
maskforge.irn.pair_affinities), A_ij = a_ij^β (β = 10), symmetric, A_ii = 1, zero beyond the radius;
T = A / column sums (IRN: trans_mat = A / sum(A, dim=0)). With x = CAM ⊙ (1 − B) per class (K×n),
the propagated scores are x · T^(2^t) (t = exp_times, IRN: 8). IRN propagates only the class CAMs:
the background enters afterwards as a constant score (bg_score, IRN sem_seg_bg_thres 0.25) placed
before the argmax of the scores divided by their global max. With `bg_power` α set, the background
is instead a channel walked with the classes, AffinityNet's M_bg = (1 − max_c M_c)^α (PSA, Ahn &
Kwak, CVPR 2018, eq. 1), and the argmax is over the walked channels: where the CAMs cover most of
the image (MSRC at 224 px, stride 16) the walked CAMs stay high on the background, and a constant
score after the walk labels it foreground.

Two implementations of x · T^(2^t):
- `dense_random_walk`: IRN's form — the n × n matrix T squared t times (memory O(n²), time O(t·n³)).
- `bounded_random_walk`: T as a radius-limited stencil (one weight per pixel and neighbour offset)
  applied 2^t times to x; memory O(n · offsets), never an n × n matrix.
"""

from __future__ import annotations

from functools import cache
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from maskforge.augment import resize_longer_side
from maskforge.irn import STRIDE, pair_affinities, pair_offsets
from maskforge.models.irn import BoundaryNet

__all__ = ["neighbour_offsets", "transition_stencil", "dense_transition", "dense_random_walk",
           "bounded_random_walk", "upsample_scores", "walk_labels", "background_channel", "irn_mask"]


@cache
def neighbour_offsets(radius: int) -> tuple[tuple[int, int], ...]:
    """Every offset o with A[j + o, j] possibly non-zero: (0, 0), IRN's half disc and its negation."""
    half = pair_offsets(radius)
    return ((0, 0), *half, *((-dy, -dx) for dy, dx in half))


def _pair_weights(boundary: Tensor, radius: int, beta: float) -> Tensor:
    """a^β for the half-disc pairs (p, p + o), O×h×w; 0 where p + o leaves the map."""
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    return pair_affinities(boundary, radius).clamp(min=0) ** beta


def _shift(x: Tensor, dy: int, dx: int) -> Tensor:
    """s[…, y, x] = x[…, y + dy, x + dx], zero outside the map."""
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    if abs(dy) >= h or abs(dx) >= w:          # the offset leaves the map: nothing to take
        return out
    ys, yd = slice(max(dy, 0), h + min(dy, 0)), slice(max(-dy, 0), h + min(-dy, 0))
    xs, xd = slice(max(dx, 0), w + min(dx, 0)), slice(max(-dx, 0), w + min(-dx, 0))
    out[..., yd, xd] = x[..., ys, xs]
    return out


def transition_stencil(boundary: Tensor, radius: int, beta: float) -> Tensor:
    """T in stencil form: W[o, j] = T[j + o, j] = A[j + o, j] / Σ_i A[i, j] for o in
    neighbour_offsets(radius), a tensor F×h×w (F = 2·|half disc| + 1), so that
    (x · T)[j] = Σ_o W[o, j] · x[j + o]. Each column of T sums to 1: W.sum(0) == 1."""
    half = _pair_weights(boundary, radius, beta)                       # A[p, p + o] = A[p + o, p]
    backward = torch.stack([_shift(w, -dy, -dx) for w, (dy, dx) in zip(half, pair_offsets(radius))]) if len(half) else half
    weights = torch.cat([torch.ones_like(boundary)[None], half, backward])   # A[j + o, j] for each offset o
    return weights / weights.sum(dim=0, keepdim=True)


def dense_transition(boundary: Tensor, radius: int, beta: float) -> Tensor:
    """IRN's dense transition matrix (misc/indexing.py affinity_sparse2dense + to_transition_matrix):
    A (n×n, n = h·w, row-major pixels) with A_ii = 1 and A_ij = A_ji = a_ij^β for the pairs within
    the radius, then T = A / A.sum(0). Memory O(n²)."""
    h, w = boundary.shape[-2:]
    n = h * w
    weights = _pair_weights(boundary, radius, beta)
    ys, xs = torch.meshgrid(torch.arange(h, device=boundary.device), torch.arange(w, device=boundary.device), indexing="ij")
    affinity = torch.eye(n, dtype=boundary.dtype, device=boundary.device)
    for weight, (dy, dx) in zip(weights, pair_offsets(radius)):
        inside = (ys + dy < h) & (xs + dx >= 0) & (xs + dx < w)
        source = (ys * w + xs)[inside]
        target = ((ys + dy) * w + xs + dx)[inside]
        affinity[source, target] = weight[inside]
        affinity[target, source] = weight[inside]
    return affinity / affinity.sum(dim=0, keepdim=True)


def _walk_input(cams: Tensor, boundary: Tensor) -> Tensor:
    if cams.ndim != 3 or boundary.ndim != 2 or cams.shape[-2:] != boundary.shape:
        raise ValueError(f"cams must be K×h×w and boundary h×w of the same size, got {tuple(cams.shape)} "
                         f"and {tuple(boundary.shape)}")
    return cams * (1 - boundary)


def dense_random_walk(cams: Tensor, boundary: Tensor, radius: int, beta: float, exp_times: int) -> Tensor:
    """IRN's propagate_to_edge: x = cams ⊙ (1 − B), T squared `exp_times` times, x · T.
    `cams` K×h×w, `boundary` h×w (stride 4); returns K×h×w."""
    x = _walk_input(cams, boundary)
    transition = dense_transition(boundary, radius, beta)
    for _ in range(exp_times):
        transition = transition @ transition
    return (x.reshape(x.shape[0], -1) @ transition).reshape(x.shape)


def bounded_random_walk(cams: Tensor, boundary: Tensor, radius: int, beta: float, exp_times: int) -> Tensor:
    """x · T^(2^exp_times) with x = cams ⊙ (1 − B), as `dense_random_walk`, but T is the
    transition_stencil (F weights per pixel) applied 2^exp_times times: each step gathers the
    F neighbours of every pixel from x padded by the radius. Memory O(K · n · F), no n×n matrix."""
    x = _walk_input(cams, boundary)
    k, (h, w) = x.shape[0], x.shape[-2:]
    weights = transition_stencil(boundary, radius, beta).reshape(1, -1, h * w)
    pad = radius - 1
    ys, xs = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    index = torch.stack([((ys + pad + dy) * (w + 2 * pad) + xs + pad + dx).reshape(-1)
                         for dy, dx in neighbour_offsets(radius)])                    # F×n into the padded map
    for _ in range(2 ** exp_times):
        padded = F.pad(x, (pad, pad, pad, pad)).reshape(k, -1)
        x = (padded[:, index] * weights).sum(dim=1).reshape(k, h, w)
    return x


def upsample_scores(scores: Tensor, size: tuple[int, int], full_size: tuple[int, int]) -> Tensor:
    """Stride-4 scores K×⌈h/4⌉×⌈w/4⌉ of an h×w image → K×H×W at the image's full size: ×4
    bilinear and cropped to h×w (IRN make_sem_seg_labels), then bilinear to H×W if different."""
    up = F.interpolate(scores[None], scale_factor=STRIDE, mode="bilinear", align_corners=False)[0, :, :size[0], :size[1]]
    if tuple(size) != tuple(full_size):
        up = F.interpolate(up[None], size=tuple(full_size), mode="bilinear", align_corners=False)[0]
    return up


def walk_labels(scores: Tensor, classes: Sequence[int], bg_score: float) -> np.ndarray:
    """IRN make_sem_seg_labels: scores (K×H×W, class ids `classes`) divided by their global max,
    the constant background score prepended, argmax → uint8 H×W class ids (0 = background)."""
    if scores.shape[0] == 0:
        return np.zeros(scores.shape[-2:], np.uint8)
    top = scores.max()
    scores = scores / top if top > 0 else scores
    padded = torch.cat([scores.new_full((1, *scores.shape[-2:]), bg_score), scores])
    keys = np.asarray([0, *(int(c) for c in classes)], np.uint8)
    return keys[padded.argmax(dim=0).cpu().numpy()]


def background_channel(cams: Tensor, power: float) -> Tensor:
    """AffinityNet's background map (PSA, Ahn & Kwak 2018, eq. 1): M_bg = (1 − max_c M_c)^α of
    max-normalised CAMs K×h×w; returns 1×h×w (1 everywhere when there is no class)."""
    if cams.shape[0] == 0:
        return cams.new_ones((1, *cams.shape[-2:]))
    return (1 - cams.amax(dim=0, keepdim=True)).clamp(min=0) ** power


@torch.inference_mode()
def irn_mask(model: BoundaryNet, image: np.ndarray, cams: np.ndarray, classes: Sequence[int], *, max_side: int,
             radius: int, beta: float, exp_times: int, bg_score: float, bg_power: float | None = None) -> np.ndarray:
    """IRN's pseudo mask of one image (IRN step/make_sem_seg_labels.py): the boundary map B of the
    image (H×W×3 uint8) resized to longer side `max_side` (mean of the image's and its flip's
    logits, stride 4), its normalised CAMs (K×H×W, class ids `classes`) resized to B's grid, the
    random walk x · T^(2^exp_times) with x = CAM ⊙ (1 − B), the scores upsampled to H×W, divided
    by their max, `bg_score` prepended, argmax → uint8 H×W class ids. With `bg_power` α, the
    background channel (1 − max CAM)^α is walked with the CAMs instead and the argmax taken over
    the walked channels (`bg_score` unused). Runs on the model's device."""
    full = torch.tensor(image).permute(2, 0, 1)
    if len(classes) == 0:
        return np.zeros(full.shape[-2:], np.uint8)
    device = next(model.parameters()).device
    small = resize_longer_side(full, max_side).float().to(device)
    boundary = model.boundary_with_flip(model.backbone.normalize(small[None]))[0]
    cams4 = F.interpolate(torch.from_numpy(cams)[None].to(device), size=boundary.shape, mode="bilinear",
                          align_corners=False)[0]
    if bg_power is None:
        scores = bounded_random_walk(cams4, boundary, radius, beta, exp_times)
        return walk_labels(upsample_scores(scores, small.shape[-2:], full.shape[-2:]), classes, bg_score)
    scores = bounded_random_walk(torch.cat([background_channel(cams4, bg_power), cams4]), boundary, radius, beta, exp_times)
    keys = np.asarray([0, *(int(c) for c in classes)], np.uint8)
    return keys[upsample_scores(scores, small.shape[-2:], full.shape[-2:]).argmax(dim=0).cpu().numpy()]
