"""IRN's class-boundary branch (Ahn et al., CVPR 2019, §3; IRN net/resnet50_irn.py `fc_edge*`).

The backbone is frozen (no gradients, BatchNorm in eval mode, features detached as in IRN). Each
backbone level goes through a 1×1 conv + GroupNorm, is upsampled to the shallowest level's
resolution (stride 4) and passed through ReLU; the levels are concatenated and a 1×1 conv with
bias gives one logit per position; its sigmoid is the class-boundary map B at stride 4.

    net = BoundaryNet(create_backbone("efficientnet_lite0", "imagenet", 16))
    boundary = net(net.backbone.normalize(images))          # B×⌈H/4⌉×⌈W/4⌉ in (0, 1)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbones import Backbone

__all__ = ["BoundaryNet"]

WIDTH = 32    # IRN: 32 channels per level
GROUPS = 4    # IRN: GroupNorm(4, 32)


class BoundaryNet(nn.Module):
    """Class-boundary detection on a frozen backbone; `forward` returns B at stride 4 (B×h×w)."""

    def __init__(self, backbone: Backbone, width: int = WIDTH, groups: int = GROUPS) -> None:
        super().__init__()
        if backbone.feature_info.reductions[0] != 4:
            raise ValueError(f"the shallowest backbone level must have reduction 4, got {backbone.feature_info.reductions}")
        self.backbone = backbone
        for p in backbone.parameters():
            p.requires_grad_(False)
        self.levels = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, width, 1, bias=False), nn.GroupNorm(groups, width))
            for channels in backbone.feature_info.channels)
        self.fuse = nn.Conv2d(width * len(self.levels), 1, 1, bias=True)
        self.train()

    def train(self, mode: bool = True) -> "BoundaryNet":
        super().train(mode)
        self.backbone.eval()           # frozen: BatchNorm statistics never move
        return self

    def logits(self, x: Tensor) -> Tensor:
        """Boundary logits B×h×w (h×w = the stride-4 level's size) of normalised images B×3×H×W."""
        with torch.no_grad():
            features = self.backbone(x)
        size = features[0].shape[-2:]
        maps = [F.relu(F.interpolate(level(f), size=size, mode="bilinear", align_corners=False))
                for level, f in zip(self.levels, features)]
        return self.fuse(torch.cat(maps, dim=1))[:, 0]

    def forward(self, x: Tensor) -> Tensor:
        """The class-boundary map B = sigmoid(logits), B×h×w in (0, 1)."""
        return torch.sigmoid(self.logits(x))

    @torch.inference_mode()
    def boundary_with_flip(self, x: Tensor) -> Tensor:
        """IRN's inference boundary (EdgeDisplacement): sigmoid of the mean of the logits of the
        image and of its horizontal flip (flipped back), B×h×w."""
        both = self.logits(torch.cat([x, x.flip(-1)]))
        b = x.shape[0]
        return torch.sigmoid((both[:b] + both[b:].flip(-1)) / 2)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The branch's parameters (the backbone's are frozen)."""
        return [p for p in self.parameters() if p.requires_grad]
