"""Inference copies (BatchNorm folded into the convs) compute what the model does."""

import pytest
import torch

from maskforge.models.backbones import create_backbone
from maskforge.models.cam import CAMNet
from maskforge.models.inference import inference_copy


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet50"])
def test_inference_copy_gives_the_same_cams_without_batchnorm(name):
    torch.manual_seed(0)
    model = CAMNet(create_backbone(name, None, 16), 4)
    for m in model.modules():                    # non-trivial running statistics and affine terms
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    model.eval()
    fast = inference_copy(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())     # the original is untouched
    images = torch.rand(2, 3, 45, 61) * 255                                       # odd sizes: asymmetric SAME padding
    with torch.inference_mode():
        expected = model.cams(model.backbone.normalize(images))
        got = fast.cams(fast.backbone.normalize(images.contiguous(memory_format=torch.channels_last)))
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()
