"""Every stage's main() on a tiny synthetic set (CPU), in DAG order, plus bad-input behaviour."""

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from maskforge.cli import main as maskforge_main
from maskforge.config import load_config
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


def test_the_tiny_classifier_learns_to_separate_the_classes(run):
    """The fixtures' CAMs mean something: training lowers the multi-label loss below ln 2 (what an
    untrained classifier scores), and the trained classifier ranks each train image's present
    classes above its absent ones more often than chance."""
    import torch
    from maskforge.cam_methods import network_from_checkpoint
    from maskforge.checkpoint import load_model
    losses = [float(line.split(",")[2]) for line in open(run["train_cam_r0.csv"]).read().splitlines()[1:]]
    assert losses[-1] < np.log(2) - 0.02, losses
    manifest = Manifest.read(f"{run['prepared']}/manifest.json")
    model = load_model(run["cam_r0.pt"], "cam", lambda state: network_from_checkpoint(
        state, len(manifest.classes) - 1, "cam"), torch.device("cpu"))
    ids = manifest.ids("train")
    with torch.no_grad():
        scores = model(torch.stack([torch.tensor(manifest.load_image(i)).permute(2, 0, 1).float() for i in ids])).numpy()
    present = np.stack([manifest.multi_hot(i) for i in ids]) == 1
    ranked_above = (scores[present][:, None] > scores[~present][None, :]).mean()
    assert ranked_above > 0.6, ranked_above


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
    assert open(run["cam_r0_sweep.csv"]).read().splitlines()[0] == "threshold,miou"


def test_sweep_command_scores_cached_cams_without_inference(run, tmp_path, capsys):
    out = tmp_path / "sweep.csv"
    assert maskforge_main(["sweep", run["cam_r0"], "--manifest", f"{run['prepared']}/manifest.json",
                           "--thresholds", "0.1", "0.3", "--out", str(out)]) == 0
    assert out.read_text() == open(run["cam_r0_sweep.csv"]).read()       # same numbers as evaluate_cam's sweep
    assert "best bg_threshold" in capsys.readouterr().out


def test_assembly_and_crf_stores_are_scored(run):
    manifest = Manifest.read(f"{run['prepared']}/manifest.json")
    with open_store(run["assemble_ae"], kind="mask") as assembled, open_store(run["assemble_ae_crf"]) as refined:
        for image_id in assembled.ids:
            assert set(np.unique(refined[image_id])) <= {0, *manifest.label_ids(image_id).tolist()}   # CRF labels all
            assert set(np.unique(assembled[image_id])) <= {0, 255, *manifest.label_ids(image_id).tolist()}
    ignored = json.load(open(run["assemble_ae_ignored.json"]))
    assert ignored["ignored_fraction"] == pytest.approx(
        sum(v for k, v in ignored.items() if k.endswith("_fraction") and k != "ignored_fraction"))
    assert json.load(open(run["assemble_ae_crf.json"]))["labelled_fraction"] == pytest.approx(1)
    saliency = json.load(open(run["saliency.json"]))
    assert set(saliency["per_class"]) == {"background", "foreground"} and saliency["threshold"] == 0.10


def test_curve_and_checkpoint_written(run):
    assert open(run["train_cam_r0.csv"]).read().startswith("epoch,step,loss,lr")


def test_missing_input_store_is_one_line_and_exit_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "stages.seeds", "--cams", str(tmp_path / "nope"),
                             "--store", str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "nope" in result.stderr
    assert not (tmp_path / "out").exists()


