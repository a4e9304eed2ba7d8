"""PseudoSeg's core (fusion, sharpening, Grad-CAM, views, loss), the labelled split, AE-PSL's warm-up
and the segmentation method plan. The stage smoke run of method pseudoseg is in test_segmentation.py."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from maskforge.models.backbones import create_backbone
from maskforge.models.deeplab import DeepLab, grad_cam
from maskforge.pseudoseg import (PseudoSegParams, consistency_loss, cutout, fuse_pseudo_label, pseudoseg_batches,
                                 pseudoseg_loss, sharpen)
from maskforge.seg_training import plan_training
from maskforge.segmentation import (IGNORE, OnlinePSL, TrainingSet, labelled_cross_entropy, labelled_split,
                                    online_psl_target, segmentation_loss)
from maskforge.training import fit


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def hand_made_logits():
    """Decoder p and Grad-CAM m logits, 1×3 classes×1×4 pixels: they disagree on pixels 1 and 3."""
    p = torch.tensor([[4.0, 0.0, 1.0, 0.0], [0.0, 3.0, 0.0, 0.5], [1.0, 0.0, 2.0, 0.0]])
    m = torch.tensor([[3.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 5.0, 3.0, 4.0]])
    return p.view(1, 3, 1, 4), m.view(1, 3, 1, 4)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_gamma_one_keeps_the_decoders_argmax_and_gamma_zero_the_cams(temperature):
    p, m = hand_made_logits()
    assert torch.equal(fuse_pseudo_label(p, m, 1.0, temperature).argmax(1), p.argmax(1))
    assert torch.equal(fuse_pseudo_label(p, m, 0.0, temperature).argmax(1), m.argmax(1))
    assert not torch.equal(p.argmax(1), m.argmax(1))                 # the two really differ
    fused = fuse_pseudo_label(p, m, 0.5, temperature)
    assert torch.allclose(fused.sum(1), torch.ones(1, 1, 4))


def test_fusion_is_the_papers_formula_with_one_norm_per_image():
    p, m = hand_made_logits()
    norm = torch.cat([p, m], 1).pow(2).mean().sqrt()                  # RMS of p and m together
    q = 0.3 * (p / norm).softmax(1) + 0.7 * (m / norm).softmax(1)
    expected = q ** 2 / (q ** 2).sum(1, keepdim=True)                 # sharpen with T = 0.5
    assert torch.allclose(fuse_pseudo_label(p, m, 0.3, 0.5), expected, atol=1e-6)
    # a second image in the batch with 10x larger logits gets its own norm: same label as alone
    both = fuse_pseudo_label(torch.cat([p, 10 * p]), torch.cat([m, 10 * m]), 0.3, 0.5)
    assert torch.allclose(both[0], expected[0], atol=1e-6) and torch.allclose(both[1], expected[0], atol=1e-5)


def test_sharpening_to_zero_temperature_gives_one_hot_and_t_one_is_identity():
    q = torch.tensor([[0.5, 0.2, 0.3], [0.1, 0.46, 0.44], [0.34, 0.33, 0.33]]).T.reshape(1, 3, 1, 3)
    one_hot = sharpen(q, 1e-3)
    assert torch.allclose(one_hot, F.one_hot(q.argmax(1), 3).permute(0, 3, 1, 2).float(), atol=1e-4)
    assert torch.allclose(sharpen(q, 1.0), q, atol=1e-6)
    assert (sharpen(q, 0.5).amax(1) > q.amax(1)).all()                # T < 1 sharpens every pixel
    p, m = hand_made_logits()
    fused = fuse_pseudo_label(p, m, 0.5, 1e-3)
    assert torch.allclose(fused.amax(1), torch.ones(1, 1, 4), atol=1e-4)


def test_grad_cam_in_closed_form_equals_autograd_grad_cam():
    torch.manual_seed(0)
    features = torch.randn(2, 5, 3, 4, requires_grad=True)
    head = torch.nn.Linear(5, 3)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    logits = head(features.mean(dim=(2, 3)))
    expected = torch.zeros(2, 3, 3, 4)
    for c in range(3):
        grads, = torch.autograd.grad(logits[:, c].sum(), features, retain_graph=True)
        alpha = grads.mean(dim=(2, 3), keepdim=True)                  # Grad-CAM's channel weights
        expected[:, c] = F.relu((alpha * features).sum(1)).detach()
    expected = expected * labels[:, :, None, None]
    expected = expected / expected.amax(dim=(2, 3), keepdim=True).clamp(min=1e-5)
    assert torch.allclose(grad_cam(features.detach(), head.weight, labels), expected, atol=1e-5)
    assert (expected[0, 1] == 0).all()                                # unlabelled class: 0


def test_consistency_loss_averages_over_non_padding_and_drops_unconfident_pixels():
    strong = torch.zeros(1, 2, 1, 3)                                  # uniform prediction: −log ½ per pixel
    target = torch.tensor([[1.0, 0.6, 1.0], [0.0, 0.4, 0.0]]).view(1, 2, 1, 3)
    valid = torch.tensor([[[True, True, False]]])
    assert consistency_loss(strong, target, valid, 0.0).item() == pytest.approx(np.log(2))
    assert consistency_loss(strong, target, valid, 0.7).item() == pytest.approx(np.log(2) / 2)


def test_cutout_fills_one_square_with_the_mean_colour():
    image = torch.arange(3 * 20 * 20, dtype=torch.float32).view(3, 20, 20)
    out = cutout(image, 0.5, np.random.default_rng(3))
    changed = (out != image).any(0)
    assert 0 < changed.sum() <= 100
    rows, cols = changed.nonzero().T
    assert changed[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()     # one rectangle
    assert torch.allclose(out[:, changed], image.mean(dim=(1, 2))[:, None].expand(3, int(changed.sum())))
    assert torch.equal(cutout(image, 0.0, np.random.default_rng(3)), image)


def tiny_set(n, size=12, classes=2):
    rng = np.random.default_rng(0)
    images = [torch.from_numpy(rng.integers(0, 255, (3, size, size), dtype=np.uint8)) for _ in range(n)]
    masks = [torch.from_numpy(rng.integers(0, classes + 1, (size, size), dtype=np.uint8)) for _ in range(n)]
    labels = torch.stack([F.one_hot(torch.tensor(i % classes), classes).float() for i in range(n)])
    return TrainingSet([f"i{i}" for i in range(n)], images, masks, labels)


PARAMS = PseudoSegParams(gamma=0.5, temperature=0.5, threshold=0.0, weight=1.0, jitter=0.5, cutout=0.5,
                         attention_dim=8)


def test_views_align_and_every_labelled_image_is_drawn():
    data = tiny_set(7)
    labelled = data.subset(["i1", "i4"])
    batches = list(pseudoseg_batches(labelled, data, PARAMS, batch_size=2, crop_size=16, scale_range=(1.0, 1.0),
                                     rng=np.random.default_rng(0)))
    assert len(batches) == 3                                          # 7 images, batch 2: last one dropped
    for pixel, masks, pixel_labels, weak, strong, valid, labels in batches:
        assert pixel.shape == weak.shape == strong.shape == (2, 3, 16, 16) and masks.shape == valid.shape == (2, 16, 16)
        assert ((masks == IGNORE) | (masks < 3)).all() and (masks == IGNORE).any()     # 12 px image in a 16 px crop
        assert (weak.transpose(0, 1)[:, ~valid] == 0).all() and (~valid).sum() == 2 * (256 - 144)
        assert not torch.equal(weak, strong)
        assert pixel_labels.shape == labels.shape == (2, 2)
    drawn = torch.cat([b[0] for b in batches]).flatten(1)
    sources = torch.stack([labelled.images[0].float().flatten(), labelled.images[1].float().flatten()])
    assert all(any(torch.isin(sources[j], row).all() for row in drawn) for j in range(2))


@pytest.mark.parametrize("world", [1, 2])
def test_ranks_share_the_epoch_the_way_one_process_does(world):
    data = tiny_set(8)
    labelled = data.subset(["i0", "i3", "i5"])
    kw = dict(batch_size=4, crop_size=12, scale_range=(0.8, 1.2))
    single = list(pseudoseg_batches(labelled, data, PARAMS, rng=np.random.default_rng(1), **kw))
    per_rank = [list(pseudoseg_batches(labelled, data, PARAMS, rng=np.random.default_rng(1), rank=r, world_size=world,
                                       **kw)) for r in range(world)]
    for step, whole in enumerate(single):
        parts = [per_rank[r][step] for r in range(world)]
        for k in range(len(whole)):
            gathered = torch.cat([p[k] for p in parts])
            assert sorted(map(bytes, gathered.flatten(1).numpy().astype(np.float32))) == \
                sorted(map(bytes, whole[k].flatten(1).numpy().astype(np.float32)))


def test_pseudoseg_loss_is_finite_and_trains_every_part_of_the_model():
    torch.manual_seed(0)
    data = tiny_set(4, size=32)
    model = DeepLab(create_backbone("efficientnet_lite0", None, 16), 3, "pseudoseg", attention_dim=8)
    batch = next(iter(pseudoseg_batches(data.subset(["i0", "i1"]), data, PARAMS, batch_size=2, crop_size=32,
                                        scale_range=(1.0, 1.0), rng=np.random.default_rng(0))))
    loss = pseudoseg_loss(model, batch, PARAMS)
    loss.backward()
    assert torch.isfinite(loss)
    for name in ("sgc.query.weight", "sgc.to_logits.weight", "image_classifier.weight", "classifier.4.weight"):
        assert dict(model.named_parameters())[name].grad.abs().sum() > 0, name
    no_consistency = pseudoseg_loss(model, batch, PseudoSegParams(**{**PARAMS.__dict__, "weight": 0.0}))
    assert no_consistency < loss


@pytest.mark.parametrize("fraction, count", [(0.1, 3), (0.5, 15), (1.0, 30), (0.01, 1)])
def test_labelled_split_is_deterministic_disjoint_and_order_free(fraction, count):
    ids = [f"img{i:02d}" for i in range(30)]
    labelled, rest = labelled_split(ids, fraction, seed=7)
    assert len(labelled) == count and set(labelled).isdisjoint(rest) and set(labelled) | set(rest) == set(ids)
    assert labelled_split(ids, fraction, seed=7) == (labelled, rest)
    shuffled = list(reversed(ids))
    assert set(labelled_split(shuffled, fraction, seed=7)[0]) == set(labelled)
    assert labelled == [i for i in ids if i in labelled]               # in the given order
    if count < 30:
        assert set(labelled_split(ids, fraction, seed=8)[0]) != set(labelled)


class Fixed(torch.nn.Module):
    """Fixed segmentation and image logits (one 2×2 image, 3 classes)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.logits = torch.nn.Parameter(torch.randn(1, 3, 2, 2))
        self.cls = torch.nn.Parameter(torch.zeros(1, 2))

    def forward(self, x):
        return {"out": self.logits, "cls": self.cls}


