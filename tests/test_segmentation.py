"""The segmentation stage's core (AE-PSL loss, online PSL label, test threshold, DeepLab, the
training set) and a CPU smoke run ground_truth → train_seg (deeplab with and without PSL, and
pseudoseg on half the GT masks) → predict → evaluate."""

import csv
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from maskforge.data.manifest import Manifest
from maskforge.models.backbones import create_backbone
from maskforge.models.deeplab import HEAD_LR_MULT, DeepLab
from maskforge.segmentation import (UNSURE, apply_confidence, labelled_cross_entropy, labels_from_probs,
                                    load_training_set, online_psl_target, predict_probs, segmentation_loss,
                                    steps_per_epoch, training_batches)
from maskforge.store import StoreError, open_store
from pipeline import run_cam_pipeline
from stages import evaluate, ground_truth, predict, train_seg


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: on a shared 2-core machine two OpenMP threads made these tests 10-20x slower
    (measured: a 48-px DeepLab step 0.26 s with one thread, 7.7 s with two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def logits_for(probs):
    """Logits whose softmax over dim 1 is `probs` (K × pixels, one image, one row)."""
    return torch.tensor(probs, dtype=torch.float64).log().T.reshape(1, len(probs[0]), 1, len(probs))


def test_j_is_the_mean_nll_over_labelled_pixels_not_a_class_balanced_mean():
    # pixels: class 0 with f0 = 3/4, class 0 again (3/4), class 1 with f1 = 1/4, then two ignored ones
    logits = logits_for([[0.75, 0.25], [0.75, 0.25], [0.75, 0.25], [0.5, 0.5], [0.5, 0.5]])
    target = torch.tensor([[[0, 0, 1, 255, UNSURE]]])
    expected = (2 * -math.log(0.75) - math.log(0.25)) / 3      # AE-PSL eq. (2): 1/Σ|S_c| ΣΣ −log f
    assert labelled_cross_entropy(logits, target).item() == pytest.approx(expected, rel=1e-12)
    standard = target.where(target != UNSURE, 255)
    assert labelled_cross_entropy(logits, standard).item() == pytest.approx(
        F.cross_entropy(logits, standard, ignore_index=255).item(), rel=1e-12)


def test_j_without_labelled_pixels_is_zero_with_a_gradient():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = labelled_cross_entropy(logits, torch.full((1, 2, 2), 255))
    loss.backward()
    assert loss.item() == 0 and torch.equal(logits.grad, torch.zeros_like(logits))


def psl(f, v, labels):
    probs = torch.tensor(f).T.reshape(1, len(f[0]), 1, len(f))
    return online_psl_target(probs, torch.tensor([v]), torch.tensor([labels])).flatten().tolist()


def test_psl_target_weights_classes_by_v_and_background_by_one():
    f = [[0.2, 0.3, 0.5], [0.4, 0.6, 0.0], [0.2, 0.5, 0.3]]
    # weighted [1, .5, .9]: [.2, .15, .45] → 2; [.4, .3, 0] → 0 (background keeps weight 1); [.2, .25, .27] → 2
    assert psl(f, [0.5, 0.9], [1, 1]) == [2, 0, 2]
    assert psl(f, [1.0, 1.0], [1, 1]) == [2, 1, 1]      # v = 1: plain argmax of f


def test_classes_outside_the_image_labels_never_win():
    f = [[0.01, 0.02, 0.97], [0.2, 0.3, 0.5]]
    assert psl(f, [1.0, 1.0], [1, 0]) == [1, 1]         # class 2 has the largest f and v 1 but is not labelled
    assert psl(f, [0.01, 1.0], [1, 0]) == [0, 0]        # weighted [.01, .0002] and [.2, .003]
    assert psl(f, [1.0, 1.0], [0, 0]) == [0, 0]         # no labels: background everywhere


@pytest.mark.parametrize("p, expected", [(0.1, [1, 2, 0]), (0.5, [1, 0, 0]), (0.0, [1, 2, 0])])
def test_confidence_threshold_sends_unsure_pixels_to_background(p, expected):
    probs = torch.tensor([[0.1, 0.3, 0.6], [0.8, 0.25, 0.3], [0.1, 0.45, 0.1]]).reshape(3, 1, 3)   # K×1×3 pixels
    assert apply_confidence(probs, p).flatten().tolist() == expected
    image = np.zeros((1, 3, 3), np.uint8)
    assert labels_from_probs(image, probs.numpy(), p).flatten().tolist() == expected


@pytest.mark.parametrize("branch", [None, "psl", "pseudoseg"])
def test_deeplab_outputs_full_size_logits_and_image_logits(branch):
    torch.manual_seed(0)
    model = DeepLab(create_backbone("efficientnet_lite0", None, 16), 4, branch, attention_dim=8).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 50, 70) * 255, torch.tensor([[1.0, 0, 0], [0, 1, 1]]))
    assert out["out"].shape == (2, 4, 50, 70)
    assert ("cls" in out) == (branch is not None) and (branch is None or out["cls"].shape == (2, 3))
    assert ("sgc" in out) == (branch == "pseudoseg") and (branch != "pseudoseg" or out["sgc"].shape == (2, 4, 4, 5))
    groups = model.param_groups(0.01, 1e-4)
    assert groups[1]["lr"] == HEAD_LR_MULT * groups[0]["lr"]
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    probs = predict_probs(model, torch.rand(1, 3, 40, 30) * 255, [1.0, 0.5])
    assert probs.shape == (1, 4, 40, 30) and torch.allclose(probs.sum(1), torch.ones(1, 40, 30), atol=1e-5)


