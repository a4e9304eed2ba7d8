"""Quality guards on real training (CPU-minutes): AE raises recall; seeds beat trivial baselines.

Full MSRC runs are experiments (see the README); these keep quality from silently rotting.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from maskforge.data.manifest import Manifest
from maskforge.metrics import ConfusionMatrix
from pipeline import run_cam_pipeline

pytestmark = pytest.mark.slow
MSRC = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "msrc"


def trivial_baseline_mious(manifest: Manifest) -> dict[str, float]:
    """mIoU on train of two label-aware baselines: all background, and the whole image as the
    image's first labelled class."""
    scores = {}
    for name, fill in {"all_background": lambda i: 0, "whole_image_first_label": lambda i: manifest.label_ids(i)[0]}.items():
        matrix = ConfusionMatrix(len(manifest.classes))
        for image_id in manifest.ids("train"):
            gt = manifest.load_mask(image_id)
            matrix.update(np.full(gt.shape, fill(image_id), np.uint8), gt)
        scores[name] = matrix.miou()
    return scores


def metric(path, key):
    return json.loads(Path(path).read_text())[key]


def test_ae_rounds_raise_recall_of_mined_regions_on_synthetic(tmp_path):
    run = run_cam_pipeline(tmp_path, ["tests/configs/quality.yaml"], rounds=3, refine=False)
    recall = [metric(run[f"regions_r{r}.json"], "fg_recall") for r in range(3)]
    precision = [metric(run[f"regions_r{r}.json"], "fg_precision") for r in range(3)]
    print(f"synthetic AE: fg recall {recall}, precision {precision}")
    assert recall[1] > recall[0] + 3 and recall[2] > recall[1] + 3, recall
    assert min(precision) > 25, precision          # erasing mines objects, not arbitrary pixels
    baselines = trivial_baseline_mious(Manifest.read(Path(run["prepared"]) / "manifest.json"))
    assert metric(run["cam_r0.json"], "miou") > max(baselines.values()) + 5


@pytest.fixture
def msrc_subset(tmp_path):
    """Every 8th MSRC train id (37 real images) as a VOC-layout folder of links."""
    if not MSRC.exists():
        pytest.skip("../shared/datasets/msrc is not present")
    root = tmp_path / "msrc_subset"
    (root / "ImageSets/Segmentation").mkdir(parents=True)
    for sub in ("JPEGImages", "SegmentationClass"):
        (root / sub).mkdir()
    train = (MSRC / "ImageSets/Segmentation/train.txt").read_text().split()[::8]
    val = (MSRC / "ImageSets/Segmentation/val.txt").read_text().split()[:4]
    for image_id in train + val:
        (root / "JPEGImages" / f"{image_id}.jpg").symlink_to(MSRC / "JPEGImages" / f"{image_id}.jpg")
        (root / "SegmentationClass" / f"{image_id}.png").symlink_to(MSRC / "SegmentationClass" / f"{image_id}.png")
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(train) + "\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(val) + "\n")
    (root / "classes.json").symlink_to(MSRC / "classes.json")
    return root


def test_msrc_seeds_beat_trivial_baselines(msrc_subset, tmp_path):
    overlay = tmp_path / "root.yaml"
    overlay.write_text(yaml.safe_dump({"dataset": {"root": str(msrc_subset)}}))
    run = run_cam_pipeline(tmp_path / "run", ["tests/configs/msrc_guard.yaml", overlay], rounds=1, refine=False)
    baselines = trivial_baseline_mious(Manifest.read(Path(run["prepared"]) / "manifest.json"))
    cam_miou = metric(run["cam_r0.json"], "miou")
    print(f"MSRC guard: CAM seeds {cam_miou:.1f} mIoU (best tau {metric(run['cam_r0.json'], 'bg_threshold')}), "
          f"baselines {baselines}")
    assert cam_miou > max(baselines.values()) + 3