def test_bad_params_file_is_one_line_and_exit_2(tmp_path):
    config = load_config()
    config["cam"]["bg_treshold"] = config["cam"].pop("bg_threshold")   # a typo, whatever the value in params.yaml
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(config))
    result = subprocess.run([sys.executable, "-m", "stages.seeds", "--params-file", str(bad), "--cams", "x",
                             "--store", str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 2 and "cam.bg_treshold" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_report_is_one_offline_page_with_metrics_plots_and_galleries(run, tmp_path):
    from stages import report
    stores = [run[name] for name in ("cam_r0", "seeds", "saliency", "regions_r1", "assemble_ae_crf")]
    metrics = [run[f"{name}.json"] for name in ("seeds", "cam_r0", "saliency")]
    curves = [run["train_cam_r0.csv"], run["cam_r0_sweep.csv"]]
    out, plots = tmp_path / "index.html", tmp_path / "plots"
    report.main(["--params-json", json.dumps({"report": {"images": 2, "thumbnail": 48}}), "--prepared", run["prepared"],
                 "--stores", *stores, "--metrics", *metrics, "--curves", *curves, "--html", str(out),
                 "--plots", str(plots)])
    page = out.read_text()
    # 2 train rows (image, GT, every store; none holds val), the colour bar, a training curve, a sweep
    assert page.count("<img") == 2 * (2 + len(stores)) + 1 + 2
    assert sorted(p.name for p in plots.iterdir()) == ["cam_r0_sweep.png", "train_cam_r0.png"]
    assert page.count('src="data:image/png;base64,') == page.count("<img")    # every picture inlined
    assert "<tr class=best>" in page and "per-class precision / recall" in page
    assert "<script" not in page and "src=\"http" not in page and "href=" not in page
    seeds = json.loads(open(run["seeds.json"]).read())
    assert f"{seeds['miou']:.2f}" in page
    cams = json.loads(open(run["cam_r0.json"]).read())
    assert page.index("leaderboard") < page.index("quality: which stage helps") < page.index("metrics (")
    assert (f"<td class=l>default</td><td class=l>seeds</td><td class=l>cam_r0</td><td class=l>train</td>"
            f"<td>{seeds['miou']:.2f}</td><td>{seeds['miou'] / cams['miou']:.2f}</td>") in page


def test_the_sweep_plot_marks_the_threshold_the_seeds_used_on_that_cam_store(run):
    from maskforge.viz import chosen_thresholds
    stores = {name: open_store(run[name]) for name in ("cam_r0", "cam_r1", "seeds")}
    tau = stores["seeds"].meta["derived"]["bg_threshold"]        # what cam.bg_threshold (otsu) chose
    assert 0 < tau < 1 and chosen_thresholds(stores) == {"cam_r0": {"seeds": tau}}


def test_store_diff_writes_an_html_page_of_the_most_changed_images(run, tmp_path):
    out = tmp_path / "diff.html"
    assert maskforge_main(["store", "diff", run["seeds"], run["seeds_crf"], "--top", "3", "--html", str(out),
                           "--manifest", f"{run['prepared']}/manifest.json"]) == 0
    page = out.read_text()
    assert page.count("<img") == 3 * 4 + 1                         # image, GT, A, B per changed image; colour bar
    assert "IoU A vs B" in page and "crf" in page


def test_grid_reruns_one_stage_on_cached_stores_and_reuses_results(run, tmp_path, monkeypatch):
    from maskforge_workflow.grid import run_grid
    (tmp_path / "data/stores").mkdir(parents=True)
    (tmp_path / "data/prepared").symlink_to(run["prepared"])
    (tmp_path / "data/stores/cam_r0").symlink_to(run["cam_r0"])
    config = load_config("params.yaml", ["tests/configs/tiny.yaml"])
    config["cam"]["infer"]["shards"] = 1                              # the fixture's CAM store is whole
    rows = run_grid(config, "seeds", {"cam.bg_threshold": [0.1, 0.5]}, root=tmp_path)
    assert sorted(r["cam.bg_threshold"] for r in rows) == [0.1, 0.5]
    assert rows[0]["miou"] >= rows[1]["miou"]
    store = tmp_path / "data/sweeps/seeds/cam.bg_threshold=0.1/seeds"
    assert open_store(store).params == {"cam": {"bg_threshold": 0.1}}
    written = store.stat().st_mtime_ns
    run_grid(config, "seeds", {"cam.bg_threshold": [0.1]}, root=tmp_path)
    assert store.stat().st_mtime_ns == written                       # reused, not recomputed
    with pytest.raises(Exception, match="does not read"):
        run_grid(config, "seeds", {"crf.gt_prob": [0.5]}, root=tmp_path)


def test_sharded_make_cam_parts_read_as_the_whole_store(run, tmp_path):
    """cam.infer.shards = 2: two jobs write parts of one store; readers take the parts and see the whole."""
    from stages import make_cam, seeds
    infer = {**load_config("params.yaml", ["tests/configs/tiny.yaml"])["cam"]["infer"], "shards": 2}
    params = ["--params-json", json.dumps({"cam": {"method": "cam", "infer": infer}})]
    parts = [str(tmp_path / "cams" / f"part-{i:05d}-of-00002") for i in range(2)]
    for i, part in enumerate(parts):
        make_cam.main(params + ["--prepared", run["prepared"], "--ckpt", run["cam_r0.pt"], "--store", part, "--part", str(i)])
    with open_store(tmp_path / "cams", kind="cam") as sharded, open_store(run["cam_r0"]) as whole:
        assert sorted(sharded.ids) == sorted(whole.ids)
        assert [len(open_store(p)) for p in parts] == [6, 6]
        for image_id in whole.ids:
            np.testing.assert_allclose(sharded[image_id], whole[image_id], atol=1e-3)
    seeds.main(["--params-json", json.dumps({"cam": {"bg_threshold": 0.15}}), "--cams", *parts,
                "--store", str(tmp_path / "seeds")])
    assert sorted(open_store(tmp_path / "seeds").ids) == sorted(open_store(run["cam_r0"]).ids)
    from maskforge.config import ConfigError
    with pytest.raises(ConfigError, match="part 2 of 2"):
        make_cam.main(params + ["--prepared", run["prepared"], "--ckpt", run["cam_r0.pt"], "--store", parts[0], "--part", "2"])
