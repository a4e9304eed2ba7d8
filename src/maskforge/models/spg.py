"""SPG: self-produced guidance (Zhang et al., "Self-produced Guidance for Weakly-supervised Object
Localization", ECCV 2018), adapted from box localisation to segmentation seeds.

SPG thresholds the classifier's own attention map into a three-valued guidance mask — foreground
where attention > δh, background where < δl, ignored in between — and uses it as pixel
supervision with a masked binary cross-entropy. As the authors' code (xiaomengyc/SPG,
models/google/inception3_spg.py, get_loss) cascades it: the attention mask (δ 0.7/0.05)
supervises the deeper SPG-B head (B2), B2's sigmoid mask (δ 0.5/0.05) the shallower one (B1),
and the mask of their fused (mean) sigmoids (δ 0.7/0.1) supervises SPG-C on the features the
classifier reads. Every mask and BCE is at the input resolution (maps upsampled bilinearly), a
map with nothing above δh takes 0.7 × its max instead (their mark_obj), the attention is each
labelled class map min-max normalised (their normalize_atten_maps; no ReLU), and the total loss
is classification + the three guidance losses, weights 1. Only the classification network's map
is used at inference (their get_localization_maps).

Choices of this adaptation:
- the attention is the max over the image's labelled classes (class-agnostic, as SPG's mask is;
  the authors' images have one label), detached;
- B1 and B2 read backbone levels 2 and 3 (reductions 8 and 16); each is three convolutions
  (3×3, 3×3, 1×1 → one logit); SPG-C, of the same form, reads the *last* level — the features the
  1×1 CAM classifier reads (the authors' SPG-C reads their classification branch's fc7 features,
  which feed their classifier);
- multi-label soft-margin classification (the authors': single-label cross-entropy);
- stagewise schedule (`cam.spg.start_epoch`): the first epochs train classification alone, the
  guidance BCEs enter from that epoch on (weight 0 before, 1 after; one poly schedule throughout).
  The paper fine-tunes an ImageNet classifier; here the 1×1 classifier is fresh, so its attention
  at step 0 is noise. With guidance from the first step the MSRC run (Lite0, 5 epochs) collapsed:
  the last backbone level died (0.37% of units positive) and every CAM was 0;
- the guidance heads learn at the backbone's rate (the authors' optimizer gives 10× only to their
  classifier); only the CAM classifier gets the project's 10×. At 10× (lr 0.03 on MSRC) the heads'
  BCE gradients drove the backbone collapse above;
- the backbone features feeding the heads are *not* detached: in SPG the guidance losses train the
  shared features (that is the method).
(Supervising the class maps themselves with the fused mask was tried first: on MSRC it drove every
class map negative and all CAMs were zero.)

Measured on MSRC (configs/msrc.yaml; numbers in params.yaml, cam.spg): the seeds equal plain CAM's
within the seed spread, because the guidance degenerates. On the min-max attention almost nothing
is below δl = 0.05 (0.2-0.3% of pixels), so B2 learns "foreground everywhere", B1 and SPG-C copy
it (sigmoids > 0.95 on every pixel) and after the first guided epoch the guidance BCEs are ~0.
Normalising the attention as the CAM is at inference (ReLU / max) instead makes masks with real
background (20-54% of pixels) but 14-26% of those are object, and the loop through SPG-C — which
reads the CAM's own features — shrinks the CAM (best τ 0.05) or, with this cascade, kills it
(the guidance's backbone gradient was 4.7× the classification loss's; with the guidance weighted
1/K the ReLU/max form no longer collapses but is again plain CAM's 38.9). Single-seed ablations of
this form (no cascade, masks at feature resolution, no fallback) all stay at 39.1-39.4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbones import Backbone
from .cam import CAMNet

__all__ = ["IGNORE", "SPGNet", "guidance_losses", "guidance_mask", "labelled_attention", "masked_bce", "seed_mask",
           "spg_loss"]

IGNORE = 255
HEAD_LEVELS = (1, 2)  # backbone levels (0-based, shallow → deep) of SPG-B1 and SPG-B2
                      # (SPG-C reads the last level)
HEAD_WIDTH = 64       # channels of the SPG-B heads' hidden convolutions
FALLBACK_RATIO = 0.7  # authors' code: a map with (almost) nothing above δh gets δh = 0.7 × its max


def guidance_mask(attention: Tensor, high: float, low: float) -> Tensor:
    """SPG guidance mask: 1 where attention > `high`, 0 where < `low`, IGNORE (255) in between (uint8)."""
    if not 0.0 <= low < high <= 1.0:
        raise ValueError(f"guidance thresholds need 0 ≤ low < high ≤ 1, got low={low}, high={high}")
    mask = torch.full_like(attention, IGNORE, dtype=torch.uint8)
    mask[attention > high] = 1
    mask[attention < low] = 0
    return mask


def seed_mask(maps: Tensor, high: float, low: float) -> Tensor:
    """`guidance_mask` of each map of B×h×w `maps` with the authors' fallback (xiaomengyc/SPG,
    mark_obj): an image none of whose pixels exceeds `high` takes foreground above
    FALLBACK_RATIO × its own max instead (their rule: fewer than 30 of 224² pixels, i.e. less
    than one cell of these maps), so a head whose sigmoid is still below δh everywhere still
    passes on its most confident region. Background (< `low`) wins where the two overlap."""
    mask = guidance_mask(maps, high, low)
    peak = maps.flatten(1).amax(dim=1)
    for b in torch.nonzero(peak <= high).flatten().tolist():
        mask[b][maps[b] > FALLBACK_RATIO * peak[b]] = 1
        mask[b][maps[b] < low] = 0
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
    `targets`: each labelled class map min-max normalised over its image (the authors'
    normalize_atten_maps: (map − min) / (max − min), on the raw, un-ReLU'd map), then the max over
    labelled classes. Unlabelled classes are excluded; an image without labels gets attention 0."""
    flat = class_maps.flatten(2)
    low, high = flat.amin(dim=2)[:, :, None, None], flat.amax(dim=2)[:, :, None, None]
    normalised = (class_maps - low) / (high - low + 1e-5)
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
    """CAMNet plus the SPG-B guidance heads B1 and B2 on backbone levels 2 and 3 and SPG-C on the
    last level (training only: `cams` and `forward` are CAMNet's, so inference and AE rounds are
    unchanged)."""

    def __init__(self, backbone: Backbone, num_classes: int, freeze_bn: bool = False) -> None:
        super().__init__(backbone, num_classes, freeze_bn)
        self.heads = nn.ModuleList(_GuidanceHead(backbone.feature_info.channels[i]) for i in HEAD_LEVELS)
        self.final_head = _GuidanceHead(backbone.feature_info.channels[-1])

    def guided_outputs(self, x: Tensor) -> tuple[Tensor, Tensor, list[Tensor], Tensor]:
        """One backbone pass: image logits B×K, class maps B×K×h×w, the SPG-B logits [B1, B2]
        (B×h_i×w_i, shallow → deep) and the SPG-C logit B×h×w."""
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