def test_psl_warm_up_leaves_plain_cross_entropy_on_the_segmentation_logits():
    model = Fixed()
    batch = (torch.zeros(1, 3, 2, 2), torch.tensor([[[1, 0], [255, 2]]]), torch.tensor([[1.0, 0.0]]))
    loss = OnlinePSL(start_epoch=2, weight=0.5)
    plain = F.cross_entropy(model.logits, batch[1], ignore_index=255)
    cls = F.multilabel_soft_margin_loss(model.cls, batch[2])
    for epoch in (0, 1):
        loss.set_epoch(epoch)
        value = loss(model, batch)
        assert value.item() == pytest.approx((plain + cls).item(), rel=1e-6)
        grad, = torch.autograd.grad(value, model.logits)
        assert torch.allclose(grad, torch.autograd.grad(plain, model.logits, retain_graph=True)[0])
    target = online_psl_target(model.logits.softmax(1), model.cls.sigmoid(), batch[2])
    target[batch[1] == 255] = 255
    with_psl = plain + cls + 0.5 * labelled_cross_entropy(model.logits, target)
    for epoch in (2, 5):
        loss.set_epoch(epoch)
        assert loss(model, batch).item() == pytest.approx(with_psl.item(), rel=1e-6)
    assert segmentation_loss(model, batch).item() == pytest.approx((with_psl + (with_psl - plain - cls)).item())


