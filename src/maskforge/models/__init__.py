"""Models: feature backbones (EfficientNet-Lite0, ResNet-50/101) and the CAM network."""

from .backbones import (
    BACKBONES,
    Backbone,
    EfficientNetLite0,
    FeatureInfo,
    ResNetBackbone,
    create_backbone,
)
from .cam import CAMNet

__all__ = [
    "BACKBONES",
    "Backbone",
    "CAMNet",
    "EfficientNetLite0",
    "FeatureInfo",
    "ResNetBackbone",
    "create_backbone",
]
