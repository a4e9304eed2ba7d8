"""ESOL: expansion and shrinkage of localisation (Li et al., "Expansion and Shrinkage of Localization
for Weakly-Supervised Semantic Segmentation", NeurIPS 2022). The authors published no code; this
is built from the paper's description (its abstract; the full text with its
equation numbers was not at hand, so no equation numbers are cited), and every detail that the
description leaves open is a choice of maskforge, marked *choice*.

The paper's scheme: a classifier's CAM is incomplete and inaccurate. In the *Expansion* stage an
"expansion sampler" — the offset branch of a deformable convolution after the backbone — is
trained with an inverse signal that *maximises* the image-level classification loss, so it
samples ever less discriminative regions while the network still has to classify from them:
the localisation grows (recall). Feature clipping keeps the game from being won by a few very
strong activations. In the *Shrinkage* stage the offset branch of a second deformable
convolution, the "shrinkage sampler", is trained with the ordinary classification loss to drop
the false-positive background the expansion attended (precision). Seeds come from the CAM after
the shrinkage sampler.

Choices:
- *choice* a sampler is `torchvision.ops.deform_conv2d` with a fixed depthwise 1×1 identity
  kernel, so it only moves where each position reads the feature map (one (dy, dx) per position,
  shared by all channels); zero offsets give the plain feature map. Its offsets come from a 3×3
  convolution of the detached features (zero-initialised: training starts from plain CAM) and
  are bounded by ``max_offset`` feature-map cells through tanh.
- *choice* three phases, each run with the CAM training schedule (poly LR, same augmentation):
  base CAM training (`cam.train.epochs`, identical to plain CAM), then expansion, then shrinkage
  (`cam.esol.expansion_epochs`, `cam.esol.shrinkage_epochs`).
- *choice* one expansion batch = one ascent step of the expansion sampler's offsets on the
  classification loss with everything else frozen (`expansion_step`), then one descent step of
  backbone and classifier on the classification loss of the sampled, clipped features with the
  sampler frozen (`expanded_classification_loss`). The offset branches learn at the classifier's
  10× rate, with plain SGD (no state, so a resumed run takes the same steps).
- *choice* feature clipping: every channel is clipped at ``clip_ratio`` × its spatial maximum in
  the image (detached), on the sampled features of the expansion stage only (a training device;
  inference reads unclipped features, as the base CAM does).
- *choice* the shrinkage stage trains only the shrinkage sampler's offsets (backbone and
  classifier frozen) on classification + ``area_weight`` × the mean of the labelled classes'
  max-normalised CAMs (`shrinkage_loss`): the classification term keeps what the classifier
  needs, the area term ("region" term) removes activation it does not need.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import deform_conv2d

from .backbones import Backbone
from .cam import CAMNet, CLASSIFIER_LR_MULT

__all__ = ["DeformableSampler", "ESOLNet", "clip_features", "expanded_classification_loss", "expansion_step",
           "shrinkage_loss"]


class DeformableSampler(nn.Module):
    """Deformable re-sampling of a feature map: out(p) = f(p + Δ(p)) by bilinear interpolation
    (deform_conv2d with a fixed depthwise 1×1 identity kernel), Δ = max_offset·tanh(conv3×3(f))."""

    def __init__(self, channels: int, max_offset: float) -> None:
        super().__init__()
        if max_offset <= 0:
            raise ValueError(f"max_offset must be > 0 feature cells, got {max_offset}")
        self.max_offset = max_offset
        self.offset = nn.Conv2d(channels, 2, 3, padding=1)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        self.register_buffer("kernel", torch.ones(channels, 1, 1, 1), persistent=False)

    def offsets(self, features: Tensor) -> Tensor:
        """Per-position (dy, dx) in feature cells, B×2×h×w; the branch reads detached features so
        that training through the sampler never reshapes the backbone to steer it."""
        return self.max_offset * torch.tanh(self.offset(features.detach()))

    def forward(self, features: Tensor) -> Tensor:
        return sample(features, self.offsets(features), self.kernel.to(features.dtype))


def sample(features: Tensor, offsets: Tensor, kernel: Tensor) -> Tensor:
    """deform_conv2d of `features` with a depthwise 1×1 `kernel` (C×1×1×1) at `offsets` B×2×h×w."""
    return deform_conv2d(features, offsets, kernel)


def clip_features(features: Tensor, ratio: float) -> Tensor:
    """Feature clipping: each channel of each image capped at `ratio` × its spatial max (detached).
    A ratio of 1 leaves non-negative features unchanged."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"clip_ratio must be in (0, 1], got {ratio}")
    ceiling = ratio * features.detach().amax(dim=(2, 3), keepdim=True)
    return torch.minimum(features, ceiling)