def test_fit_tells_the_loss_each_epoch_also_after_a_resume(tmp_path):
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    batches = lambda rng: iter([(torch.ones(1, 2), torch.zeros(1, 1))])
    loss_fn = lambda net, batch: F.mse_loss(net(batch[0]), batch[1])
    kw = dict(steps_per_epoch=1, seed=0, resume_path=tmp_path / "r.pt", fingerprint="f", device=torch.device("cpu"),
              desc="t")
    seen = []
    fit(model, optimizer, loss_fn, batches, epochs=2, on_epoch_start=seen.append, **kw)
    fit(model, optimizer, loss_fn, batches, epochs=4, on_epoch_start=seen.append, **kw)   # resumes after epoch 2
    assert seen == [0, 1, 2, 3]


SEG = {"method": "deeplab", "labelled_fraction": 0.5, "psl": {"enabled": False, "start_epoch": 1, "weight": 1.0, "pixels": "all", "confidence": 0.0},
       "pseudoseg": PARAMS.__dict__,
       "train": {"epochs": 3, "batch_size": 2, "crop_size": 12, "scale_range": [1.0, 1.0], "seed": 0}}


def with_(**changes):
    seg = {**SEG, **{k: v for k, v in changes.items() if k != "psl"}}
    seg["psl"] = {**SEG["psl"], **changes.get("psl", {})}
    return seg


def test_plans_read_the_labelled_images_and_pick_the_branch():
    data = tiny_set(6)
    plain = plan_training(with_(), data)
    assert plain.branch is None and len(plain.labelled_ids) == 3 and plain.num_images == 3
    assert plain.on_epoch_start is None and plain.steps_per_epoch(2, 1) == 1
    psl = plan_training(with_(psl={"enabled": True}), data)
    assert psl.branch == "psl" and isinstance(psl.loss_fn, OnlinePSL) and psl.loss_fn.start_epoch == 1
    pseudo = plan_training(with_(method="pseudoseg"), data)
    assert pseudo.branch == "pseudoseg" and pseudo.labelled_ids == plain.labelled_ids and pseudo.num_images == 6
    images = next(iter(plain.make_batches(np.random.default_rng(0), 0, 1)))[0]
    labelled_sums = {data.images[data.ids.index(i)].sum().item() for i in plain.labelled_ids}
    assert all(image.sum().item() in labelled_sums for image in images)     # crop = the image, perhaps flipped
