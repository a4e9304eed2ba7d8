"""DeepLabV3 (Chen et al., "Rethinking Atrous Convolution for Semantic Image Segmentation", 2017)
on maskforge's backbones: torchvision's `DeepLabV3` class with its `DeepLabHead` (ASPP, then a
3×3 conv and the 1×1 classifier), logits bilinearly upsampled to the input size.

The backbone is any `create_backbone(...)` result; a small adapter hands torchvision its deepest
level as ``{"out": features}``. With ResNet-50/101 at output stride 8 and ASPP rates (12, 24, 36)
this is torchvision's DeepLabV3-ResNet (its `deeplabv3_resnet50/101` without the aux head); at
output stride 16 the ASPP rates are the paper's (6, 12, 18).

Optional branches (`branch`):
- "psl", AE-PSL's classification branch (Wei et al., CVPR 2017, §3.2): global average pooling of
  the same deepest level → 1×1 conv → K−1 image-level logits (v = sigmoid of them), used by
  `maskforge.segmentation.online_psl_target` to build the online label Ŝ.
- "pseudoseg", PseudoSeg's (Zou et al., ICLR 2021, §3.2) classification head on the decoder
  features (the DeepLabHead activations before its 1×1 classifier) and its self-attention Grad-CAM
  (`SelfAttentionCAM`), given the image labels: ``forward(x, labels)`` adds ``"sgc"``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
import torch.nn.functional as F
from torchvision.models.segmentation import DeepLabV3
from torchvision.models.segmentation.deeplabv3 import DeepLabHead

from .backbones import Backbone

__all__ = ["ASPP_RATES", "BRANCHES", "DeepLab", "HEAD_LR_MULT", "SelfAttentionCAM", "grad_cam"]

HEAD_LR_MULT = 10.0
ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 36), 32: (3, 6, 9)}   # DeepLabV3 §4: rates double when OS halves
BRANCHES = ("psl", "pseudoseg")


class _DeepestLevel(nn.Module):
    """torchvision's backbone contract: 0..255 RGB B×3×H×W → {"out": deepest feature level}."""

    def __init__(self, body: Backbone) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {"out": self.body(self.body.normalize(x))[-1]}


def grad_cam(features: Tensor, weight: Tensor, labels: Tensor) -> Tensor:
    """Grad-CAM (Selvaraju et al. 2017) of a global-average-pooling + linear head, per labelled class.

    For logits y_c = w_c · mean_u A_u the gradient ∂y_c/∂A_u = w_c/|u| is the same at every u, so
    Grad-CAM's channel weights are w_c/|u| and ReLU(Σ_k α_ck A_k) is ReLU(w_c · A) up to a positive
    factor (their §3.1: Grad-CAM generalises CAM); computed in closed form, no backward pass.
    `features` A B×C×h×w, `weight` (K−1)×C, `labels` B×(K−1) multi-hot. Each labelled class's map
    is divided by its maximum (PseudoSeg: scores in [0, 1]); unlabelled classes are 0. B×(K−1)×h×w."""
    cam = F.relu(torch.einsum("bchw,kc->bkhw", features, weight)) * labels[:, :, None, None]
    return cam / cam.amax(dim=(2, 3), keepdim=True).clamp(min=1e-5)


