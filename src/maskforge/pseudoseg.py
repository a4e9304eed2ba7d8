"""PseudoSeg (Zou et al., "PseudoSeg: Designing Pseudo Labels for Semantic Segmentation", ICLR 2021)
for a few pixel-labelled images plus many image-labelled ones.

Each step draws a batch of pixel-labelled crops and a batch of image-labelled crops (all train
images; their masks are not used). An image-labelled crop is seen twice: the weak view (random
rescale, flip, crop) and the strong view (the same pixels with colour jitter and a cut-out square,
§3.4), so the two align pixel by pixel. One forward pass of DeepLab (branch "pseudoseg") over the
three gives the decoder logits p, the image logits of the classification head on the decoder
features, and the self-attention Grad-CAM logits m (`maskforge.models.deeplab.SelfAttentionCAM`).

Pseudo label (§3.3, calibrated fusion), per pixel of the weak view, without gradient:
    y = sharpen(γ·softmax(p/N) + (1−γ)·softmax(m/N), T),   sharpen(q, T)_c = q_c^(1/T) / Σ_k q_k^(1/T),
N = Norm(p, m), one scale shared by both sources: the root mean square of p and m together over
the image's classes and pixels. (The authors' released code takes that RMS over the whole batch;
per image keeps an image's label independent of its batch-mates and of how DDP splits a batch.
A per-pixel L2 norm would flatten every pixel to near-uniform scores — max 0.15 over 16 classes
before sharpening — and the soft target would then teach low confidence.)

Loss = CE(p, mask) + CE(m, mask) on the pixel-labelled crops (the second trains the attention),
+ multi-label soft margin of the image logits on the weak views,
+ weight · mean over non-padding pixels of −Σ_c y_c log softmax(p_strong)_c, pixels whose max y is
below `threshold` contributing 0 (the authors' defaults: soft labels, T 0.5, threshold 0, weight 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from maskforge.augment import color_jitter, random_scale_flip_crop_pair
from maskforge.distributed import rank_share
from maskforge.metrics import IGNORE
from maskforge.segmentation import TrainingSet, labelled_cross_entropy, per_rank_batch, steps_per_epoch

__all__ = ["PseudoSegBatch", "PseudoSegParams", "consistency_loss", "cutout", "fuse_pseudo_label", "pseudoseg_batches",
           "pseudoseg_loss", "sharpen"]

# labelled images, their masks (255: void or padding), their image labels; weak views, strong views,
# the views' non-padding pixels, the views' image labels
PseudoSegBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class PseudoSegParams:
    gamma: float
    temperature: float
    threshold: float
    weight: float
    jitter: float
    cutout: float
    attention_dim: int

    @classmethod
    def from_params(cls, section: Mapping[str, Any]) -> "PseudoSegParams":
        return cls(**section)


def sharpen(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """q^(1/T) renormalised over dim 1, computed as softmax(log q / T) so T → 0 gives one-hot
    (ties aside) instead of overflowing; T = 1 returns q."""
    return torch.softmax(probs.clamp(min=1e-30).log() / temperature, dim=1)


def fuse_pseudo_label(decoder_logits: torch.Tensor, cam_logits: torch.Tensor, gamma: float,
                      temperature: float) -> torch.Tensor:
    """PseudoSeg §3.3: sharpen(γ·softmax(p/N) + (1−γ)·softmax(m/N), T) over dim 1 of B×K×H×W
    logits p (decoder) and m (self-attention Grad-CAM, same size), N the RMS of p and m together
    per image (module docstring). γ = 1 keeps the decoder's argmax, T → 0 gives one-hot labels."""
    both = torch.cat([decoder_logits, cam_logits], dim=1)
    norm = both.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp(min=1e-8)
    fused = gamma * (decoder_logits / norm).softmax(dim=1) + (1 - gamma) * (cam_logits / norm).softmax(dim=1)
    return sharpen(fused, temperature)


def consistency_loss(strong_logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                     threshold: float) -> torch.Tensor:
    """Soft cross entropy −Σ_c y_c log softmax(strong)_c per pixel, summed over the `valid`
    (non-padding, bool B×H×W) pixels whose max y ≥ `threshold`, divided by the number of valid
    pixels (the released code's normalisation); 0 when no pixel is valid."""
    per_pixel = -(target * F.log_softmax(strong_logits, dim=1)).sum(dim=1)
    kept = valid & (target.amax(dim=1) >= threshold)
    return (per_pixel * kept).sum() / valid.sum().clamp(min=1)


