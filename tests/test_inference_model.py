"""Inference copies (BatchNorm folded into the convs) and the fused Lite CAM network compute what
the model does."""

import pytest
import torch

from maskforge.cam import CamView, multiscale_cams
from maskforge.models.backbones import EfficientNetLite, create_backbone
from maskforge.models.cam import CAMNet
from maskforge.models.inference import FusedLiteCAM, fused_cams, inference_copy


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


def _lite_camnet(padding: str) -> CAMNet:
    """A Lite0 CAMNet with random weights and non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(0)
    backbone = EfficientNetLite("efficientnet_lite0", 16, padding=padding)
    backbone.drop_head()
    model = CAMNet(backbone, 5)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize("padding", ["same", "symmetric"])
def test_fused_cams_equal_the_plain_models_cams(padding):
    model = _lite_camnet(padding)
    fused = fused_cams(inference_copy(model))
    assert isinstance(fused, FusedLiteCAM)
    # odd and even sizes: asymmetric and symmetric SAME padding of the stride-2 convs; NCHW input too
    for images in (torch.rand(2, 3, 45, 61) * 255, torch.rand(1, 3, 64, 48) * 255):
        with torch.inference_mode():
            expected = model.cams(model.backbone.normalize(images))
            got = fused.cams(fused.backbone.normalize(images))
        assert got.shape == expected.shape
        assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()
    # what make_cam computes: multi-scale + flip sums of the labelled classes
    images = torch.rand(1, 3, 40, 57) * 255
    expected = multiscale_cams(model, images, [1.0, 0.5, 1.5], classes=[2, 4])
    got = multiscale_cams(fused, images, [1.0, 0.5, 1.5], classes=[2, 4])
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()


def test_fused_cams_leaves_what_it_cannot_fuse_alone():
    lite = _lite_camnet("same")
    assert fused_cams(lite) is lite                                   # BatchNorm not folded
    resnet = inference_copy(CAMNet(create_backbone("resnet50", None, 16), 3).eval())
    assert fused_cams(resnet) is resnet                               # not EfficientNet-Lite
    view = CamView(inference_copy(lite), lambda x: x)
    assert fused_cams(view) is view                                   # another method's view
    double = inference_copy(lite).double()
    assert fused_cams(double) is double                               # not float32
