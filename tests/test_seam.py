"""SEAM (Wang et al., CVPR 2020): equivariant regularisation, the pixel correlation module and the
network's outputs, on tiny tensors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from maskforge.models.backbones import create_backbone
from maskforge.models.seam import SEAMNet, max_normalise, pcm_affinity, pcm_seed, with_background
from maskforge.seam import equivariant_cross_regularisation, seam_terms


class _Stride1Maps(nn.Module):
    """Class maps computed at the input resolution by one conv: a 1×1 conv commutes with the
    rescale A below (exactly equivariant), a 3×3 conv does not."""

    def __init__(self, kernel: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 3, kernel, padding=kernel // 2)

    def siamese_outputs(self, x):
        maps = self.conv(x)
        return maps, with_background(max_normalise(maps))


def _block_image() -> torch.Tensor:
    """2×2 blocks: bilinear ×0.5 (the transform A) picks each block's value exactly."""
    torch.manual_seed(1)
    return torch.randn(2, 3, 8, 8).repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)


def test_er_is_zero_for_an_exactly_equivariant_model_and_positive_otherwise():
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    equivariant = seam_terms(_Stride1Maps(1), _block_image(), labels, rescale=0.5, top_fraction=0.2)
    assert equivariant["er"].item() == pytest.approx(0.0, abs=1e-6)
    not_equivariant = seam_terms(_Stride1Maps(3), _block_image(), labels, rescale=0.5, top_fraction=0.2)
    assert not_equivariant["er"].item() > 1e-3


def test_pcm_affinities_are_non_negative_and_each_pixel_gathers_weights_summing_to_one():
    torch.manual_seed(0)
    affinity = pcm_affinity(torch.randn(2, 5, 3, 4))
    assert affinity.shape == (2, 12, 12)
    assert (affinity >= 0).all() and (affinity == 0).any()          # ReLU cut the negative cosines
    torch.testing.assert_close(affinity.sum(dim=1), torch.ones(2, 12), rtol=1e-4, atol=1e-4)


def test_pcm_seed_keeps_the_strongest_class_and_a_background_of_one_minus_max():
    maps = torch.tensor([[[[2.0, 0.0]], [[1.0, 4.0]]]])                # K = 2 maps of 1×2 pixels
    seed = pcm_seed(maps)
    normalised = max_normalise(maps)
    torch.testing.assert_close(seed[:, 0], 1 - normalised.amax(dim=1))
    assert seed[0, 1, 0, 1] == 0 and seed[0, 2, 0, 0] == 0             # the weaker class at each pixel dropped
    assert seed[0, 1, 0, 0] > 0 and seed[0, 2, 0, 1] > 0


def test_ecr_compares_with_the_other_branchs_strongest_class_and_mines_the_largest_errors():
    target = torch.zeros(1, 3, 2, 2)
    target[:, 0] = 0.5
    target[:, 1, 0, 0], target[:, 2, 0, 0] = 0.9, 0.4                # class 2 is dropped at (0, 0)
    refined = target.clone()
    refined[:, 2, 0, 0] = 0.0
    assert equivariant_cross_regularisation(refined, target, top_fraction=1.0).item() == 0.0
    refined[:, 1, 1, 1] = 0.6                                          # one wrong entry of 12
    assert equivariant_cross_regularisation(refined, target, 1.0).item() == pytest.approx(0.6 / 12)
    assert equivariant_cross_regularisation(refined, target, 1 / 12).item() == pytest.approx(0.6)


def test_seamnet_inference_maps_are_the_refined_foreground_and_training_reaches_every_new_layer():
    torch.manual_seed(0)
    net = SEAMNet(create_backbone("efficientnet_lite0", None), num_classes=4)
    x = torch.randn(2, 3, 64, 48)
    maps, refined = net.siamese_outputs(x)
    assert maps.shape == (2, 4, 4, 3) and refined.shape == (2, 5, 4, 3)
    torch.testing.assert_close(net.cams(x), refined[:, 1:])
    torch.testing.assert_close(net.raw_cams(x), maps.clamp(min=0))
    terms = seam_terms(net, x * 10, torch.tensor([[1.0, 0, 0, 1], [0, 1, 0, 0]]), rescale=0.5, top_fraction=0.2)
    sum(terms.values()).backward()
    for layer in net.new_layers():
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0, layer
