"""CAMNet (Zhou et al. 2016): shapes, logits = spatial mean of the pre-ReLU class maps,
frozen BatchNorm, and optimizer parameter groups."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from maskforge.models.backbones import create_backbone
from maskforge.models.cam import CAMNet


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _net(name: str = "efficientnet_lite0", num_classes: int = 5, freeze_bn: bool = False) -> CAMNet:
    return CAMNet(create_backbone(name, weights=None), num_classes=num_classes, freeze_bn=freeze_bn)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet50"])
def test_cams_shape_and_logits_shape(name):
    net = _net(name, num_classes=7).eval()
    assert isinstance(net.classifier, nn.Conv2d) and net.classifier.bias is None
    assert net.classifier.in_channels == net.backbone.feature_info.channels[-1]
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        cams, logits = net.cams(x), net(x)
    assert cams.shape == (2, 7, 4, 5)  # output stride 16
    assert logits.shape == (2, 7)
    assert (cams >= 0).all() and torch.isfinite(cams).all()


def test_logits_are_the_spatial_mean_of_the_pre_relu_class_maps():
    net = _net(num_classes=4).eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        logits = net(x)
        maps = net.class_maps(x)
        features = net.features(x)
    torch.testing.assert_close(logits, maps.mean(dim=(2, 3)), rtol=1e-5, atol=1e-5)
    # …and the class maps are the classifier weights applied at every position (a 1×1 conv).
    weight = net.classifier.weight.flatten(1)
    torch.testing.assert_close(maps, torch.einsum("kc,bchw->bkhw", weight, features), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(net.cams(x), maps.clamp(min=0))
    assert (maps < 0).any()  # so the ReLU in cams() matters and the mean is not of the ReLU'd maps


def test_freeze_bn_keeps_running_stats_and_affine_params():
    net = _net("resnet50", freeze_bn=True)
    net.train()
    bns = [m for m in net.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)
    assert net.training and net.classifier.training
    before = {k: v.clone() for k, v in net.state_dict().items() if "running" in k or "num_batches" in k}
    optimizer = torch.optim.SGD(net.param_groups(0.1, 0.0), lr=0.1)
    bn_params = [p.clone() for m in bns for p in m.parameters()]
    net(torch.randn(2, 3, 32, 32) * 3 + 1).sum().backward()
    optimizer.step()
    after = net.state_dict()
    for k, v in before.items():
        torch.testing.assert_close(after[k], v, rtol=0, atol=0, msg=k)
    assert all(not p.requires_grad for m in bns for p in m.parameters())
    for old, new in zip(bn_params, [p for m in bns for p in m.parameters()]):
        assert torch.equal(old, new)


def test_without_freeze_bn_running_stats_move():
    net = _net("resnet50", freeze_bn=False).train()
    before = net.backbone.bn1.running_mean.clone()
    net(torch.randn(2, 3, 32, 32) * 3 + 1)
    assert not torch.equal(before, net.backbone.bn1.running_mean)
    net.eval()
    assert not net.backbone.bn1.training


@pytest.mark.parametrize("freeze_bn", [False, True])
def test_param_groups_cover_every_trainable_parameter_once_with_10x_classifier_lr(freeze_bn):
    net = _net(freeze_bn=freeze_bn)
    groups = net.param_groups(lr=0.01, weight_decay=1e-4)
    assert [g["lr"] for g in groups] == [0.01, pytest.approx(0.1)]
    assert all(g["weight_decay"] == 1e-4 for g in groups)
    assert groups[1]["params"] == [net.classifier.weight]
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    trainable = {id(p) for p in net.parameters() if p.requires_grad}
    assert set(ids) == trainable
    n_bn = sum(1 for m in net.backbone.modules() if isinstance(m, nn.BatchNorm2d))
    assert len(ids) == sum(1 for _ in net.parameters()) - (2 * n_bn if freeze_bn else 0)
    torch.optim.SGD(groups, lr=0.01, momentum=0.9)  # accepted as optimizer groups


def test_num_classes_must_be_positive():
    with pytest.raises(ValueError, match="num_classes"):
        _net(num_classes=0)
