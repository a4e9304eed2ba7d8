"""Seed methods behind cam.method (src/maskforge/cam_methods.py): Grad-CAM's identity with CAM,
the registry's checkpoint round trip, and train_cam/make_cam runs of each method on the tiny set."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from maskforge.cam import CamView, gradcams, multiscale_cams
from maskforge.cam_methods import METHODS, build_network, checkpoint_fields, network_from_checkpoint
from maskforge.checkpoint import CheckpointError, load_model
from maskforge.config import load_config
from maskforge.models.cam import CAMNet
from maskforge.store import open_store
from stages import make_cam, prepare, train_cam


class _Features(torch.nn.Module):
    """A tiny backbone stand-in: one conv to 8 channels at stride 4, ReLU (non-negative like Lite0's head)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 4, stride=4)
        self.feature_info = type("Info", (), {"channels": (8,)})()

    def forward(self, x):
        return [torch.relu(self.conv(x))]

    def normalize(self, images):
        return images / 255.0


def _tiny_camnet(num_classes: int = 3) -> CAMNet:
    torch.manual_seed(0)
    return CAMNet(_Features(), num_classes).eval()


def test_gradcam_of_a_gap_linear_head_is_the_cam_divided_by_the_map_size():
    """Selvaraju et al. 2017, §3: for GAP + linear classifier α_kc = w_kc / (h·w), so Grad-CAM = CAM / (h·w)."""
    net = _tiny_camnet()
    x = torch.randn(2, 3, 24, 32)
    cam, grad = net.cams(x).detach(), gradcams(net, x)
    assert cam.shape == grad.shape == (2, 3, 6, 8) and (cam > 0).any() and (cam == 0).any()
    torch.testing.assert_close(grad, cam / (6 * 8))
    # …inside inference mode too (how multiscale_cams calls it), and summed over scales and flips.
    images = torch.rand(1, 3, 32, 32) * 255
    with torch.inference_mode():
        single = multiscale_cams(CamView(net, lambda x: gradcams(net, x)), images, [1.0])
    torch.testing.assert_close(single, multiscale_cams(net, images, [1.0]) / 64)


def test_gradcam_differs_from_cam_for_a_nonlinear_head():
    """The identity is a property of the linear head, not of the implementation: with a squared
    head the gradients depend on the features and the maps are no longer proportional."""
    net = _tiny_camnet()
    net.head = lambda features: net.classifier(features.mean(dim=(2, 3), keepdim=True)).flatten(1) ** 2
    x = torch.randn(2, 3, 24, 32)
    ratio = gradcams(net, x) / net.cams(x).detach().clamp(min=1e-8)
    assert not torch.allclose(ratio[ratio > 0], torch.full_like(ratio[ratio > 0], 1 / 48), rtol=1e-3)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_checkpoint_rebuilds_the_methods_network_and_refuses_another_method(tmp_path, method):
    cam = {**load_config()["cam"], "method": method}
    net = build_network(cam, 4, None, freeze_bn=False)
    path = tmp_path / "cam.pt"
    torch.save({"kind": "cam", **checkpoint_fields(cam), "model": net.state_dict()}, path)
    loaded = load_model(path, "cam", lambda state: network_from_checkpoint(state, 4, method), torch.device("cpu"))
    assert type(loaded) is type(net) and not loaded.training
    other = next(m for m in sorted(METHODS) if m != method)
    with pytest.raises(CheckpointError, match=f"cam.pt: trained with cam.method '{method}'.*rerun train_cam"):
        load_model(path, "cam", lambda state: network_from_checkpoint(state, 4, other), torch.device("cpu"))


@pytest.mark.parametrize("method", sorted(m for m in METHODS if m != "cam"))
def test_train_cam_and_make_cam_run_each_method_on_the_tiny_set(tmp_path, method):
    config = load_config("params.yaml", ["tests/configs/tiny.yaml"])
    config["cam"]["method"] = method
    config["cam"]["infer"]["shards"] = 1
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(config))
    p = ["--params-file", str(params)]
    prepare.main(p + ["--prepared", str(tmp_path / "prepared")])
    train_cam.main(p + ["--prepared", str(tmp_path / "prepared"), "--ckpt", str(tmp_path / "cam.pt"),
                        "--curve", str(tmp_path / "curve.csv")])
    assert not list(tmp_path.glob("cam.pt.resume*"))
    assert torch.load(tmp_path / "cam.pt", weights_only=False)["method"] == method
    make_cam.main(p + ["--prepared", str(tmp_path / "prepared"), "--ckpt", str(tmp_path / "cam.pt"),
                       "--store", str(tmp_path / "cams")])
    with open_store(tmp_path / "cams", kind="cam") as store:
        assert store.params["cam"]["method"] == method
        maps = [store[i] for i in store.ids]
    assert all(np.isfinite(m).all() and m.min() >= 0 and m.max() <= 1.001 for m in maps)
