"""SEAM's training objective (Wang et al., CVPR 2020, §3.2-3.4): siamese classification,
equivariant regularisation (ER) and equivariant cross-regularisation (ECR).

The siamese branch sees the crop under the affine transform A = rescale by `rescale` (SEAM: 0.3).
Both branches' maps are compared on the transformed branch's image grid: the original branch's
maps are transformed by A (resized onto that grid), the transformed branch's maps upsampled to
it. Maps are max-normalised, classes absent from the image zeroed, and a background map
1 − max of the foreground maps prepended.

    ER  = ‖A(ŷ_o) − ŷ_t‖₁                                  (eq. 4, background included)
    ECR = ‖PCM(A(ŷ_o)) − onehot(ŷ_t)‖₁ + ‖PCM(ŷ_t) − onehot(A(ŷ_o))‖₁   (eq. 8)
    loss = (cls_o + cls_t)/2 + w_ER · ER + w_ECR · ECR

ECR's targets are the other branch's raw CAM, detached, with only the strongest foreground class
kept per pixel, and each term averages the largest `ecr_top_fraction` of its pixel errors (the
online hard-example mining of SEAM's released code). SEAM's code adds an "adaptive min pooling"
term that its authors note does not change the best result; it is left out, as in the paper.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from maskforge.models.seam import max_normalise, strongest_class_only, with_background

__all__ = ["equivariant_regularisation", "equivariant_cross_regularisation", "seam_loss", "seam_terms"]


def _on_grid(maps: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def normalised_with_background(class_maps: Tensor, labels: Tensor, size: tuple[int, int]) -> Tensor:
    """Pre-ReLU class maps B×K×h×w → max-normalised B×(K+1)×size, absent classes zeroed, background first."""
    return with_background(_on_grid(max_normalise(class_maps), size) * labels[:, :, None, None])


def equivariant_regularisation(transformed_original: Tensor, of_transformed: Tensor) -> Tensor:
    """ER (SEAM eq. 4): mean |A(ŷ_o) − ŷ_t| over classes (background included) and pixels."""
    return (transformed_original - of_transformed).abs().mean()


def equivariant_cross_regularisation(refined: Tensor, other_raw: Tensor, top_fraction: float) -> Tensor:
    """One ECR term (SEAM eq. 8): |PCM output of one branch − the other branch's raw CAM (detached,
    strongest class only)|, averaged over the largest `top_fraction` of entries per image."""
    errors = (refined - strongest_class_only(other_raw.detach())).abs().flatten(1)
    k = max(1, int(errors.shape[1] * top_fraction))
    return errors.topk(k, dim=1).values.mean()


def seam_terms(model: torch.nn.Module, images: Tensor, labels: Tensor, rescale: float,
               top_fraction: float) -> dict[str, Tensor]:
    """The three SEAM terms for normalised `images` B×3×H×W and multi-hot `labels` B×K:
    {"cls", "er", "ecr"}. `model.siamese_outputs(x)` → (pre-ReLU maps B×K×h×w, PCM-refined
    B×(K+1)×h×w)."""
    transformed = F.interpolate(images, scale_factor=rescale, mode="bilinear", align_corners=False,
                                recompute_scale_factor=False)
    grid = tuple(transformed.shape[-2:])
    maps_o, refined_o = model.siamese_outputs(images)
    maps_t, refined_t = model.siamese_outputs(transformed)
    cls = (F.multilabel_soft_margin_loss(maps_o.mean(dim=(2, 3)), labels)
           + F.multilabel_soft_margin_loss(maps_t.mean(dim=(2, 3)), labels)) / 2
    y_o = normalised_with_background(maps_o, labels, grid)            # A(ŷ_o)
    y_t = normalised_with_background(maps_t, labels, grid)            # ŷ_t
    with_bg_label = torch.cat([torch.ones_like(labels[:, :1]), labels], dim=1)[:, :, None, None]
    pcm_o = _on_grid(max_normalise(refined_o), grid) * with_bg_label  # PCM(A(ŷ_o))
    pcm_t = _on_grid(max_normalise(refined_t), grid) * with_bg_label  # PCM(ŷ_t)
    ecr = (equivariant_cross_regularisation(pcm_o, y_t, top_fraction)
           + equivariant_cross_regularisation(pcm_t, y_o, top_fraction))
    return {"cls": cls, "er": equivariant_regularisation(y_o, y_t), "ecr": ecr}


def seam_loss(knobs: Mapping[str, Any]) -> Callable[[torch.nn.Module, tuple[Tensor, ...]], Tensor]:
    """The training loss of the `cam.seam` knobs: cls + er_weight·ER + ecr_weight·ECR on a batch
    (float 0..255 images B×3×S×S, multi-hot labels B×K)."""
    def loss(model: torch.nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        images, labels = batch
        terms = seam_terms(model, model.backbone.normalize(images), labels, knobs["rescale"], knobs["ecr_top_fraction"])
        return terms["cls"] + knobs["er_weight"] * terms["er"] + knobs["ecr_weight"] * terms["ecr"]
    return loss
