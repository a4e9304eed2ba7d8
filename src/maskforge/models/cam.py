"""CAM classification network (Zhou et al., "Learning Deep Features for Discriminative
Localization", CVPR 2016): backbone → global average pooling → linear classifier.

The classifier is a bias-free 1×1 convolution, so the class activation map of class k is simply
the classifier applied at every position of the last feature map, and the image logit is its
spatial mean (GAP and a linear map commute):

    logits[b, k] = mean_{y,x} (W_k · f[b, :, y, x]) = W_k · GAP(f)[b]
"""

from __future__ import annotations

from torch import Tensor, nn
import torch.nn.functional as F

from .backbones import Backbone

__all__ = ["CAMNet"]

CLASSIFIER_LR_MULT = 10.0


class CAMNet(nn.Module):
    """Zhou et al. CVPR 2016 CAM: backbone → GAP → 1×1 conv classifier without bias.

    `num_classes` counts foreground classes only (K − 1 of a K-class segmentation label set).
    Inputs are normalised images (``backbone.normalize(images)``). With `freeze_bn` every
    BatchNorm layer of the backbone stays in eval mode (running statistics untouched) and its
    affine parameters are not trained — the usual setting for small CAM batches (IRN, AE-PSL).
    """

    def __init__(self, backbone: Backbone, num_classes: int, freeze_bn: bool = False) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be ≥ 1 (foreground classes), got {num_classes}")
        self.backbone = backbone
        self.num_classes = num_classes
        self.freeze_bn = freeze_bn
        self.classifier = nn.Conv2d(backbone.feature_info.channels[-1], num_classes, 1, bias=False)
        nn.init.xavier_uniform_(self.classifier.weight)
        if freeze_bn:
            for m in self._batchnorms():
                for p in m.parameters():
                    p.requires_grad_(False)
        self.train()

    def _batchnorms(self) -> list[nn.modules.batchnorm._BatchNorm]:
        return [m for m in self.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def features(self, x: Tensor) -> Tensor:
        """Last backbone level, B×C×h×w at the backbone's output stride."""
        return self.backbone(x)[-1]

    def class_maps(self, x: Tensor) -> Tensor:
        """Classifier applied at every position, before ReLU: B×K×h×w (logits are its mean)."""
        return self.classifier(self.features(x))

    def head(self, features: Tensor) -> Tensor:
        """Image-level logits B×K of last-level features: GAP, then the 1×1 classifier."""
        return self.classifier(features.mean(dim=(2, 3), keepdim=True)).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        """Image-level logits B×K: GAP of the last level, then the 1×1 classifier."""
        return self.head(self.features(x))

    def cams(self, x: Tensor) -> Tensor:
        """Class activation maps ReLU(classifier(features)), B×K×h×w at the output stride."""
        return F.relu(self.class_maps(x))

    def new_layers(self) -> list[nn.Module]:
        """The freshly initialised layers (not from the backbone's weights)."""
        return [self.classifier]

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """Optimizer groups: backbone at `lr`, the freshly initialised layers at 10×`lr`
        (the AE-PSL / IRN / SEAM practice). Only trainable parameters; each appears exactly once."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        new = [p for m in self.new_layers() for p in m.parameters() if p.requires_grad]
        return [
            {"name": "backbone", "params": backbone, "lr": lr, "weight_decay": weight_decay},
            {"name": "classifier", "params": new, "lr": CLASSIFIER_LR_MULT * lr, "weight_decay": weight_decay},
        ]

    def train(self, mode: bool = True) -> "CAMNet":
        super().train(mode)
        if self.freeze_bn:
            for m in self._batchnorms():
                m.eval()
        return self
