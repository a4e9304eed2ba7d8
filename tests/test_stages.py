"""Every stage's main() on a tiny synthetic set (CPU), in DAG order, plus bad-input behaviour."""

import json
import subprocess
import sys

import numpy as np
import pytest

from maskforge.cli import main as maskforge_main
from maskforge.data.manifest import Manifest
from maskforge.store import open_store
from pipeline import run_cam_pipeline


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Two AE rounds of the whole CAM part on the tiny config."""
    return run_cam_pipeline(tmp_path_factory.mktemp("run"), ["tests/configs/tiny.yaml"], rounds=2)


def test_manifest_lists_the_synthetic_split(run):
    manifest = Manifest.read(f"{run['prepared']}/manifest.json")
    assert len(manifest.ids("train")) == 12 and len(manifest.ids("val")) == 4
    assert len(manifest.stats["mean_pixel"]) == 3


def test_cam_store_holds_normalised_maps_of_labelled_classes(run):
    manifest = Manifest.read(f"{run['prepared']}/manifest.json")
    with open_store(run["cam_r0"], kind="cam") as cams:
        assert sorted(cams.ids) == sorted(manifest.ids("train"))
        for image_id in cams.ids:
            cam, classes = cams[image_id], cams.label_classes(image_id)
            assert list(classes) == list(manifest.label_ids(image_id))
            record = manifest.images[image_id]
            assert cam.shape == (len(classes), record.height, record.width)
            assert 0 <= cam.min() and cam.max() <= 1.001       # each map divided by (its max + 1e-5), IRN


def test_regions_accumulate_over_rounds(run):
    with open_store(run["regions_r0"]) as r0, open_store(run["regions_r1"]) as r1:
        for image_id in r0.ids:
            assert (r1[image_id] >= r0[image_id]).all()
        assert r1.meta["inputs"].keys() == {"cams", "regions"}


def test_metrics_files_have_the_documented_keys(run):
    seeds_metrics = json.load(open(run["seeds.json"]))
    assert {"store", "split", "miou", "per_class"} <= seeds_metrics.keys()
    assert seeds_metrics["split"] == "train" and 0 <= seeds_metrics["miou"] <= 100
    regions = json.load(open(run["regions_r1.json"]))
    assert 0 <= regions["fg_recall"] <= 100
    assert regions["fg_precision"] is None or 0 <= regions["fg_precision"] <= 100   # None: nothing mined
    cam = json.load(open(run["cam_r0.json"]))
    assert cam["bg_threshold"] in (0.1, 0.3)
    assert open(run["sweep.csv"]).read().splitlines()[0] == "threshold,miou"


def test_sweep_command_scores_cached_cams_without_inference(run, tmp_path, capsys):
    out = tmp_path / "sweep.csv"
    assert maskforge_main(["sweep", run["cam_r0"], "--manifest", f"{run['prepared']}/manifest.json",
                           "--thresholds", "0.1", "0.3", "--out", str(out)]) == 0
    assert out.read_text() == open(run["sweep.csv"]).read()       # same numbers as evaluate_cam's sweep
    assert "best bg_threshold" in capsys.readouterr().out


def test_assembly_and_crf_stores_are_scored(run):
    manifest = Manifest.read(f"{run['prepared']}/manifest.json")
    with open_store(run["assemble_ae"], kind="mask") as assembled, open_store(run["assemble_ae_crf"]) as refined:
        for image_id in assembled.ids:
            assert set(np.unique(refined[image_id])) <= {0, *manifest.label_ids(image_id).tolist()}   # CRF labels all
            assert set(np.unique(assembled[image_id])) <= {0, 255, *manifest.label_ids(image_id).tolist()}
    ignored = json.load(open(run["ignored.json"]))
    assert ignored["ignored_fraction"] == pytest.approx(
        sum(v for k, v in ignored.items() if k.endswith("_fraction") and k != "ignored_fraction"))
    assert json.load(open(run["assemble_ae_crf.json"]))["labelled_fraction"] == pytest.approx(1)
    saliency = json.load(open(run["saliency.json"]))
    assert set(saliency["per_class"]) == {"background", "foreground"} and saliency["threshold"] == 0.10


def test_curve_and_checkpoint_written(run):
    assert open(run["curve_r0.csv"]).read().startswith("epoch,step,loss,lr")


def test_missing_input_store_is_one_line_and_exit_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "stages.seeds", "--cams", str(tmp_path / "nope"),
                             "--store", str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "nope" in result.stderr
    assert not (tmp_path / "out").exists()


def test_bad_params_file_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text(open("params.yaml").read().replace("bg_threshold: 0.15", "bg_treshold: 0.15"))
    result = subprocess.run([sys.executable, "-m", "stages.seeds", "--params-file", str(bad), "--cams", "x",
                             "--store", str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 2 and "cam.bg_treshold" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
