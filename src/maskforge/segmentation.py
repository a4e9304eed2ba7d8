"""Training and inference of the segmentation network on pseudo masks (AE-PSL, DeepLab).

AE-PSL (Wei et al., "Object Region Mining with Adversarial Erasing", CVPR 2017):
- §3.2 eq. (1)-(2): the segmentation loss on a mask S is
  J(f, S) = −1/Σ_c|S_c| · Σ_c Σ_{u∈S_c} log f_{u,c},
  f the softmax scores and S_c the pixels S labels c: the mean −log f over all labelled pixels
  (the SEC seeding-loss form; one mean over pixels, not a per-class balanced mean). That is
  torch's cross entropy with ignore index 255, the standard DeepLab loss; `labelled_cross_entropy`
  computes it directly so that a crop without labelled pixels gives 0 instead of nan.
- §3.2 online PSL: a classification branch predicts image-level scores v; the online label is
  Ŝ = argmax over c ∈ {background} ∪ image labels of ([1, v] ⊗ f)_c, recomputed every step
  without gradient, and the loss is J(f, S) + J(f, Ŝ) (+ the branch's multi-label loss).
  Warm-up (`OnlinePSL.start_epoch`): the paper fine-tunes a DeepLab that already segments, so its
  f and v are meaningful when Ŝ is first formed. Trained from ImageNet weights, f starts near
  uniform and v near 0.5, so [1, v] ⊗ f favours background almost everywhere and J(f, Ŝ) (as
  heavy as J(f, S)) teaches the net to answer background: measured on MSRC, 34.2 → 18.6 mIoU.
  So for the first `start_epoch` epochs the loss is J(f, S) plus the branch's multi-label loss
  (v learns the image labels meanwhile), and J(f, Ŝ) enters afterwards, weighted by `weight`
  (1 in the paper) — the ramp-up of pseudo-label losses in self-ensembling (Laine & Aila, ICLR
  2017; Tarvainen & Valpola, NeurIPS 2017) reduced to a step.
  Confidence (`OnlinePSL.confidence`): the warm-up alone does not stop the harm. On MSRC (DeepLab
  Lite0 on the AE-PSL assembly S, 63% of its pixels unsure), Ŝ of the plain model calls 73% of
  S's unsure pixels background where the GT has 55% (69% right), and once J(f, Ŝ) trains on it
  the bias feeds itself: 86% background, val mIoU 28.1 → 16.9. Keeping only the pixels where f
  of Ŝ's class is ≥ 0.9 (42% of the unsure pixels, 89% right, about S's own accuracy) is the
  confidence mask of self-training (FixMatch, Sohn et al. NeurIPS 2020; PseudoSeg's threshold):
  28.1 with it. On the AE+CRF masks (no unsure pixel) plain 38.5, PSL 22.0, with the mask 40.2.
  `pixels` "unsure" also keeps Ŝ off S's labelled pixels (AE-PSL lets it override): 28.4.
- §4: at test time, pixels whose best class probability is below p (0.1) become background.

Inference is multi-scale + horizontal flip (DeepLab): softmax averaged at full size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from maskforge.augment import random_scale_flip_crop_pair, resize_longer_side
from maskforge.crf import CRFParams, crf_from_scores
from maskforge.data.manifest import Manifest
from maskforge.distributed import rank_share
from maskforge.metrics import IGNORE, ConfusionMatrix
from maskforge.multiscale import multiscale_flip_sum
from maskforge.store import StoreError, open_store

__all__ = ["UNSURE", "OnlinePSL", "TrainingSet", "apply_confidence", "labelled_cross_entropy", "labelled_split",
           "labels_from_probs", "load_training_set", "online_psl_target", "predict_probs", "segmentation_loss",
           "steps_per_epoch", "training_batches", "validation_miou"]

# In training crops, a pseudo mask's own ignore pixels (255: "unsure") are carried as UNSURE so
# that 255 marks only the crop's padding: J(f, S) ignores both, J(f, Ŝ) supervises unsure pixels
# (where PSL is meant to help) but never padding. Class ids must stay below it.
UNSURE = 254

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class TrainingSet:
    """Train images (uint8 3×h×w), their masks (uint8 h×w, 255 = ignore) and multi-hot image labels
    (float N×(K−1)), in the order of `ids`."""
    ids: list[str]
    images: list[torch.Tensor]
    masks: list[torch.Tensor]
    labels: torch.Tensor

    def subset(self, ids: Sequence[str]) -> "TrainingSet":
        index = {image_id: i for i, image_id in enumerate(self.ids)}
        chosen = [index[i] for i in ids]
        return TrainingSet(list(ids), [self.images[i] for i in chosen], [self.masks[i] for i in chosen],
                           self.labels[torch.as_tensor(chosen, dtype=torch.long)])


def load_training_set(manifest: Manifest, labels_path: str | Path, max_side: int) -> TrainingSet:
    """The train-split ids of the mask store at `labels_path`, their images and masks resized so the
    longer side is at most `max_side` (masks by nearest neighbour), and their image labels.
    A store of other classes or without a train id fails with a StoreError naming it."""
    store = open_store(labels_path, kind="mask", manifest=manifest)
    if store.classes != manifest.classes:
        raise StoreError(f"{labels_path}: classes {store.classes} differ from the dataset's {manifest.classes}"
                         " — train on a store of this dataset")
    train = set(manifest.ids("train"))
    ids = [i for i in store.ids if i in train]
    if not ids:
        raise StoreError(f"{labels_path}: none of its {len(store.ids)} ids is in the train split — pass a train-split store")
    images = [resize_longer_side(torch.tensor(manifest.load_image(i)).permute(2, 0, 1), max_side) for i in ids]
    masks = [resize_longer_side(torch.from_numpy(store[i])[None], max_side, mode="nearest")[0] for i in ids]
    labels = torch.stack([torch.from_numpy(manifest.multi_hot(i)) for i in ids]).float()
    return TrainingSet(ids, images, masks, labels)


def labelled_split(ids: Sequence[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(pixel-labelled, image-labelled only): round(fraction · N) ids (at least one) drawn by a
    permutation seeded with `seed` from the sorted ids, so the split depends on the id set and the
    seed only, not on their order; both parts come back in `ids`' order and are disjoint."""
    if not 0 < fraction <= 1:
        raise ValueError(f"labelled fraction must be in (0, 1], got {fraction}")
    count = max(1, round(fraction * len(ids)))
    chosen = set(np.array(sorted(ids))[np.random.default_rng(seed).permutation(len(ids))[:count]].tolist())
    return [i for i in ids if i in chosen], [i for i in ids if i not in chosen]


