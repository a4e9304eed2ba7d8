"""SPG: self-produced guidance (Zhang et al., "Self-produced Guidance for Weakly-supervised Object
Localization", ECCV 2018), adapted from box localisation to segmentation seeds.

SPG thresholds the classifier's own attention map into a three-valued guidance mask — foreground
where attention > δh, background where < δl, ignored in between — and uses it as pixel
supervision with a masked binary cross-entropy: the attention mask (δ 0.5/0.05) supervises
class-agnostic heads on earlier levels (SPG-B), and the mask made from their fused output
(δ 0.7/0.1) supervises a later map (SPG-C). The total loss is classification + all guidance
losses; only the classification network's attention is used at inference.

Choices of this adaptation (the paper puts SPG-B on two blocks of its classification part and
SPG-C on the stem features):
- the attention map is the CAM of the image's labelled classes, ReLU'd, divided by its max per
  class and maxed over classes (class-agnostic, as SPG's mask is), at the last level, detached;
- the two SPG-B heads read backbone levels 2 and 3 (reductions 8 and 16); each is three
  convolutions (3×3, 3×3, 1×1 → one logit) as in SPG-B;
- the fused guidance is the mean of the two heads' sigmoids, bilinearly resized to the last level;
  its mask supervises SPG-C, a head of the same form on the *last* level — the features the
  classifier reads — instead of on the stem, so the guidance shapes the features the CAM is made
  of. (Supervising the class maps themselves, i.e. the max over labelled classes of the pre-ReLU
  maps as a foreground logit, was tried first: on MSRC it drove every class map negative — the
  fused mask is mostly background — and all CAMs were zero.)
- guidance is on from the first step (SPG's stagewise schedule is implicit here: the classifier
  learns at 10× the backbone rate, and the fused mask only labels confident pixels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbones import Backbone
from .cam import CAMNet

__all__ = ["IGNORE", "SPGNet", "guidance_mask", "labelled_attention", "masked_bce", "spg_loss"]

IGNORE = 255
HEAD_LEVELS = (1, 2)  # backbone levels (0-based, shallow → deep) read by the two SPG-B heads
                      # (SPG-C reads the last level)
HEAD_WIDTH = 64       # channels of the SPG-B heads' hidden convolutions


def guidance_mask(attention: Tensor, high: float, low: float) -> Tensor:
    """SPG guidance mask: 1 where attention > `high`, 0 where < `low`, IGNORE (255) in between (uint8)."""
    if not 0.0 <= low < high <= 1.0:
        raise ValueError(f"guidance thresholds need 0 ≤ low < high ≤ 1, got low={low}, high={high}")
    mask = torch.full_like(attention, IGNORE, dtype=torch.uint8)
    mask[attention > high] = 1
    mask[attention < low] = 0
    return mask


def masked_bce(logits: Tensor, mask: Tensor) -> Tensor:
    """SPG's ignore-aware binary cross-entropy: mean over pixels whose mask is 0 or 1; pixels
    marked IGNORE contribute neither loss nor gradient. Zero when every pixel is ignored."""
    valid = mask != IGNORE
    if not valid.any():
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[valid], mask[valid].to(logits.dtype))


def labelled_attention(class_maps: Tensor, targets: Tensor) -> Tensor:
    """Class-agnostic attention B×h×w in [0, 1] from class maps B×K×h×w of images with multi-hot
    `targets`: the max over labelled classes of ReLU(map) / max(map). Unlabelled classes are
    excluded; an image without labels gets attention 0 everywhere."""
    cams = F.relu(class_maps)
    normalised = cams / (cams.flatten(2).amax(dim=2)[:, :, None, None] + 1e-5)
    return (normalised * (targets[:, :, None, None] > 0)).amax(dim=1)


class _GuidanceHead(nn.Sequential):
    """SPG-B/C block: 3×3 conv → ReLU → 3×3 conv → ReLU → 1×1 conv to one foreground logit."""

    def __init__(self, channels: int) -> None:
        super().__init__(
            nn.Conv2d(channels, HEAD_WIDTH, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(HEAD_WIDTH, HEAD_WIDTH, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(HEAD_WIDTH, 1, 1),
        )


class SPGNet(CAMNet):
    """CAMNet plus the two SPG-B guidance heads on backbone levels 2 and 3 and SPG-C on the last
    level (training only: `cams` and `forward` are CAMNet's, so inference and AE rounds are
    unchanged)."""

    def __init__(self, backbone: Backbone, num_classes: int, freeze_bn: bool = False) -> None:
        super().__init__(backbone, num_classes, freeze_bn)
        self.heads = nn.ModuleList(_GuidanceHead(backbone.feature_info.channels[i]) for i in HEAD_LEVELS)
        self.final_head = _GuidanceHead(backbone.feature_info.channels[-1])

    def guided_outputs(self, x: Tensor) -> tuple[Tensor, Tensor, list[Tensor], Tensor]:
        """One backbone pass: image logits B×K, class maps B×K×h×w, the SPG-B logits B×h_i×w_i
        and the SPG-C logit B×h×w."""
        levels = self.backbone(x)
        class_maps = self.classifier(levels[-1])
        head_logits = [head(levels[i])[:, 0] for head, i in zip(self.heads, HEAD_LEVELS)]
        return self.head(levels[-1]), class_maps, head_logits, self.final_head(levels[-1])[:, 0]

    def new_layers(self) -> list[nn.Module]:
        """The classifier and the fresh SPG-B/C heads (all at the classifier's 10× rate)."""
        return [self.classifier, self.heads, self.final_head]


def spg_loss(model: SPGNet, images: Tensor, targets: Tensor, thresholds: tuple[tuple[float, float], tuple[float, float]]
             ) -> tuple[Tensor, dict[str, float]]:
    """SPG total loss: multi-label classification + masked BCE of each SPG-B head against the
    attention mask (δ `thresholds[0]`) + masked BCE of SPG-C against the mask of the fused SPG-B
    output (δ `thresholds[1]`). `images` are normalised. Returns (loss, its parts)."""
    logits, class_maps, head_logits, final_logit = model.guided_outputs(images)
    classification = F.multilabel_soft_margin_loss(logits, targets)
    attention = labelled_attention(class_maps, targets).detach()
    (high_b, low_b), (high_c, low_c) = thresholds
    size = attention.shape[-2:]
    head_losses = []
    for logit in head_logits:
        resized = F.interpolate(attention[:, None], size=logit.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        head_losses.append(masked_bce(logit, guidance_mask(resized, high_b, low_b)))
    fused = torch.stack([F.interpolate(torch.sigmoid(l)[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
                         for l in head_logits]).mean(dim=0).detach()
    final = masked_bce(final_logit, guidance_mask(fused, high_c, low_c))
    loss = classification + sum(head_losses) + final
    return loss, {"cls": classification.item(), "heads": float(sum(h.item() for h in head_losses)), "final": final.item()}