Thresholds = tuple[tuple[float, float], tuple[float, float], tuple[float, float]]


def guidance_losses(class_maps: Tensor, targets: Tensor, shallow: Tensor, deep: Tensor, final: Tensor,
                    size: tuple[int, int], thresholds: Thresholds) -> tuple[Tensor, Tensor, Tensor]:
    """SPG's guidance cascade (xiaomengyc/SPG, Inception3.get_loss), every map upsampled
    bilinearly to `size` (the input's) and every mask made from detached maps with `seed_mask`:
    the attention's mask (δ `thresholds[0]`; authors 0.7/0.05) supervises the deep SPG-B head
    (B2), B2's sigmoid mask (δ `thresholds[1]`; 0.5/0.05) the shallow one (B1), the mask of the
    mean of both sigmoids (δ `thresholds[2]`; 0.7/0.1) SPG-C. Returns the masked BCEs
    (B2, B1, C); logits are B×h×w at any resolution."""
    def up(x: Tensor) -> Tensor:
        return F.interpolate(x[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]

    attention_t, head_t, fused_t = thresholds
    attention = up(labelled_attention(class_maps, targets).detach())
    shallow, deep, final = up(shallow), up(deep), up(final)
    deep_loss = masked_bce(deep, seed_mask(attention, *attention_t))
    deep_prob = torch.sigmoid(deep.detach())
    shallow_loss = masked_bce(shallow, seed_mask(deep_prob, *head_t))
    fused = (torch.sigmoid(shallow.detach()) + deep_prob) / 2
    return deep_loss, shallow_loss, masked_bce(final, seed_mask(fused, *fused_t))


def spg_loss(model: SPGNet, images: Tensor, targets: Tensor, thresholds: Thresholds,
             guided: bool = True) -> tuple[Tensor, dict[str, float]]:
    """SPG total loss: multi-label classification + the three `guidance_losses`, all weights 1
    (authors' code). `images` are normalised. With `guided` False (the warm-up epochs before
    `cam.spg.start_epoch`) the guidance terms get weight 0: the loss and every gradient are the
    classification loss's (the heads still run, so every parameter takes part in each step, as
    DistributedDataParallel needs). Returns (loss, its parts, unweighted)."""
    logits, class_maps, (shallow, deep), final = model.guided_outputs(images)
    classification = F.multilabel_soft_margin_loss(logits, targets)
    deep_loss, shallow_loss, final_loss = guidance_losses(class_maps, targets, shallow, deep, final,
                                                          images.shape[-2:], thresholds)
    heads = deep_loss + shallow_loss
    loss = classification + (1.0 if guided else 0.0) * (heads + final_loss)
    return loss, {"cls": classification.item(), "heads": heads.item(), "final": final_loss.item()}