def test_resnet_deeplab_is_torchvisions_deeplabv3_resnet50():
    from torchvision.models.segmentation import deeplabv3_resnet50
    ours = DeepLab(create_backbone("resnet50", None, 8), 21).state_dict()
    theirs = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=False).state_dict()
    renamed = {k.replace("backbone.body.", "backbone."): v.shape for k, v in ours.items()}
    assert renamed == {k: v.shape for k, v in theirs.items()}


def test_training_crops_keep_unsure_apart_from_padding():
    image = torch.full((3, 10, 10), 100.0)
    mask = torch.zeros(10, 10, dtype=torch.uint8)
    mask[:, 5:] = 255
    images, masks, labels = next(training_batches([image, image], [mask, mask], torch.eye(2), batch_size=2,
                                                  crop_size=16, scale_range=(1.0, 1.0), rng=np.random.default_rng(0)))
    assert images.shape == (2, 3, 16, 16) and masks.shape == (2, 16, 16)
    for m in masks:
        assert (m == 0).sum() == 50 and (m == UNSURE).sum() == 50 and (m == 255).sum() == 256 - 100
    assert sorted(labels.argmax(1).tolist()) == [0, 1]


@pytest.mark.parametrize("n, batch, world, steps", [(10, 4, 1, 2), (8, 4, 2, 2), (9, 4, 2, 2), (3, 4, 1, 1)])
def test_steps_drop_the_last_incomplete_batch(n, batch, world, steps):
    assert steps_per_epoch(n, batch, world) == steps


def test_one_image_per_process_is_refused():      # ASPP's image-pooling BatchNorm needs two
    with pytest.raises(ValueError, match="at least 4"):
        steps_per_epoch(10, 3, 2)


@pytest.mark.parametrize("pixels, confidence, supervised", [
    ("all", 0.0, [[True, True], [False, False]]),          # padding only left out
    ("unsure", 0.0, [[False, True], [False, False]]),      # S's labels kept
    ("all", 0.5, [[True, False], [False, False]]),         # f of Ŝ's class: 0.85 at the labelled pixel, 0.45 at the unsure one
])
def test_psl_loss_supervises_the_chosen_pixels_with_the_online_label(pixels, confidence, supervised):
    torch.manual_seed(0)

    class Fixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.logits = torch.nn.Parameter(torch.randn(1, 3, 2, 2))
            self.cls = torch.nn.Parameter(torch.zeros(1, 2))

        def forward(self, x):
            return {"out": self.logits, "cls": self.cls}

    model = Fixed()
    masks = torch.tensor([[[1, UNSURE], [255, 255]]])
    labels = torch.tensor([[1.0, 0.0]])
    loss = segmentation_loss(model, (torch.zeros(1, 3, 2, 2), masks, labels), psl_pixels=pixels, psl_confidence=confidence)
    target = online_psl_target(model.logits.softmax(1), model.cls.sigmoid(), labels)
    target[~torch.tensor([supervised])] = 255
    expected = (labelled_cross_entropy(model.logits, masks) + labelled_cross_entropy(model.logits, target)
                + F.multilabel_soft_margin_loss(model.cls, labels))
    assert loss.item() == pytest.approx(expected.item())
    assert (labelled_cross_entropy(model.logits, target) > 0).item()