class ESOLNet(CAMNet):
    """CAMNet with an expansion and a shrinkage sampler after the last backbone level.

    `features` (hence `forward`, `class_maps`, `cams`, i.e. training of the base phase and all
    inference) read the backbone through the shrinkage sampler, which is the identity until the
    shrinkage stage trains it. The expansion sampler only acts in `expanded_logits`.
    """

    def __init__(self, backbone: Backbone, num_classes: int, freeze_bn: bool = False, *,
                 max_offset: float = 1.0) -> None:
        super().__init__(backbone, num_classes, freeze_bn)
        channels = backbone.feature_info.channels[-1]
        self.expansion = DeformableSampler(channels, max_offset)
        self.shrinkage = DeformableSampler(channels, max_offset)

    def features(self, x: Tensor) -> Tensor:
        return self.shrinkage(self.backbone(x)[-1])

    def expanded_logits(self, x: Tensor, clip_ratio: float) -> Tensor:
        """Image logits B×K of the expansion stage: backbone → expansion sampler → clipping → GAP → classifier."""
        return self.head(clip_features(self.expansion(self.backbone(x)[-1]), clip_ratio))

    def sampler_param_groups(self, sampler: DeformableSampler, lr: float) -> list[dict]:
        """One optimizer group: the offset branch of `sampler` at the classifier's 10× rate."""
        return [{"name": "offsets", "params": list(sampler.parameters()), "lr": CLASSIFIER_LR_MULT * lr,
                 "weight_decay": 0.0}]


def expanded_classification_loss(model: ESOLNet, images: Tensor, targets: Tensor, clip_ratio: float) -> Tensor:
    """Multi-label soft-margin loss of the expansion-stage logits (`images` normalised)."""
    return F.multilabel_soft_margin_loss(model.expanded_logits(images, clip_ratio), targets)


def expansion_step(model: ESOLNet, images: Tensor, targets: Tensor, optimizer: torch.optim.Optimizer,
                   clip_ratio: float) -> float:
    """Expansion stage (ESOL, "expansion sampler"): one gradient-*ascent* step of the expansion
    sampler's offsets on the classification loss, max_Δ L_cls, everything else frozen.
    `optimizer` must hold only `model.expansion`'s parameters. Returns the loss before the step."""
    frozen = [p for p in model.parameters() if p.requires_grad and not _belongs(p, model.expansion)]
    for p in frozen:
        p.requires_grad_(False)
    try:
        loss = expanded_classification_loss(model, images, targets, clip_ratio)
        optimizer.zero_grad(set_to_none=True)
        (-loss).backward()
        optimizer.step()
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return loss.item()


def shrinkage_loss(model: ESOLNet, images: Tensor, targets: Tensor, area_weight: float) -> Tensor:
    """Shrinkage stage (ESOL, "shrinkage sampler"): the objective each shrinkage step *descends*
    with an optimizer over the shrinkage sampler's offsets only (backbone and classifier as the
    expansion left them): multi-label soft margin of the logits through the shrinkage sampler
    + `area_weight` × mean over labelled classes of the mean of ReLU(CAM)/max (its area)."""
    class_maps = model.classifier(model.features(images))
    classification = F.multilabel_soft_margin_loss(class_maps.mean(dim=(2, 3)), targets)
    if area_weight == 0:
        return classification
    cams = F.relu(class_maps)
    normalised = cams / (cams.flatten(2).amax(dim=2)[:, :, None, None] + 1e-5)
    area = (normalised.mean(dim=(2, 3)) * targets).sum() / targets.sum().clamp(min=1)
    return classification + area_weight * area


def _belongs(parameter: nn.Parameter, module: nn.Module) -> bool:
    return any(parameter is p for p in module.parameters())