class SelfAttentionCAM(nn.Module):
    """PseudoSeg's self-attention Grad-CAM (SGC, Zou et al. 2021, §3.2): a Grad-CAM refined by
    attention between pixels.

    Query and key are 1×1 projections (no bias) of the detached feature maps `context`
    (hypercolumn B×C×h×w); A = softmax(q kᵀ/√d) over pixels; the refined scores are A·cam + cam
    (skip connection, each class in [0, 2]), a background score 2 − max over classes is put in
    front, and a 1×1 conv maps the K scores to the logits m (initialised to the identity, so m
    starts as the refined map itself). Trained by cross entropy on the pixel-labelled images.
    """

    def __init__(self, context_channels: int, num_classes: int, dim: int) -> None:
        super().__init__()
        self.query = nn.Conv2d(context_channels, dim, 1, bias=False)
        self.key = nn.Conv2d(context_channels, dim, 1, bias=False)
        self.to_logits = nn.Conv2d(num_classes, num_classes, 1)
        nn.init.eye_(self.to_logits.weight.view(num_classes, num_classes))
        nn.init.zeros_(self.to_logits.bias)

    def forward(self, context: Tensor, cam: Tensor) -> Tensor:
        """`context` B×C×h×w, `cam` B×(K−1)×h×w in [0, 1] → logits m B×K×h×w."""
        b, _, h, w = cam.shape
        context, cam = context.detach(), cam.detach()
        q = self.query(context).flatten(2)                                  # B×d×hw
        k = self.key(context).flatten(2)
        attention = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(q.shape[1]), dim=-1)   # B×hw×hw
        refined = (cam.flatten(2) @ attention.transpose(1, 2)).view(b, -1, h, w) + cam
        background = 2 - refined.amax(dim=1, keepdim=True)
        return self.to_logits(torch.cat([background, refined], dim=1))


class DeepLab(DeepLabV3):
    """torchvision DeepLabV3 + DeepLabHead on a maskforge backbone; an optional AE-PSL or PseudoSeg branch.

    ``forward(images, labels=None)`` takes float (or uint8) RGB in 0..255, B×3×H×W (normalisation
    is inside, so a DistributedDataParallel wrapper sees the whole computation), and returns
    ``{"out": B×K×H×W segmentation logits}``; with a branch also ``"cls"``: B×(K−1) image logits;
    with "pseudoseg" and `labels` (B×(K−1) multi-hot) also ``"sgc"``: B×K×h×w self-attention
    Grad-CAM logits at the feature resolution. `num_classes` K counts background.
    """

    def __init__(self, backbone: Backbone, num_classes: int, branch: str | None = None,
                 attention_dim: int = 128) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be ≥ 2 (background + one class), got {num_classes}")
        if branch not in (None, *BRANCHES):
            raise ValueError(f"branch must be one of {BRANCHES} or None, got {branch!r}")
        channels = backbone.feature_info.channels[-1]
        super().__init__(_DeepestLevel(backbone), DeepLabHead(channels, num_classes, ASPP_RATES[backbone.output_stride]))
        self.num_classes = num_classes
        self.branch = branch
        decoder_channels = self.classifier[-1].in_channels
        self.image_classifier = None if branch is None else nn.Conv2d(
            channels if branch == "psl" else decoder_channels, num_classes - 1, 1)
        self.sgc = (SelfAttentionCAM(channels + decoder_channels, num_classes, attention_dim)
                    if branch == "pseudoseg" else None)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> dict[str, Tensor]:
        features = self.backbone(x)["out"]
        decoder = features
        for layer in list(self.classifier)[:-1]:        # ASPP, 3×3 conv, BN, ReLU (DeepLabHead is a Sequential)
            decoder = layer(decoder)
        logits = F.interpolate(self.classifier[-1](decoder), size=x.shape[-2:], mode="bilinear", align_corners=False)
        out = {"out": logits}
        if self.image_classifier is not None:
            pooled = (features if self.branch == "psl" else decoder).mean(dim=(2, 3), keepdim=True)
            out["cls"] = self.image_classifier(pooled).flatten(1)
        if self.sgc is not None and labels is not None:
            cam = grad_cam(decoder, self.image_classifier.weight.flatten(1), labels)
            out["sgc"] = self.sgc(torch.cat([features, decoder], dim=1), cam)
        return out

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """SGD groups: the pretrained backbone at `lr`, the fresh ASPP head (and branch) at
        10×`lr` (DeepLab / AE-PSL practice). Trainable parameters only, each exactly once."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        head = [p for name, p in self.named_parameters() if not name.startswith("backbone.") and p.requires_grad]
        return [
            {"name": "backbone", "params": backbone, "lr": lr, "weight_decay": weight_decay},
            {"name": "head", "params": head, "lr": HEAD_LR_MULT * lr, "weight_decay": weight_decay},
        ]
