"""Inference copies of trained models: the same outputs, computed with fewer memory passes.

- Each BatchNorm of the backbone is folded into the conv before it (eval mode: BN is the
  per-channel affine map γ(x − μ)/√(σ² + ε) + β, so conv → BN is one conv with weight
  W·γ/√(σ² + ε) and bias β − μγ/√(σ² + ε); Jacob et al., CVPR 2018, §3.2).
- Each 1×1, stride-1, ungrouped conv is one matrix product over channels on the channels_last
  view (`PointwiseConv2d`), instead of torch's CPU 1×1 path, which copies its input first.
Outputs differ from the original model's only by float rounding (tests/test_inference_model.py).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from maskforge.models.backbones import _SameConv2d

__all__ = ["PointwiseConv2d", "inference_copy"]


class PointwiseConv2d(nn.Conv2d):
    """A 1×1, stride-1, ungrouped, unpadded conv as F.linear over the channels (same parameters)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x.permute(0, 2, 3, 1), self.weight.flatten(1), self.bias).permute(0, 3, 1, 2)


def _is_pointwise(module: nn.Module) -> bool:
    return (type(module) in (nn.Conv2d, _SameConv2d) and module.kernel_size == (1, 1) and module.stride == (1, 1)
            and module.groups == 1 and module.padding in ((0, 0), "valid") and module.padding_mode == "zeros")


def inference_copy(model: nn.Module) -> nn.Module:
    """An eval-mode, channels_last copy of `model` (which has a `backbone` listing `conv_bn_pairs`)
    with its backbone's BatchNorms folded and its 1×1 convs as `PointwiseConv2d`. For inference
    only: the folded copy has no BatchNorm statistics left to train."""
    model = copy.deepcopy(model).eval()
    for parent, conv, bn in model.backbone.conv_bn_pairs():
        setattr(parent, conv, fuse_conv_bn_eval(getattr(parent, conv), getattr(parent, bn)))
        setattr(parent, bn, nn.Identity())
    for module in model.modules():
        if _is_pointwise(module):
            module.__class__ = PointwiseConv2d
    return model.to(memory_format=torch.channels_last)
