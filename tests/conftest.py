"""Shared fixtures: tiny datasets on disk. Under pytest-xdist each worker uses one torch thread
(and so do the processes it starts): two workers on two cores, no oversubscription."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from maskforge.data.synthetic import generate_synthetic
from maskforge.data.voc import write_index_png

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

TINY_CLASSES = ["background", "cat", "dog"]


def tiny_masks() -> dict[str, np.ndarray]:
    """8×6 masks of the tiny VOC set: a cat+void, b dog, c cat+dog, d background only, e cat."""
    masks = {i: np.zeros((6, 8), np.uint8) for i in "abcde"}
    masks["a"][1:4, 1:4] = 1
    masks["a"][0, :] = 255
    masks["b"][2:5, 3:7] = 2
    masks["c"][:3, :3], masks["c"][3:, 4:] = 1, 2
    masks["e"][2:4, 2:4] = 1
    return masks


@pytest.fixture
def tiny_voc(tmp_path):
    """A VOC-layout folder: train a,b,c; val d,e (e's image a PNG); classes.json; no label file."""
    root = tmp_path / "voc"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for image_id, mask in tiny_masks().items():
        ext = ".png" if image_id == "e" else ".jpg"
        Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{image_id}{ext}")
        write_index_png(root / "SegmentationClass" / f"{image_id}.png", mask)
    (root / "ImageSets/Segmentation/train.txt").write_text("a\nb\nc\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("d\ne\n")
    (root / "classes.json").write_text(json.dumps({"classes": TINY_CLASSES}))
    return root


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A small synthetic set (8 train, 4 val, 64 px, 3 classes), generated once per session."""
    root = tmp_path_factory.mktemp("synthetic") / "synthetic"
    generate_synthetic(root, seed=0, num_train=8, num_val=4, image_size=64, num_classes=3, max_objects=3)
    return root
