"""Quality guard on real training (CPU-minutes): on the synthetic set, AE rounds raise the recall
of the mined regions, and the seeds at the GT-free tau beat trivial label-aware baselines. (The MSRC guard is in test_quality_msrc.py, so the two run in parallel.)

Full MSRC runs are experiments (see the README); these keep quality from silently rotting.
"""

from pathlib import Path

import pytest

from maskforge.data.manifest import Manifest
from pipeline import metric, run_cam_pipeline, trivial_baseline_mious

pytestmark = pytest.mark.slow


def test_ae_rounds_raise_recall_of_mined_regions_on_synthetic(tmp_path):
    run = run_cam_pipeline(tmp_path, ["tests/configs/quality.yaml"], rounds=2, refine=False)
    recall = [metric(run[f"regions_r{r}.json"], "fg_recall") for r in range(2)]
    precision = [metric(run[f"regions_r{r}.json"], "fg_precision") for r in range(2)]
    print(f"synthetic AE: fg recall {recall}, precision {precision}")
    assert recall[1] > recall[0] + 3, recall
    assert min(precision) > 25, precision          # erasing mines objects, not arbitrary pixels
    baselines = trivial_baseline_mious(Manifest.read(Path(run["prepared"]) / "manifest.json"))
    seeds = metric(run["seeds.json"], "miou")     # at the pipeline's own GT-free tau (cam.bg_threshold: otsu)
    print(f"synthetic seeds {seeds:.1f} mIoU (CAM at the GT-best tau {metric(run['cam_r0.json'], 'miou'):.1f}), "
          f"trivial baselines {baselines}")
    assert seeds > max(baselines.values()) + 5
