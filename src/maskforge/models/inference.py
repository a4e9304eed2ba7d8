"""Inference copies of trained models: the same outputs with BatchNorm folded into the convs.

In eval mode a BatchNorm is the per-channel affine map γ(x − μ)/√(σ² + ε) + β, so conv → BN is
one conv with weight W·γ/√(σ² + ε) and bias β − μγ/√(σ² + ε) (Jacob et al., CVPR 2018, §3.2):
one memory pass less per conv. Outputs differ from the original model's only by float rounding
(tests/test_inference_model.py).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["fold_batchnorm", "inference_copy"]


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm of `model.backbone.conv_bn_pairs()` into its conv, in place (eval mode)."""
    for parent, conv, bn in model.eval().backbone.conv_bn_pairs():
        setattr(parent, conv, fuse_conv_bn_eval(getattr(parent, conv), getattr(parent, bn)))
        setattr(parent, bn, nn.Identity())
    return model


def inference_copy(model: nn.Module) -> nn.Module:
    """An eval-mode, channels_last copy of `model` (whose `backbone` lists its `conv_bn_pairs`) with
    the backbone's BatchNorms folded. For inference only: no BatchNorm statistics are left to train."""
    return fold_batchnorm(copy.deepcopy(model)).to(memory_format=torch.channels_last)
