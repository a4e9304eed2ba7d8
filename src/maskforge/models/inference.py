"""Inference copies of trained models: the same outputs with BatchNorm folded into the convs,
and, on CPU, an EfficientNet-Lite CAM network run as fused kernels.

In eval mode a BatchNorm is the per-channel affine map γ(x − μ)/√(σ² + ε) + β, so conv → BN is
one conv with weight W·γ/√(σ² + ε) and bias β − μγ/√(σ² + ε) (Jacob et al., CVPR 2018, §3.2):
one memory pass less per conv. `fused_cams` then runs the folded Lite CAM network's convs as
fused kernels (`FusedLiteCAM`). Outputs differ from the original model's only by float rounding
(tests/test_inference_model.py).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .backbones import EfficientNetLite, _SameConv2d
from .cam import CAMNet

__all__ = ["FusedLiteCAM", "fold_batchnorm", "fused_cams", "inference_copy"]


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


def _relu6_conv(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """ReLU6(conv(x)) of a k×k conv (stem, depthwise) as one oneDNN kernel with the clip fused,
    TF SAME padding included (an asymmetric pad is applied to `x` first)."""
    x, padding = conv.padded(x) if isinstance(conv, _SameConv2d) else (x, conv.padding)
    return torch.ops.mkldnn._convolution_pointwise(x, conv.weight, conv.bias, list(padding), list(conv.stride),
                                                   list(conv.dilation), conv.groups, "hardtanh", [0.0, 6.0], "")


class _Pointwise:
    """A 1×1 conv (stride 1, no padding) as one GEMM over the pixels of a channels_last tensor:
    (N·H·W)×C_in times C_in×C_out, bias and residual as the GEMM's C term, the activation in place."""

    def __init__(self, conv: nn.Conv2d) -> None:
        if conv.kernel_size != (1, 1) or conv.stride != (1, 1) or conv.groups != 1 or conv.padding != (0, 0):
            raise ValueError(f"not a plain 1×1 conv: {conv}")
        self.weight = conv.weight.detach().flatten(1).t().contiguous()       # C_in × C_out
        self.bias = None if conv.bias is None else conv.bias.detach()

    def __call__(self, x: Tensor, activation: str | None = None, residual: Tensor | None = None) -> Tensor:
        n, c, h, w = x.shape
        pixels = x.permute(0, 2, 3, 1).reshape(-1, c)       # a view when x is channels_last
        if residual is not None:
            out = torch.addmm(residual.permute(0, 2, 3, 1).reshape(pixels.shape[0], -1), pixels, self.weight)
            if self.bias is not None:
                out += self.bias
        elif self.bias is not None:
            out = torch.addmm(self.bias, pixels, self.weight)
        else:
            out = pixels @ self.weight
        if activation == "relu6":
            out.clamp_(0, 6)
        elif activation == "relu":
            out.clamp_(min=0)
        return out.view(n, h, w, -1).permute(0, 3, 1, 2)      # channels_last N×C_out×H×W


class FusedLiteCAM(nn.Module):
    """`cams` of a BatchNorm-folded CAMNet on EfficientNet-Lite (inverted residual blocks, Sandler
    et al., CVPR 2018, Fig. 3b: 1×1 expand → ReLU6 → k×k depthwise → ReLU6 → 1×1 project [+ input]),
    as fewer, fused CPU kernels on channels_last tensors: every 1×1 conv is one GEMM of the pixels
    with the weight (Chetlur et al. 2014, §3: a 1×1 convolution is a matrix product) with bias and
    the block's residual as the GEMM's added term and ReLU6/ReLU applied in place; the stem and
    depthwise convs are oneDNN convolutions with ReLU6 fused. Same arithmetic as `model.cams`,
    other summation order: float rounding only. Weights are a snapshot of `model`'s at creation.
    CPU float32 only; build it with `fused_cams`, which checks that."""

    def __init__(self, model: CAMNet) -> None:
        super().__init__()
        self.model = model.eval()
        self.num_classes = model.num_classes
        lite = model.backbone
        self.blocks = [(_Pointwise(b._expand_conv) if b.expand != 1 else None, b._depthwise_conv,
                        _Pointwise(b._project_conv), b.residual) for b in lite._blocks]
        self.head = _Pointwise(lite._conv_head)
        self.classifier = _Pointwise(model.classifier)

    @property
    def backbone(self) -> EfficientNetLite:
        return self.model.backbone

    def cams(self, x: Tensor) -> Tensor:
        """ReLU(classifier(features(x))), B×K×h×w, for normalised B×3×H×W images (as CAMNet.cams)."""
        x = _relu6_conv(self.backbone._conv_stem, x.contiguous(memory_format=torch.channels_last))
        for expand, depthwise, project, residual in self.blocks:
            y = expand(x, "relu6") if expand is not None else x
            x = project(_relu6_conv(depthwise, y), residual=x if residual else None)
        return self.classifier(self.head(x, "relu6"), "relu")


def fused_cams(model: nn.Module) -> nn.Module:
    """`FusedLiteCAM(model)` where it applies — a CAMNet (exactly; not a subclass or a view) on
    EfficientNet-Lite with its BatchNorms folded (`fold_batchnorm`), float32 on the CPU, with
    oneDNN available — else `model` itself (e.g. on a GPU, for ResNet or another CAM method)."""
    if type(model) is not CAMNet or not isinstance(model.backbone, EfficientNetLite):
        return model
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_convolution_pointwise"):
        return model
    if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in model.parameters()):
        return model
    return FusedLiteCAM(model)