SEG_OVERLAY = {
    "crf": {"workers": 1, "iterations": 2},
    "seg": {"labels": "seeds", "weights": None,
            "train": {"epochs": 1, "batch_size": 4, "crop_size": 48, "max_side": 48},
            "infer": {"scales": [1.0], "max_side": 48}},
}


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory):
    """Seeds of one CAM round on the tiny set, then ground truth, DeepLab with and without PSL, predictions."""
    root = tmp_path_factory.mktemp("seg")
    overlay = root / "seg.yaml"
    overlay.write_text(yaml.safe_dump(SEG_OVERLAY))
    d = run_cam_pipeline(root / "cam", ["tests/configs/tiny.yaml", overlay], rounds=1, refine=False)
    params = str(root / "cam" / "params.yaml")
    d["gt"] = str(root / "gt")
    ground_truth.main(["--params-file", params, "--prepared", d["prepared"], "--store", d["gt"]])
    for variant, method, psl_on, crf_on in (("plain", "deeplab", False, False), ("psl", "deeplab", True, True),
                                            ("pseudoseg", "pseudoseg", False, False)):
        config = yaml.safe_load(open(params))
        config["seg"]["method"], config["seg"]["infer"]["crf"] = method, crf_on
        config["seg"]["psl"].update(enabled=psl_on, start_epoch=0)
        if method == "pseudoseg":
            config["seg"]["labelled_fraction"] = 0.5
            config["seg"]["pseudoseg"]["attention_dim"] = 8
        variant_params = root / f"{variant}.yaml"
        variant_params.write_text(yaml.safe_dump(config))
        p = ["--params-file", str(variant_params), "--prepared", d["prepared"]]
        out = {k: str(root / f"{variant}_{k}") for k in ("ckpt", "curve", "store", "pngs", "metrics")}
        labels = d["gt"] if method == "pseudoseg" else d["seeds"]
        train_seg.main(p + ["--labels", labels, "--ckpt", out["ckpt"], "--curve", out["curve"]])
        predict.main(p + ["--ckpt", out["ckpt"], "--store", out["store"], "--pngs", out["pngs"]])
        evaluate.main(p + ["--store", out["store"], "--metrics", out["metrics"]])
        d[variant] = out
    return d


def test_ground_truth_store_holds_the_train_masks(seg_run):
    manifest = Manifest.read(f"{seg_run['prepared']}/manifest.json")
    with open_store(seg_run["gt"], kind="mask") as gt:
        assert gt.ids == manifest.ids("train")
        for image_id in gt.ids:
            assert np.array_equal(gt[image_id], manifest.load_mask(image_id))


@pytest.mark.parametrize("variant", ["plain", "psl", "pseudoseg"])
def test_train_seg_and_predict_write_checkpoint_curve_store_and_pngs(seg_run, variant):
    from maskforge.checkpoint import load_checkpoint
    out = seg_run[variant]
    state = load_checkpoint(out["ckpt"], "seg")
    assert state["branch"] == {"plain": None}.get(variant, variant)
    assert any(k.startswith("image_classifier") for k in state["model"]) == (variant != "plain")
    assert any(k.startswith("sgc.") for k in state["model"]) == (variant == "pseudoseg")
    rows = list(csv.DictReader(open(out["curve"])))
    assert list(rows[0]) == ["epoch", "step", "loss", "lr", "val_miou"] and len(rows) == 1
    assert float(rows[0]["loss"]) > 0 and 0 <= float(rows[0]["val_miou"]) <= 100
    manifest = Manifest.read(f"{seg_run['prepared']}/manifest.json")
    with open_store(out["store"], kind="mask") as store:
        assert store.ids == manifest.ids("val")
        for image_id in store.ids:
            record = manifest.images[image_id]
            assert store[image_id].shape == (record.height, record.width)
            assert store[image_id].max() < len(manifest.classes)
    from PIL import Image
    pngs = sorted(p.name for p in __import__("pathlib").Path(out["pngs"]).iterdir())
    assert pngs == sorted(f"{i}.png" for i in manifest.ids("val"))
    assert Image.open(f"{out['pngs']}/{pngs[0]}").mode == "P"
    metrics = json.load(open(out["metrics"]))
    assert metrics["split"] == "val" and 0 <= metrics["miou"] <= 100


def test_training_set_holds_the_train_images_masks_and_labels_of_a_store(seg_run):
    manifest = Manifest.read(f"{seg_run['prepared']}/manifest.json")
    data = load_training_set(manifest, seg_run["gt"], max_side=10_000)
    assert data.ids == manifest.ids("train") and data.labels.dtype == torch.float32
    for image_id, image, mask, labels in zip(data.ids, data.images, data.masks, data.labels):
        assert np.array_equal(image.permute(1, 2, 0).numpy(), manifest.load_image(image_id))
        assert np.array_equal(mask.numpy(), manifest.load_mask(image_id))
        assert np.array_equal(labels.numpy(), manifest.multi_hot(image_id))
    small = load_training_set(manifest, seg_run["gt"], max_side=16)
    assert all(max(i.shape[-2:]) <= 16 and i.shape[-2:] == m.shape for i, m in zip(small.images, small.masks))
    picked = data.subset(data.ids[:0:-1])
    assert picked.ids == data.ids[:0:-1] and torch.equal(picked.labels, data.labels.flip(0)[:-1])
    assert picked.masks[0] is data.masks[-1]
    with pytest.raises(StoreError, match="none of its .* train split"):
        load_training_set(manifest, seg_run["plain"]["store"], max_side=16)      # predictions: val ids only
