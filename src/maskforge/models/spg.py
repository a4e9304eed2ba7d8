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
- stagewise schedule (`cam.spg.start_epoch`): the first epochs train classification alone, the
  guidance BCEs enter from that epoch on (weight 0 before, 1 after; one poly schedule throughout).
  SPG's guidance is "self-produced" from *high-confidence* attention regions; the paper fine-tunes
  an ImageNet classifier, here the 1×1 classifier is fresh, so its attention at step 0 is noise and
  the masks it seeds are mostly background. With guidance from the first step the MSRC run (Lite0,
  5 epochs) collapsed: the last backbone level died (0.37% of units positive) and every CAM was 0.
- the guidance heads learn at the backbone's rate, as in the authors' code (exper/my_optim.py of
  xiaomengyc/SPG gives 10× only to parameters named "cls"; none of SPG's heads is): only the CAM
  classifier gets the project's 10×. At 10× (lr 0.03 on MSRC) the heads' BCE gradients were what
  drove the backbone collapse above.
- the backbone features feeding the heads are *not* detached: in SPG the guidance losses train the
  shared features (that is the method); detaching them would leave the CAM that of plain CAM.
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

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """CAMNet's groups (backbone at `lr`, classifier at 10×) plus the SPG-B/C heads at `lr`
        (the authors' optimizer: no 10× for the guidance heads)."""
        heads = [p for m in (self.heads, self.final_head) for p in m.parameters() if p.requires_grad]
        return [*super().param_groups(lr, weight_decay),
                {"name": "guidance", "params": heads, "lr": lr, "weight_decay": weight_decay}]


def spg_loss(model: SPGNet, images: Tensor, targets: Tensor, thresholds: tuple[tuple[float, float], tuple[float, float]],
             guided: bool = True) -> tuple[Tensor, dict[str, float]]:
    """SPG total loss: multi-label classification + masked BCE of each SPG-B head against the
    attention mask (δ `thresholds[0]`) + masked BCE of SPG-C against the mask of the fused SPG-B
    output (δ `thresholds[1]`). `images` are normalised. With `guided` False (the warm-up epochs
    before `cam.spg.start_epoch`) the guidance terms get weight 0: the loss and every gradient are
    the classification loss's (the heads still run, so every parameter takes part in each step, as
    DistributedDataParallel needs). Returns (loss, its parts, unweighted)."""
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
    loss = classification + (1.0 if guided else 0.0) * (sum(head_losses) + final)
    return loss, {"cls": classification.item(), "heads": float(sum(h.item() for h in head_losses)), "final": final.item()}
