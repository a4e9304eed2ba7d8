"""Every stage's main() on a tiny synthetic set (CPU), in DAG order, plus bad-input behaviour."""

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from maskforge.config import load_config
from maskforge.data.manifest import Manifest
from maskforge.store import open_store
from stages import erase, evaluate, evaluate_cam, make_cam, prepare, seeds, train_cam


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Two AE rounds of the whole CAM part, each stage called as the engines call it."""
    root = tmp_path_factory.mktemp("run")
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(load_config("params.yaml", ["tests/configs/tiny.yaml"])))
    p = ["--params-file", str(params)]
    d = {name: str(root / name) for name in
         ["prepared", "cam_r0.pt", "cam_r1.pt", "curve_r0.csv", "curve_r1.csv", "cam_r0", "cam_r1",
          "regions_r0", "regions_r1", "seeds", "seeds.json", "regions_r1.json", "cam_r0.json", "sweep.csv"]}
    prepare.main(p + ["--prepared", d["prepared"]])
    for r in (0, 1):
        previous = ["--regions", d["regions_r0"]] if r else []
        train_cam.main(p + ["--prepared", d["prepared"], *previous, "--ckpt", d[f"cam_r{r}.pt"], "--curve", d[f"curve_r{r}.csv"]])
        make_cam.main(p + ["--prepared", d["prepared"], "--ckpt", d[f"cam_r{r}.pt"], *previous, "--store", d[f"cam_r{r}"]])
        erase.main(p + ["--cams", d[f"cam_r{r}"], *previous, "--store", d[f"regions_r{r}"]])
    seeds.main(p + ["--cams", d["cam_r0"], "--store", d["seeds"]])
    evaluate.main(p + ["--prepared", d["prepared"], "--store", d["seeds"], "--metrics", d["seeds.json"]])
    evaluate.main(p + ["--prepared", d["prepared"], "--store", d["regions_r1"], "--metrics", d["regions_r1.json"]])
    evaluate_cam.main(p + ["--prepared", d["prepared"], "--store", d["cam_r0"], "--metrics", d["cam_r0.json"],
                           "--sweep", d["sweep.csv"]])
    return d


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
