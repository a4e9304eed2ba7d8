"""ESOL (Li et al., NeurIPS 2022): samplers, feature clipping, and the direction of the
expansion (loss up) and shrinkage (loss down) steps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from maskforge.models.backbones import create_backbone
from maskforge.models.esol import (DeformableSampler, ESOLNet, clip_features, expanded_classification_loss,
                                   expansion_step, sample, shrinkage_loss)

CLIP = 0.5


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(4, 3, 64, 64), torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def _net() -> ESOLNet:
    """Random-init Lite0 in train mode: BatchNorm uses the (fixed) batch's statistics, so the
    features are not the vanishing ones of untrained running statistics, and a forward pass of
    the same batch is deterministic."""
    return ESOLNet(create_backbone("efficientnet_lite0", weights=None), num_classes=3).train()


def test_zero_offsets_reproduce_the_plain_feature_map():
    features = torch.randn(2, 16, 5, 7)
    out = sample(features, torch.zeros(2, 2, 5, 7), torch.ones(16, 1, 1, 1))
    torch.testing.assert_close(out, features)
    # a fresh sampler has zero offsets, hence is the identity
    torch.testing.assert_close(DeformableSampler(16, 1.0)(features), features)


def test_integer_offsets_shift_the_feature_map():
    features = torch.randn(1, 4, 6, 6)
    offsets = torch.zeros(1, 2, 6, 6)
    offsets[:, 1] = 1.0  # dx = +1: every position reads its right neighbour
    out = sample(features, offsets, torch.ones(4, 1, 1, 1))
    torch.testing.assert_close(out[..., :-1], features[..., 1:])
    assert (out[..., -1] == 0).all()  # outside the map reads zero


def test_offsets_are_bounded():
    sampler = DeformableSampler(8, 1.5)
    torch.nn.init.normal_(sampler.offset.weight, std=10.0)
    assert sampler.offsets(torch.randn(1, 8, 5, 5)).abs().max() <= 1.5


def test_feature_clipping_caps_each_channel_at_a_fraction_of_its_max():
    features = torch.rand(2, 3, 4, 4) * 10
    clipped = clip_features(features, CLIP)
    ceiling = CLIP * features.amax(dim=(2, 3), keepdim=True)
    assert (clipped <= ceiling + 1e-6).all()
    kept = features <= ceiling
    torch.testing.assert_close(clipped[kept], features[kept])
    torch.testing.assert_close(clip_features(features, 1.0), features)


def test_the_initial_network_is_the_plain_cam_network():
    net = _net()
    images, _ = _batch()
    with torch.no_grad():
        features = net.backbone(images)[-1]
        assert features.abs().mean() > 1e-3
        torch.testing.assert_close(net.features(images), features)


def test_expansion_step_increases_the_classification_loss_on_a_fixed_batch():
    net = _net()
    images, targets = _batch()
    frozen = {n: p.detach().clone() for n, p in net.named_parameters() if not n.startswith("expansion.")}
    optimizer = torch.optim.SGD(net.expansion.parameters(), lr=0.05)
    before = expanded_classification_loss(net, images, targets, CLIP).item()
    for _ in range(3):
        expansion_step(net, images, targets, optimizer, CLIP)
    after = expanded_classification_loss(net, images, targets, CLIP).item()
    assert after > before
    assert all(torch.equal(p, frozen[n]) for n, p in net.named_parameters() if n in frozen)  # the rest is frozen
    assert all(p.requires_grad for p in net.parameters())  # and trainable again afterwards


@pytest.mark.parametrize("area_weight", [0.0, 0.1])
def test_shrinkage_step_decreases_the_classification_loss_on_a_fixed_batch(area_weight):
    net = _net()
    images, targets = _batch()
    optimizer = torch.optim.SGD(net.shrinkage.parameters(), lr=0.05)

    def classification() -> float:
        with torch.no_grad():
            return F.multilabel_soft_margin_loss(net(images), targets).item()

    before, objective_before = classification(), shrinkage_loss(net, images, targets, area_weight).item()
    for _ in range(3):
        loss = shrinkage_loss(net, images, targets, area_weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert classification() < before
    assert shrinkage_loss(net, images, targets, area_weight).item() < objective_before
