"""Models: feature backbones (EfficientNet-Lite0, ResNet-50/101) and the CAM network.

Import from the submodules (maskforge.models.backbones, .cam): see maskforge.data for why.
"""
