"""IRN: IR labels, pixel pairs and their labels, the boundary loss, the boundary branch, and the
ir_labels → train_irn → refine_irn stages on the tiny synthetic pipeline."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from maskforge.checkpoint import load_checkpoint
from maskforge.crf import CRFParams
from maskforge.data.manifest import Manifest
from maskforge.irn import (affinity_batches, affinity_labels, boundary_loss, downsample_labels, ir_labels,
                           pair_affinities, pair_offsets, path_offsets)
from maskforge.models.backbones import create_backbone
from maskforge.models.irn import BoundaryNet
from maskforge.store import open_store
from pipeline import run_cam_pipeline
from stages import ir_labels as ir_labels_stage
from stages import refine_irn, train_irn

NO_PAIRWISE = CRFParams(gauss_compat=0, bilateral_compat=0)     # the CRF gives the labels back


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One torch thread while this module runs (restored after): on a small shared CPU, torch's
    intra-op threads make these tiny convolutions several times slower, not faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_ir_labels_keep_agreement_and_ignore_disagreement():
    cams = np.array([[[0.6, 0.2, 0.01, 0.0], [0.0, 0.0, 0.0, 0.4]],       # class 3
                     [[0.1, 0.0, 0.0, 0.2], [0.04, 0.5, 0.0, 0.45]]],     # class 7
                    np.float32)
    image = np.random.default_rng(0).integers(0, 255, (2, 4, 3), dtype=np.uint8)
    labels = ir_labels(image, cams, [3, 7], fg_threshold=0.3, bg_threshold=0.05, crf_params=NO_PAIRWISE)
    # τ_fg map: [[3,0,0,0],[0,7,0,7]]; τ_bg map: [[3,3,0,7],[0,7,0,7]]; fg says bg, bg says object → 255
    assert labels.dtype == np.uint8
    assert labels.tolist() == [[3, 255, 0, 255], [0, 7, 0, 7]]


def test_ir_labels_go_through_the_crf():
    image = np.zeros((16, 16, 3), np.uint8)
    image[..., 2] = 200
    image[3:13, 3:13] = (200, 0, 0)                        # a red square on blue
    cams = np.zeros((1, 16, 16), np.float32)
    cams[0, 3:13, 3:13] = 0.9
    cams[0, 7, 7] = 0.0                                    # a one-pixel hole inside the object
    cams[0, 3:13, 3] = 0.2                                 # a weak column: confident only at τ_bg
    plain = ir_labels(image, cams, [2], 0.3, 0.05, NO_PAIRWISE)
    assert plain[7, 7] == 0 and (plain[3:13, 3] == 255).all()
    smoothed = ir_labels(image, cams, [2], 0.3, 0.05, CRFParams())
    expected = np.zeros((16, 16), np.uint8)
    expected[3:13, 3:13] = 2                               # the CRF follows the colour edge
    np.testing.assert_array_equal(smoothed, expected)


def test_ir_labels_of_an_image_without_classes_are_background():
    image = np.zeros((3, 5, 3), np.uint8)
    assert (ir_labels(image, np.zeros((0, 3, 5), np.float32), [], 0.3, 0.05, CRFParams()) == 0).all()


def test_offsets_are_irns_half_disc():
    assert pair_offsets(2) == ((0, 1), (1, -1), (1, 0), (1, 1))
    for radius in (3, 5, 10):
        offsets = set(pair_offsets(radius))
        disc = {(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)
                if 0 < dy * dy + dx * dx < radius * radius}
        assert offsets | {(-dy, -dx) for dy, dx in offsets} == disc        # with the mirror: the whole disc
        assert not offsets & {(-dy, -dx) for dy, dx in offsets}            # each unordered pair once
    assert len(pair_offsets(5)) == 34 and len(pair_offsets(10)) == 152


def test_paths_are_the_pixels_within_one_of_the_line():
    assert path_offsets(0, 3) == ((0, 0), (0, 1), (0, 2), (0, 3))
    assert path_offsets(3, 0) == ((0, 0), (1, 0), (2, 0), (3, 0))
    assert set(path_offsets(2, 2)) == {(0, 0), (1, 1), (2, 2), (0, 1), (1, 0), (1, 2), (2, 1)}
    assert set(path_offsets(1, -2)) == {(y, x) for y in (0, 1) for x in (-2, -1, 0)}      # all within 1
    assert set(path_offsets(2, -3)) == {(0, -1), (0, 0), (1, -3), (1, -2), (1, -1), (1, 0), (2, -3), (2, -2)}


def test_affinity_is_one_minus_the_max_boundary_on_the_path():
    boundary = torch.zeros(1, 5)
    boundary[0, 2] = 0.7
    affinity = pair_affinities(boundary, 3)                 # offsets (0,1), (0,2), then rows below (outside)
    assert pair_offsets(3)[:2] == ((0, 1), (0, 2))
    torch.testing.assert_close(affinity[0, 0], torch.tensor([1.0, 0.3, 0.3, 1.0, 0.0]))   # x → x+1
    torch.testing.assert_close(affinity[1, 0], torch.tensor([0.3, 0.3, 0.3, 0.0, 0.0]))   # x → x+2
    assert (affinity[2:] == 0).all()                        # the second pixel is outside the map


def test_pair_labels_on_a_crafted_map():
    labels = torch.tensor([[0, 0, 1],
                           [0, 1, 1],
                           [2, 2, 255]])
    bg, fg, neg = affinity_labels(labels, radius=2)         # the 8-neighbourhood, each pair once
    assert bg.shape == (4, 3, 3)
    # 20 neighbour pairs, 3 touch the 255 pixel; by offset (0,1) (1,-1) (1,0) (1,1):
    assert bg.sum(dim=(1, 2)).tolist() == [1, 1, 1, 0]
    assert fg.sum(dim=(1, 2)).tolist() == [2, 1, 1, 0]
    assert neg.sum(dim=(1, 2)).tolist() == [2, 2, 3, 3]
    assert not (bg & fg).any() and not (bg & neg).any() and not (fg & neg).any()


def test_downsampled_labels_match_the_stride4_grid():
    labels = torch.arange(9 * 10).reshape(9, 10)
    assert downsample_labels(labels).tolist() == labels[[0, 4, 8]][:, [0, 4, 8]].tolist()


def test_loss_is_lowest_with_the_boundary_on_the_class_border():
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    labels[:, :, :4] = 1                                    # class 1 left, background right

    def loss(column):
        boundary = torch.zeros(2, 8, 8)
        if column is not None:
            boundary[:, :, column] = 0.9
        return boundary_loss(boundary, labels, radius=5).item()

    on_border, nowhere = loss(3), loss(None)
    assert on_border < nowhere
    assert all(on_border < loss(column) for column in (0, 1, 2, 5, 6, 7))
    assert loss(4) == pytest.approx(on_border)              # either side of the border


def test_loss_ignores_pairs_with_ignored_pixels():
    labels = torch.full((1, 6, 6), 255, dtype=torch.long)
    boundary = torch.rand(1, 6, 6, requires_grad=True)
    loss = boundary_loss(boundary, labels, radius=3)
    loss.backward()
    assert loss.item() == 0 and (boundary.grad == 0).all()


def test_affinity_batches_crop_images_and_stride4_labels():
    images = [torch.rand(3, 30, 40) * 255, torch.rand(3, 50, 20) * 255, torch.rand(3, 24, 24) * 255]
    masks = [torch.ones(30, 40, dtype=torch.uint8), torch.full((50, 20), 2, dtype=torch.uint8),
             torch.zeros(24, 24, dtype=torch.uint8)]
    batches = list(affinity_batches(images, masks, batch_size=2, crop_size=26, scale_range=(0.9, 1.1),
                                    rng=np.random.default_rng(0)))
    assert [b[0].shape for b in batches] == [(2, 3, 26, 26), (1, 3, 26, 26)]
    assert [b[1].shape for b in batches] == [(2, 7, 7), (1, 7, 7)]
    assert all(set(b[1].unique().tolist()) <= {0, 1, 2, 255} for b in batches)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet50"])
def test_boundary_branch_is_at_stride4_in_unit_range_with_a_frozen_backbone(name):
    torch.manual_seed(0)
    net = BoundaryNet(create_backbone(name, None, 16))
    net.train()
    assert not net.backbone.training and not any(m.training for m in net.backbone.modules())
    assert all(not p.requires_grad for p in net.backbone.parameters())
    assert {id(p) for p in net.trainable_parameters()} == {id(p) for n, p in net.named_parameters()
                                                           if not n.startswith("backbone.")}
    stats = {k: v.clone() for k, v in net.backbone.state_dict().items()}
    images = torch.rand(2, 3, 36, 42) * 255
    boundary = net(net.backbone.normalize(images))
    assert boundary.shape == (2, 9, 11)
    assert ((boundary > 0) & (boundary < 1)).all()
    labels = torch.zeros(2, 9, 11, dtype=torch.long)
    labels[:, :, :5] = 1
    boundary_loss(boundary, labels, radius=3).backward()
    assert all(p.grad is None for p in net.backbone.parameters())
    assert all(p.grad is not None for p in net.trainable_parameters())
    assert all(torch.equal(v, stats[k]) for k, v in net.backbone.state_dict().items())   # BN stats unmoved
    flipped = net.eval().boundary_with_flip(net.backbone.normalize(images))
    assert flipped.shape == (2, 9, 11) and ((flipped > 0) & (flipped < 1)).all()


# --------------------------------------------------------------------------------------------
# Stages on the tiny synthetic pipeline
# --------------------------------------------------------------------------------------------

TINY_IRN = {
    "crf": {"workers": 1},
    "irn": {"train": {"epochs": 1, "batch_size": 6, "crop_size": 48, "max_side": 48, "radius": 5},
            "infer": {"max_side": 48, "exp_times": 4}},
}


@pytest.fixture(scope="module")
def irn_run(tmp_path_factory):
    """cam_r0 of the tiny pipeline, then ir_labels → train_irn → refine_irn through their main()s."""
    root = tmp_path_factory.mktemp("irn")
    overlay = root / "irn.yaml"
    overlay.write_text(yaml.safe_dump(TINY_IRN))
    d = run_cam_pipeline(root / "run", ["tests/configs/tiny.yaml", str(overlay)], rounds=1, refine=False)
    p = ["--params-file", str(root / "run" / "params.yaml")]
    d.update({"ir_labels": str(root / "ir_labels"), "irn.pt": str(root / "irn.pt"), "irn.csv": str(root / "irn.csv"),
              "irn": str(root / "irn")})
    ir_labels_stage.main(p + ["--prepared", d["prepared"], "--cams", d["cam_r0"], "--store", d["ir_labels"]])
    train_irn.main(p + ["--prepared", d["prepared"], "--labels", d["ir_labels"], "--ckpt", d["irn.pt"],
                        "--curve", d["irn.csv"]])
    refine_irn.main(p + ["--prepared", d["prepared"], "--ckpt", d["irn.pt"], "--cams", d["cam_r0"],
                         "--store", d["irn"]])
    return d


def test_ir_label_store_holds_the_cam_ids_and_labels(irn_run):
    manifest = Manifest.read(f"{irn_run['prepared']}/manifest.json")
    with open_store(irn_run["cam_r0"], kind="cam") as cams, open_store(irn_run["ir_labels"], kind="mask") as labels:
        assert labels.ids == cams.ids
        assert labels.meta["inputs"].keys() == {"prepared", "cams"}
        assert labels.params["irn"] == {"fg_threshold": 0.30, "bg_threshold": 0.05}
        for image_id in labels.ids:
            mask = labels[image_id]
            assert mask.shape == cams[image_id].shape[1:]
            assert set(np.unique(mask).tolist()) <= {0, 255, *manifest.label_ids(image_id).tolist()}


def test_train_irn_writes_checkpoint_and_curve_and_removes_the_resume_file(irn_run):
    state = load_checkpoint(irn_run["irn.pt"], "irn")
    assert state["backbone"] == "efficientnet_lite0" and state["output_stride"] == 16
    assert state["inputs"].keys() == {"prepared", "labels"}
    assert not Path(f"{irn_run['irn.pt']}.resume").exists()
    lines = Path(irn_run["irn.csv"]).read_text().splitlines()
    assert lines[0] == "epoch,step,loss,lr" and len(lines) == 2
    assert np.isfinite(float(lines[1].split(",")[2]))


def test_refine_irn_store_labels_every_pixel_with_image_classes(irn_run):
    manifest = Manifest.read(f"{irn_run['prepared']}/manifest.json")
    with open_store(irn_run["irn"], kind="mask") as refined:
        assert refined.ids == manifest.ids("train")
        assert refined.meta["inputs"].keys() == {"prepared", "ckpt", "cams"}
        assert json.loads(json.dumps(refined.params)) == {"irn": {"infer": {
            "radius": 5, "beta": 10, "exp_times": 4, "bg_score": 0.25, "bg_power": 1, "max_side": 48}}}
        for image_id in refined.ids:
            mask, record = refined[image_id], manifest.images[image_id]
            assert mask.shape == (record.height, record.width)
            assert set(np.unique(mask).tolist()) <= {0, *manifest.label_ids(image_id).tolist()}


def test_stage_help_is_the_docstring(capsys):
    for stage in (ir_labels_stage, train_irn, refine_irn):
        with pytest.raises(SystemExit):
            stage.main(["--help"])
        assert stage.__doc__.splitlines()[0] in capsys.readouterr().out
