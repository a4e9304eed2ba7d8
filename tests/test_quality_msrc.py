"""Quality guard on real data: SEAM seeds of a short training on a few dozen MSRC images beat the
trivial baselines (all background; the whole image as its first label), and the refined store the
segmentation network learns from by default (AE-PSL assembly + CRF) beats those seeds (every
refinement stage must improve its input on real data). One method only, SEAM,
which runs the plain CAM's backbone, data and inference code too: a guard per method would push
the suite past its 10-minute budget on 2 cores."""

from pathlib import Path

import pytest
import yaml

from maskforge.data.manifest import Manifest
from pipeline import metric, run_cam_pipeline, trivial_baseline_mious

pytestmark = pytest.mark.slow
MSRC = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "msrc"


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


def test_msrc_seam_seeds_beat_trivial_baselines_and_refinement_beats_seeds(msrc_subset, tmp_path):
    method = "seam"
    overlay = tmp_path / "root.yaml"
    overlay.write_text(yaml.safe_dump({"dataset": {"root": str(msrc_subset)}, "cam": {"method": method}}))
    run = run_cam_pipeline(tmp_path / "run", ["tests/configs/msrc_guard.yaml", overlay], rounds=1, refine=True)
    baselines = trivial_baseline_mious(Manifest.read(Path(run["prepared"]) / "manifest.json"))
    cam_miou, seeds, refined = (metric(run[name], "miou") for name in ("cam_r0.json", "seeds.json", "assemble_ae_crf.json"))
    print(f"MSRC guard: {method} CAM {cam_miou:.1f} mIoU (best tau {metric(run['cam_r0.json'], 'bg_threshold')}), "
          f"seeds {seeds:.1f}, assemble_ae_crf {refined:.1f}, baselines {baselines}")
    assert cam_miou > max(baselines.values()) + 3
    assert refined > seeds + 1