def per_rank_batch(batch_size: int, world_size: int) -> int:
    """Images per process and step: the global batch split over the ranks (at least 2 each:
    BatchNorm in ASPP's image-pooling branch needs more than one value per channel)."""
    per_rank = batch_size // world_size
    if per_rank < 2:
        raise ValueError(f"batch_size {batch_size} over {world_size} process(es) gives {per_rank} image(s) per "
                         f"process; BatchNorm needs at least 2: use a batch_size of at least {2 * world_size}")
    return per_rank


def steps_per_epoch(num_images: int, batch_size: int, world_size: int = 1) -> int:
    """Steps of `training_batches`: full per-rank batches of this rank's share (the last
    incomplete one dropped, as the DeepLab reference does), at least one."""
    share = -(-num_images // world_size)
    return max(1, share // per_rank_batch(batch_size, world_size))


def training_batches(images: Sequence[torch.Tensor], masks: Sequence[torch.Tensor], labels: torch.Tensor, *,
                     batch_size: int, crop_size: int, scale_range: tuple[float, float], rng: np.random.Generator,
                     rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
    """One epoch of shuffled (image, mask) crops for rank `rank` of `world_size`.

    `images` uint8/float 0..255 3×H×W, `masks` uint8 H×W (255 = ignore), `labels` multi-hot
    N×(K−1). The epoch order and one augmentation seed per image come from `rng` (the same on
    every rank); each rank takes its `rank_share` and yields batches of batch_size/world_size:
    float B×3×crop×crop, long B×crop×crop masks (UNSURE where the mask ignores, 255 where the crop
    is padding) and the images' multi-hot labels. A given image gets the same augmentation
    whichever rank draws it, so N processes see exactly the crops one process would.
    """
    per_rank = per_rank_batch(batch_size, world_size)
    order = rng.permutation(len(images))
    seeds = rng.integers(2**63 - 1, size=len(images))
    share = rank_share(order, rank, world_size)
    for step in range(steps_per_epoch(len(images), batch_size, world_size)):
        chosen = share[step * per_rank:(step + 1) * per_rank]
        crops = [random_scale_flip_crop_pair(images[i].float(), _mark_unsure(masks[i]), crop_size, scale_range,
                                             np.random.default_rng(seeds[i])) for i in chosen]
        yield (torch.stack([c[0] for c in crops]), torch.stack([c[1] for c in crops]).long(),
               labels[torch.as_tensor(chosen)])


def _mark_unsure(mask: torch.Tensor) -> torch.Tensor:
    if (mask == UNSURE).any():
        raise ValueError(f"mask holds class id {UNSURE}, reserved for unsure pixels during training")
    return torch.where(mask == IGNORE, torch.full_like(mask, UNSURE), mask)


def labelled_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """AE-PSL eq. (2): J(f, S) = −1/Σ_c|S_c| Σ_c Σ_{u∈S_c} log f_{u,c}, f = softmax(logits) over
    dim 1 (B×K×H×W), S = `target` B×H×W; pixels ≥ K (255 ignore, UNSURE) belong to no S_c.
    Equals F.cross_entropy(..., ignore_index=255) when only 255 is ignored; 0 with no labelled pixel."""
    k = logits.shape[1]
    labelled = target < k
    log_f = F.log_softmax(logits, dim=1)
    picked = log_f.gather(1, torch.where(labelled, target, 0).unsqueeze(1)).squeeze(1)
    return -(picked * labelled).sum() / labelled.sum().clamp(min=1)


@torch.no_grad()
def online_psl_target(probs: torch.Tensor, v: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """AE-PSL §3.2 online label Ŝ = argmax over c ∈ {0} ∪ labels of ([1, v] ⊗ f)_c.

    `probs` f, B×K×H×W softmax scores; `v` B×(K−1) image-level class probabilities (sigmoid of the
    classification branch); `labels` B×(K−1) multi-hot image labels. Background is weighted by 1,
    class c by v_c; classes outside the image's labels never win. Returns long B×H×W."""
    weights = torch.cat([torch.ones_like(v[:, :1]), v], dim=1)
    allowed = torch.cat([torch.ones_like(labels[:, :1]), labels], dim=1) > 0
    scores = probs * weights[:, :, None, None]
    scores = scores.masked_fill(~allowed[:, :, None, None], -1.0)    # scores ≥ 0: excluded classes lose
    return scores.argmax(dim=1)


def segmentation_loss(model: torch.nn.Module, batch: Batch, psl_weight: float = 1.0,
                      psl_pixels: str = "all", psl_confidence: float = 0.0) -> torch.Tensor:
    """The training loss on a batch of `training_batches`.

    Without a classification branch: J(f, S) (= DeepLab's cross entropy ignoring 255). With one
    (AE-PSL online PSL): J(f, S) + `psl_weight`·J(f, Ŝ) + multi-label soft margin of the branch
    against the image labels; Ŝ from `online_psl_target` on the detached f and v, on every pixel
    but padding (`psl_pixels` "all", AE-PSL) or only where S is unsure ("unsure": Ŝ fills S's
    gaps and never overrides its labels), and only where f of Ŝ's class is at least
    `psl_confidence` (0: everywhere, AE-PSL). `psl_weight` 0 (warm-up) leaves J(f, Ŝ) out."""
    images, masks, labels = batch
    out = model(images)
    logits = out["out"]
    loss = labelled_cross_entropy(logits, masks)
    if "cls" in out:
        loss = loss + F.multilabel_soft_margin_loss(out["cls"], labels)
        if psl_weight > 0:
            probs = logits.detach().softmax(dim=1)
            target = online_psl_target(probs, out["cls"].detach().sigmoid(), labels)
            supervised = masks == UNSURE if psl_pixels == "unsure" else masks != IGNORE
            supervised &= probs.gather(1, target[:, None])[:, 0] >= psl_confidence
            loss = loss + psl_weight * labelled_cross_entropy(logits, torch.where(supervised, target, IGNORE))
    return loss


@dataclass
class OnlinePSL:
    """AE-PSL's loss with a warm-up (module docstring): `segmentation_loss` with J(f, Ŝ) left out
    for epochs < `start_epoch` (0-based) and weighted by `weight` from then on. `fit` calls
    `set_epoch` before each epoch (also after a resume), then the object as its loss function."""
    start_epoch: int
    weight: float = 1.0
    pixels: str = "all"
    confidence: float = 0.0
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __call__(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        weight = self.weight if self.epoch >= self.start_epoch else 0.0
        return segmentation_loss(model, batch, weight, self.pixels, self.confidence)


def predict_probs(model: torch.nn.Module, images: torch.Tensor, scales: Sequence[float]) -> torch.Tensor:
    """Softmax scores averaged over `scales` and horizontal flips, each at the input size.

    `images` float 0..255 B×3×H×W of one size; returns B×K×H×W (a probability per pixel).
    The multi-scale + flip sum is `multiscale_flip_sum`, shared with CAM inference."""
    return multiscale_flip_sum(lambda x: model(x)["out"].float().softmax(dim=1), images, scales) / (2 * len(scales))


def apply_confidence(probs: torch.Tensor, p: float) -> torch.Tensor:
    """AE-PSL §4 test threshold: argmax over classes (dim −3), and background (0) wherever the
    best probability is below `p`. `probs` K×H×W or B×K×H×W; returns uint8 of the spatial shape."""
    best, label = probs.max(dim=-3)
    return torch.where(best < p, 0, label).to(torch.uint8)


def labels_from_probs(image: np.ndarray, probs: np.ndarray, confidence: float,
                      crf: CRFParams | None = None) -> np.ndarray:
    """The predicted mask (uint8 H×W) from softmax scores K×H×W of the image (uint8 H×W×3 RGB):
    argmax, or with `crf` the dense CRF over all K classes (no image labels at test time) with
    unary −log probs; then `apply_confidence`'s rule: background where the best probability < p."""
    probs = np.asarray(probs, np.float32)
    labels = apply_confidence(torch.from_numpy(probs), confidence).numpy()
    if crf is not None:
        labels = np.where(probs.max(axis=0) < confidence, 0, crf_from_scores(image, probs, range(len(probs)), crf))
    return labels.astype(np.uint8)


@torch.inference_mode()
def validation_miou(model: torch.nn.Module, images: Sequence[torch.Tensor], masks: Sequence[np.ndarray],
                    device: torch.device) -> float:
    """Quick mIoU (percent) during training: single scale, no flip, argmax upsampled to each GT
    mask (uint8 H×W, 255 void). `images` float/uint8 3×h×w, any size. Leaves `model` in eval mode."""
    model.eval()
    num_classes = model.num_classes
    matrix = ConfusionMatrix(num_classes)
    for image, gt in zip(images, masks):
        logits = model(image[None].float().to(device))["out"]
        logits = F.interpolate(logits, size=gt.shape, mode="bilinear", align_corners=False)
        matrix.update(logits.argmax(dim=1)[0].to(torch.uint8).cpu().numpy(), gt)
    return matrix.miou()
