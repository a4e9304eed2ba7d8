"""Class activation maps: classifier training batches, multi-scale + flip inference, seeds.

CAM (Zhou et al., CVPR 2016): M_c = ReLU(w_c · f(x)) for the 1×1 classifier w over backbone
features f. Inference follows IRN (Ahn et al., CVPR 2019, §3.1): the CAM is summed over scales
and horizontal flips at full resolution, kept only for the image's labelled classes, and each
class map is divided by its maximum. Seeds from the stored maps: maskforge.seed_masks.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from maskforge.augment import color_jitter, random_scale_flip_crop
from maskforge.multiscale import multiscale_flip_sum

Batch = tuple[torch.Tensor, torch.Tensor]


def multilabel_loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Multi-label soft-margin loss on the GAP logits (image-level labels only)."""
    images, targets = batch
    return F.multilabel_soft_margin_loss(model(model.backbone.normalize(images)), targets)


def training_batches(images: Sequence[torch.Tensor], labels: torch.Tensor, *, batch_size: int, crop_size: int,
                     scale_range: tuple[float, float], jitter: float, rng: np.random.Generator) -> Iterator[Batch]:
    """One epoch of shuffled, augmented batches: float 0..255 B×3×crop×crop and multi-hot B×K."""
    order = rng.permutation(len(images))
    for start in range(0, len(order), batch_size):
        chosen = order[start:start + batch_size]
        crops = [random_scale_flip_crop(color_jitter(images[i].float(), jitter, rng), crop_size, scale_range, rng)
                 for i in chosen]
        yield torch.stack(crops), labels[chosen]


def multiscale_cams(model: torch.nn.Module, images: torch.Tensor, scales: Sequence[float],
                    classes: Sequence[int] | None = None) -> torch.Tensor:
    """Σ over scales of CAM(x_s) + flip(CAM(flip(x_s))), each upsampled to the input size.

    `images`: float 0..255 B×3×H×W of one size; `model` exposes `num_classes`, `backbone.normalize`
    and `cams` (normalised images → B×K×h×w). Returns B×K×H×W (all classes, unnormalised), or
    with `classes` (1-based label ids) only those maps, B×len(classes)×H×W: picked at CAM
    resolution, so only the labelled maps are upsampled (per-channel, so the values are the same).
    """
    if classes is not None and len(classes) == 0:               # no labelled class: nothing to infer
        return images.new_zeros((images.shape[0], 0, *images.shape[-2:]))
    index = None if classes is None else torch.as_tensor([c - 1 for c in classes], dtype=torch.long,
                                                         device=images.device)

    def scores(x: torch.Tensor) -> torch.Tensor:
        cams = model.cams(model.backbone.normalize(x))
        return (cams if index is None else cams.index_select(1, index)).float()

    return multiscale_flip_sum(scores, images, scales)


def gradcams(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al., ICCV 2017, eq. 1-2) of every class, B×K×h×w at feature resolution.

    `x` is normalised; `model` provides features(x) and head(features) → logits B×K. For class k:
    α_kc = spatial mean of ∂y_k/∂A_c over the last feature map A, map = ReLU(Σ_c α_kc A_c). Only
    the head is differentiated, so this also runs inside torch.inference_mode (multiscale_cams).
    For a GAP + linear head α_kc = w_kc / (h·w): Grad-CAM is the CAM divided by h·w.
    """
    features = model.features(x)
    with torch.inference_mode(False), torch.enable_grad():
        features = features.clone().requires_grad_(True)    # a normal tensor, even from inference mode
        logits = model.head(features)
        k = logits.shape[1]
        selectors = torch.eye(k, dtype=logits.dtype, device=logits.device)[:, None, :].expand(k, *logits.shape)
        (grads,) = torch.autograd.grad(logits, features, grad_outputs=selectors, is_grads_batched=True)
        weights = grads.mean(dim=(-2, -1))                                   # K×B×C
        return F.relu(torch.einsum("kbc,bchw->bkhw", weights, features.detach()))


class CamView(torch.nn.Module):
    """`model` with another map function `cams(x)` (normalised images → B×K×h×w), e.g. its
    Grad-CAM, so multiscale_cams infers it with the same scales, flips and normalisation."""

    def __init__(self, model: torch.nn.Module, cams: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self.backbone = model.backbone
        self.num_classes = model.num_classes
        self._cams = cams

    def cams(self, x: torch.Tensor) -> torch.Tensor:
        return self._cams(x)


def normalise_max(cams: torch.Tensor) -> torch.Tensor:
    """Each class map (K×H×W) divided by its max (IRN: + 1e-5 so an all-zero map stays 0)."""
    return cams / (cams.flatten(1).amax(dim=1).view(-1, 1, 1) + 1e-5)


def same_size_batches(sizes: Sequence[tuple[int, int]], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of equal image size (first-seen size order, stable within)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for index, size in enumerate(sizes):
        groups.setdefault(tuple(size), []).append(index)
    return [members[i:i + batch_size] for members in groups.values() for i in range(0, len(members), batch_size)]



def part_of(ids: Sequence[str], part: int, count: int) -> list[str]:
    """The contiguous id range that job `part` of `count` infers (sizes differ by at most one)."""
    if not 0 <= part < count:
        raise ValueError(f"part {part} of {count}: choose 0 ≤ part < {count}")
    return list(ids[part * len(ids) // count:(part + 1) * len(ids) // count])