def cutout(image: torch.Tensor, fraction: float, rng: np.random.Generator) -> torch.Tensor:
    """A square of side `fraction` · the shorter image side, at a random place (it may reach past
    the border), filled with the image's mean colour (DeVries & Taylor 2017). C×H×W float."""
    side = round(fraction * min(image.shape[-2:]))
    if side == 0:
        return image
    h, w = image.shape[-2:]
    cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
    top, left = max(0, cy - side // 2), max(0, cx - side // 2)
    out = image.clone()
    out[:, top:cy - side // 2 + side, left:cx - side // 2 + side] = image.mean(dim=(1, 2), keepdim=True)
    return out


def pseudoseg_batches(labelled: TrainingSet, images: TrainingSet, params: PseudoSegParams, *, batch_size: int,
                      crop_size: int, scale_range: tuple[float, float], rng: np.random.Generator, rank: int = 0,
                      world_size: int = 1) -> Iterator[PseudoSegBatch]:
    """One epoch for rank `rank`: a pass over the image-labelled set `images` (its masks unused) in
    per-rank batches of batch_size/world_size, each paired with as many pixel-labelled crops of
    `labelled`, whose order is cycled (reshuffled every pass) as often as the epoch needs.

    Yields (labelled images B×3×c×c float, their masks long B×c×c (255: void or padding), their
    multi-hot labels, weak views, strong views, bool B×c×c non-padding of the views, the views'
    multi-hot labels)."""
    per_rank = per_rank_batch(batch_size, world_size)
    steps = steps_per_epoch(len(images.ids), batch_size, world_size)
    order = rng.permutation(len(images.ids))
    seeds = rng.integers(2**63 - 1, size=len(images.ids))
    needed = steps * batch_size
    passes = -(-needed // len(labelled.ids))
    labelled_order = np.concatenate([rng.permutation(len(labelled.ids)) for _ in range(passes)])[:needed]
    labelled_seeds = rng.integers(2**63 - 1, size=needed)
    share = rank_share(order, rank, world_size)
    for step in range(steps):
        chosen = share[step * per_rank:(step + 1) * per_rank]
        draws = rank_share(np.arange(step * batch_size, (step + 1) * batch_size), rank, world_size)[:per_rank]
        pixel = [random_scale_flip_crop_pair(labelled.images[labelled_order[d]].float(), labelled.masks[labelled_order[d]],
                                             crop_size, scale_range, np.random.default_rng(labelled_seeds[d]))
                 for d in draws]
        weak, strong, valid = [], [], []
        for i in chosen:
            view_rng = np.random.default_rng(seeds[i])
            view, padding = random_scale_flip_crop_pair(images.images[i].float(), torch.zeros_like(images.masks[i]),
                                                        crop_size, scale_range, view_rng)
            weak.append(view)
            strong.append(cutout(color_jitter(view, params.jitter, view_rng), params.cutout, view_rng))
            valid.append(padding != IGNORE)
        yield (torch.stack([c[0] for c in pixel]), torch.stack([c[1] for c in pixel]).long(),
               labelled.labels[torch.as_tensor(labelled_order[draws])], torch.stack(weak), torch.stack(strong),
               torch.stack(valid), images.labels[torch.as_tensor(chosen)])


def pseudoseg_loss(model: torch.nn.Module, batch: PseudoSegBatch, params: PseudoSegParams) -> torch.Tensor:
    """The PseudoSeg loss (module docstring) on a batch of `pseudoseg_batches`, one forward pass
    over [labelled; weak; strong] (the image labels select the Grad-CAM's classes)."""
    pixel_images, masks, pixel_labels, weak, strong, valid, labels = batch
    n, b = len(pixel_images), len(weak)
    out = model(torch.cat([pixel_images, weak, strong]), torch.cat([pixel_labels, labels, labels]))
    logits, cam_logits = out["out"], out["sgc"]
    cam_logits = F.interpolate(cam_logits, size=logits.shape[-2:], mode="bilinear", align_corners=False)
    supervised = labelled_cross_entropy(logits[:n], masks) + labelled_cross_entropy(cam_logits[:n], masks)
    classification = F.multilabel_soft_margin_loss(out["cls"][n:n + b], labels)
    with torch.no_grad():
        target = fuse_pseudo_label(logits[n:n + b], cam_logits[n:n + b], params.gamma, params.temperature)
    consistency = consistency_loss(logits[n + b:], target, valid, params.threshold)
    return supervised + classification + params.weight * consistency
