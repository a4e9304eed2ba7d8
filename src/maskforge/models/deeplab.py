"""DeepLabV3 (Chen et al., "Rethinking Atrous Convolution for Semantic Image Segmentation", 2017)
on maskforge's backbones: torchvision's `DeepLabV3` class with its `DeepLabHead` (ASPP, then a
3×3 conv and the 1×1 classifier), logits bilinearly upsampled to the input size.

The backbone is any `create_backbone(...)` result; a small adapter hands torchvision its deepest
level as ``{"out": features}``. With ResNet-50/101 at output stride 8 and ASPP rates (12, 24, 36)
this is torchvision's DeepLabV3-ResNet (its `deeplabv3_resnet50/101` without the aux head); at
output stride 16 the ASPP rates are the paper's (6, 12, 18).

Optional AE-PSL classification branch (Wei et al., CVPR 2017, §3.2): global average pooling of
the same deepest level → 1×1 conv → K−1 image-level logits (v = sigmoid of them), used by
`maskforge.segmentation.online_psl_target` to build the online label Ŝ.
"""

from __future__ import annotations

from torch import Tensor, nn
import torch.nn.functional as F
from torchvision.models.segmentation import DeepLabV3
from torchvision.models.segmentation.deeplabv3 import DeepLabHead

from .backbones import Backbone

__all__ = ["ASPP_RATES", "DeepLab", "HEAD_LR_MULT"]

HEAD_LR_MULT = 10.0
ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 36), 32: (3, 6, 9)}   # DeepLabV3 §4: rates double when OS halves


class _DeepestLevel(nn.Module):
    """torchvision's backbone contract: 0..255 RGB B×3×H×W → {"out": deepest feature level}."""

    def __init__(self, body: Backbone) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {"out": self.body(self.body.normalize(x))[-1]}


class DeepLab(DeepLabV3):
    """torchvision DeepLabV3 + DeepLabHead on a maskforge backbone; optional PSL classification branch.

    ``forward(images)`` takes float (or uint8) RGB in 0..255, B×3×H×W (normalisation is inside,
    so a DistributedDataParallel wrapper sees the whole computation), and returns
    ``{"out": B×K×H×W segmentation logits}`` plus, with `psl`, ``"cls"``: B×(K−1) image logits.
    `num_classes` K counts background.
    """

    def __init__(self, backbone: Backbone, num_classes: int, psl: bool = False) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be ≥ 2 (background + one class), got {num_classes}")
        channels = backbone.feature_info.channels[-1]
        super().__init__(_DeepestLevel(backbone), DeepLabHead(channels, num_classes, ASPP_RATES[backbone.output_stride]))
        self.num_classes = num_classes
        self.psl = psl
        self.psl_classifier = nn.Conv2d(channels, num_classes - 1, 1) if psl else None

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        features = self.backbone(x)["out"]
        logits = F.interpolate(self.classifier(features), size=x.shape[-2:], mode="bilinear", align_corners=False)
        out = {"out": logits}
        if self.psl_classifier is not None:
            out["cls"] = self.psl_classifier(features.mean(dim=(2, 3), keepdim=True)).flatten(1)
        return out

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """SGD groups: the pretrained backbone at `lr`, the fresh ASPP head (and PSL branch) at
        10×`lr` (DeepLab / AE-PSL practice). Trainable parameters only, each exactly once."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        head = [p for name, p in self.named_parameters() if not name.startswith("backbone.") and p.requires_grad]
        return [
            {"name": "backbone", "params": backbone, "lr": lr, "weight_decay": weight_decay},
            {"name": "head", "params": head, "lr": HEAD_LR_MULT * lr, "weight_decay": weight_decay},
        ]
