"""SPG (Zhang et al., ECCV 2018): guidance masks, the ignore-aware BCE, and the total loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from maskforge.cam_methods import TrainingRun, train_spg
from maskforge.config import ConfigError
from maskforge.models.backbones import create_backbone
from maskforge.models.spg import (IGNORE, SPGNet, guidance_losses, guidance_mask, labelled_attention, masked_bce,
                                  seed_mask, spg_loss)

SPG_THRESHOLDS = ((0.7, 0.05), (0.5, 0.05), (0.7, 0.1))   # authors' code: attention, deep head, fused


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("high, low", [(0.5, 0.05), (0.7, 0.1)])
def test_guidance_mask_is_foreground_above_high_background_below_low_ignored_between(high, low):
    attention = torch.linspace(0, 1, 101)
    mask = guidance_mask(attention, high, low)
    assert (mask[attention > high] == 1).all()
    assert (mask[attention < low] == 0).all()
    between = (attention >= low) & (attention <= high)
    assert (mask[between] == IGNORE).all() and between.any()


def test_guidance_thresholds_are_checked():
    with pytest.raises(ValueError, match="low < high"):
        guidance_mask(torch.rand(4), 0.1, 0.5)


def test_masked_bce_ignores_the_middle_band():
    attention = torch.rand(2, 8, 8)
    mask = guidance_mask(attention, 0.5, 0.05)
    ignored = mask == IGNORE
    assert ignored.any() and (~ignored).any()
    logits = torch.randn(2, 8, 8, requires_grad=True)
    loss = masked_bce(logits, mask)
    changed = logits.detach().clone()
    changed[ignored] = torch.randn(int(ignored.sum())) * 50  # anything at all in the middle band
    assert masked_bce(changed, mask) == loss
    loss.backward()
    assert (logits.grad[ignored] == 0).all() and (logits.grad[~ignored] != 0).all()
    # …while changing a labelled pixel does change it
    changed[~ignored] += 1.0
    assert masked_bce(changed, mask) != loss


def test_masked_bce_of_an_all_ignored_mask_is_zero():
    mask = torch.full((3, 3), IGNORE, dtype=torch.uint8)
    assert masked_bce(torch.randn(3, 3), mask) == 0


def test_labelled_attention_uses_only_labelled_classes():
    maps = torch.zeros(1, 3, 2, 2)
    maps[0, 0, 0, 0] = 4.0   # labelled: its max-normalised map is 1 here
    maps[0, 1, 1, 1] = 9.0   # not labelled: must not appear
    maps[0, 2] = -1.0        # labelled, negative everywhere
    attention = labelled_attention(maps, torch.tensor([[1.0, 0.0, 1.0]]))
    assert attention[0, 0, 0] == pytest.approx(1.0, abs=1e-4)
    assert attention[0, 1, 1] == 0 and attention[0, 0, 1] == 0


def test_labelled_attention_is_min_max_normalised_like_the_authors():
    """A labelled map that is negative everywhere still has its peak at 1 and its minimum at 0
    (ReLU / max would make it all 0, i.e. all background)."""
    maps = torch.tensor([[[[-1.0, -2.0], [-3.0, -5.0]]]])
    attention = labelled_attention(maps, torch.tensor([[1.0]]))[0]
    torch.testing.assert_close(attention, torch.tensor([[1.0, 0.75], [0.5, 0.0]]), atol=1e-4, rtol=0)


def test_seed_mask_falls_back_to_a_fraction_of_the_max_when_nothing_passes_high():
    maps = torch.stack([torch.linspace(0, 0.4, 11), torch.linspace(0, 1, 11)]).reshape(2, 1, 11)
    mask = seed_mask(maps, 0.5, 0.05)
    assert not (guidance_mask(maps[0], 0.5, 0.05) == 1).any()                 # nothing above 0.5…
    assert (mask[0] == 1).sum() == 3 and (mask[0][maps[0] > 0.7 * 0.4 + 1e-6] == 1).all()   # …so > 0.7 × 0.4: 0.32, 0.36, 0.4
    assert (mask[0][maps[0] < 0.05] == 0).all()
    torch.testing.assert_close(mask[1], guidance_mask(maps[1], 0.5, 0.05))   # a map above high is unchanged


def test_guidance_cascade_attention_to_deep_head_to_shallow_head_to_final():
    """B2 learns the attention's mask, B1 the mask of B2's sigmoid (not the attention's), SPG-C
    the mask of the fused sigmoids; everything at the given size."""
    maps = torch.zeros(1, 1, 2, 2)
    maps[0, 0, 0, 0] = 1.0                      # attention: 1 at one corner, 0 elsewhere → 1 fg, 3 bg
    deep = torch.full((1, 2, 2), 10.0)          # B2 sure it is all foreground
    shallow, final = torch.zeros(1, 4, 4), torch.zeros(1, 2, 2)
    targets = torch.tensor([[1.0]])
    deep_loss, shallow_loss, final_loss = guidance_losses(maps, targets, shallow, deep, final, (2, 2), SPG_THRESHOLDS)
    assert deep_loss.item() == pytest.approx(0.75 * 10.0, rel=1e-3)          # 3 of 4 pixels are background
    assert shallow_loss.item() == pytest.approx(torch.log(torch.tensor(2.0)).item(), rel=1e-4)  # all-fg mask from B2
    assert final_loss.item() == pytest.approx(torch.log(torch.tensor(2.0)).item(), rel=1e-4)    # fused (0.5+1)/2 > 0.7
    shallow_flipped = guidance_losses(maps, targets, shallow, -deep, final, (2, 2), SPG_THRESHOLDS)[1]
    assert shallow_flipped.item() == pytest.approx(torch.log(torch.tensor(2.0)).item(), rel=1e-4)  # all-bg now
    assert guidance_losses(maps, targets, shallow, deep, final, (8, 8), SPG_THRESHOLDS)[0].item() != deep_loss.item()


def test_spg_loss_trains_heads_and_classifier_and_inference_is_camnet():
    net = SPGNet(create_backbone("efficientnet_lite0", weights=None), num_classes=3)
    images, targets = torch.randn(2, 3, 64, 64), torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    loss, parts = spg_loss(net, images, targets, SPG_THRESHOLDS)
    assert set(parts) == {"cls", "heads", "final"} and parts["heads"] > 0
    assert loss.item() == pytest.approx(parts["cls"] + parts["heads"] + parts["final"], rel=1e-5)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.heads.parameters())
    assert net.final_head[0].weight.grad is not None
    assert net.classifier.weight.grad.abs().sum() > 0
    net.eval()
    with torch.no_grad():
        logits, maps, heads, final = net.guided_outputs(images)
        torch.testing.assert_close(logits, net(images), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(net.cams(images), maps.clamp(min=0))
    assert [h.shape[-2:] for h in heads] == [(8, 8), (4, 4)]  # levels at reductions 8 and 16
    assert final.shape == (2, 4, 4)  # SPG-C on the last level


def test_spg_heads_learn_at_the_backbone_rate_and_only_the_classifier_at_10x():
    """The authors' optimizer (xiaomengyc/SPG exper/my_optim.py) gives 10× only to "cls" parameters."""
    net = SPGNet(create_backbone("efficientnet_lite0", weights=None), num_classes=3)
    groups = {g["name"]: g for g in net.param_groups(0.01, 1e-4)}
    ids = [id(p) for g in groups.values() for p in g["params"]]
    assert len(ids) == len(set(ids)) == sum(1 for p in net.parameters() if p.requires_grad)
    fresh = {id(p) for p in net.heads.parameters()} | {id(p) for p in net.final_head.parameters()}
    assert {id(p) for p in groups["guidance"]["params"]} == fresh
    assert groups["guidance"]["lr"] == groups["backbone"]["lr"] == pytest.approx(0.01)
    assert {id(p) for p in groups["classifier"]["params"]} == {id(p) for p in net.classifier.parameters()}
    assert groups["classifier"]["lr"] == pytest.approx(0.1)


def test_unguided_spg_loss_is_the_classification_loss_with_its_gradients():
    """Before cam.spg.start_epoch the guidance terms contribute nothing: same value, same gradients
    as plain multi-label classification, and no gradient reaches the heads."""
    net = SPGNet(create_backbone("efficientnet_lite0", weights=None), num_classes=3)
    images, targets = torch.randn(2, 3, 64, 64), torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    loss, parts = spg_loss(net, images, targets, SPG_THRESHOLDS, guided=False)
    assert parts["heads"] > 0   # computed (and reported)…
    assert loss.item() == pytest.approx(parts["cls"])   # …but weighted 0
    loss.backward()
    unguided = {n: p.grad.clone() for n, p in net.backbone.named_parameters() if p.grad is not None}
    assert all((p.grad is None or (p.grad == 0).all()) for p in [*net.heads.parameters(), *net.final_head.parameters()])
    net.zero_grad(set_to_none=True)
    F.multilabel_soft_margin_loss(net(images), targets).backward()
    for name, p in net.backbone.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(unguided[name], p.grad)
    net.zero_grad(set_to_none=True)
    guided, _ = spg_loss(net, images, targets, SPG_THRESHOLDS, guided=True)
    guided.backward()
    assert guided.item() > loss.item()
    assert any(not torch.allclose(unguided[n], p.grad) for n, p in net.backbone.named_parameters() if p.grad is not None)


def _run(tmp_path, epochs: int) -> TrainingRun:
    images, targets = torch.rand(2, 3, 32, 32) * 255, torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    return TrainingRun(make_batches=lambda rng: iter([(images, targets)] * 2), lr=0.01, weight_decay=0.0,
                       epochs=epochs, steps_per_epoch=2, seed=0, resume_path=str(tmp_path / "spg.resume"),
                       fingerprint="f", device=torch.device("cpu"), desc="spg")


def test_spg_training_is_unguided_before_start_epoch_and_guided_from_it(tmp_path, monkeypatch):
    guided = []

    def spy(*args, **kwargs):
        guided.append(kwargs["guided"])
        return spg_loss(*args, **kwargs)
    monkeypatch.setattr("maskforge.cam_methods.spg_loss", spy)
    knobs = {"attention_thresholds": [0.7, 0.05], "head_thresholds": [0.5, 0.05], "fused_thresholds": [0.7, 0.1], "start_epoch": 2}
    net = SPGNet(create_backbone("efficientnet_lite0", weights=None), num_classes=3)
    rows = train_spg(net, knobs, _run(tmp_path, epochs=3))
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert guided == [False] * 4 + [True] * 2   # two steps per epoch


def test_spg_start_epoch_must_leave_a_guided_epoch(tmp_path):
    knobs = {"attention_thresholds": [0.7, 0.05], "head_thresholds": [0.5, 0.05], "fused_thresholds": [0.7, 0.1], "start_epoch": 3}
    net = SPGNet(create_backbone("efficientnet_lite0", weights=None), num_classes=3)
    with pytest.raises(ConfigError, match="cam.spg.start_epoch: 3 leaves no guided epoch"):
        train_spg(net, knobs, _run(tmp_path, epochs=3))
