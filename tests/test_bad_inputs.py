"""The bad-input corpus: each defect a real dataset or config throws at the pipeline ends the stage
with exit 2 and ONE line naming the file or key and the fix, and leaves the previous outputs as
they were. Datasets are the 5-image tiny VOC folder of conftest, each case breaking one thing;
prepare runs in-process (milliseconds)."""

import json
import re
import os

import numpy as np
import pytest
import yaml
from PIL import Image

from maskforge.config import canonical_json, load_config
from maskforge.data.manifest import Manifest
from maskforge.store import StoreError, StoreWriter, check_existing, open_store, same_manifest
from stages import evaluate, prepare, train_cam
from stages._stage import run_stage


DATASET = load_config()["dataset"]


def _params(folder, **dataset):
    return {"dataset": {**DATASET, "root": str(folder), "label_file": None, **dataset}}


def run_one_line(capsys, main, argv):
    """Run a stage as its __main__ does; (the single stderr line, …) — fails unless exit 2."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_stage(main, [str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2, err
    assert len(err.splitlines()) == 1, err
    return err


def run_prepare(root, prepared, **dataset):
    prepare.main(["--params-json", canonical_json(_params(root, **dataset)), "--prepared", str(prepared)])


def _write_png(path, array, mode=None):
    Image.fromarray(array, mode=mode).save(path)


def _labels(root, doc):
    (root / "labels.json").write_text(json.dumps(doc))
    return {"label_file": "labels.json"}


def _loop(root):
    os.symlink("loop_b.jpg", root / "JPEGImages" / "loop_a.jpg")
    os.symlink("loop_a.jpg", root / "JPEGImages" / "loop_b.jpg")
    (root / "JPEGImages" / "b.jpg").unlink()
    os.symlink("loop_a.jpg", root / "JPEGImages" / "b.jpg")


# case → (break the tiny dataset in place, returning dataset overrides; what the one line must name)
CASES = {
    # the cases
    "missing root": (lambda r: {"root": str(r / "nowhere")}, r"nowhere: not a VOC-layout folder.*set dataset.root"),
    "id without image": (lambda r: (r / "JPEGImages/b.jpg").unlink(), r"JPEGImages/b\.jpg: image for id 'b' missing .*; add it"),
    "empty split": (lambda r: (r / "ImageSets/Segmentation/val.txt").write_text("\n"), r"val\.txt: split file lists no ids; fill it"),
    "zero-byte JPEG": (lambda r: (r / "JPEGImages/b.jpg").write_bytes(b""), r"b\.jpg: unreadable image .*replace the file"),
    "truncated JPEG": (lambda r: (r / "JPEGImages/c.jpg").write_bytes((r / "JPEGImages/c.jpg").read_bytes()[:200]),
                       r"c\.jpg: unreadable image .*replace the file"),
    "mask value not a class": (lambda r: _write_png(r / "SegmentationClass/b.png", np.full((6, 8), 7, np.uint8)),
                               r"b\.png: mask values \[7\] .*fix the mask"),
    "mask size differs": (lambda r: _write_png(r / "SegmentationClass/b.png", np.zeros((3, 4), np.uint8)),
                          r"b\.png: mask is 4x3 but its image is 8x6; fix the mask"),
    "colour mask": (lambda r: _write_png(r / "SegmentationClass/b.png", np.zeros((6, 8, 3), np.uint8)),
                    r"b\.png: mask has mode RGB.*convert"),
    "unknown label": (lambda r: _labels(r, {i: ["cat"] for i in "abcd"} | {"e": ["horse"]}),
                      r"labels\.json: 'e' has label 'horse'.*fix the label file"),
    "id with a slash": (lambda r: (r / "ImageSets/Segmentation/train.txt").write_text("a\nsub/b\n"),
                        r"train\.txt: id 'sub/b' is not a plain file name.*rename"),
    "no train image labelled": (lambda r: _labels(r, {i: [] for i in "abcde"}),
                                r"none of the 3 train images has an image-level label; check dataset.label_file"),
    # more of what real datasets hold
    "duplicate id": (lambda r: (r / "ImageSets/Segmentation/train.txt").write_text("a\nb\na\n"),
                     r"train\.txt: id 'a' is listed twice; remove the duplicate"),
    "16-bit mask": (lambda r: _write_png(r / "SegmentationClass/b.png", np.zeros((6, 8), np.uint16)),
                    r"b\.png: mask has mode I;16.*8-bit class indices"),
    "16-bit image": (lambda r: ((r / "JPEGImages/b.jpg").unlink(), _write_png(r / "JPEGImages/b.png", np.zeros((6, 8), np.uint16))),
                     r"b\.png: image mode I;16 .*convert the image to 8-bit RGB"),
    "unreadable classes.json": (lambda r: (r / "classes.json").write_text("{'classes': [cat]}"),
                                r"classes\.json: expected .*fix the file"),
    "background as a label": (lambda r: _labels(r, {i: ["background"] for i in "abcde"}),
                              r"labels\.json: 'a' has label 'background', not a foreground class"),
    "label file not a mapping": (lambda r: _labels(r, [["cat"]]), r"labels\.json: expected \{id: \[class names\]\}"),
    "non-UTF-8 split file": (lambda r: (r / "ImageSets/Segmentation/train.txt").write_bytes(b"a\n\xff\xfe\n"),
                             r"train\.txt: split file is not UTF-8 .*save it as UTF-8"),
    "symlink loop": (_loop, r"b\.jpg: a symlink to nothing \(broken, or a loop\)"),
    "split file missing": (lambda r: {"val_split": "vall"}, r"vall\.txt: split file missing; set dataset"),
    "mask and labels missing": (lambda r: (r / "SegmentationClass/c.png").unlink(),
                                r"c\.png: mask missing and there is no label file .*set dataset.label_file"),
    "control character in id": (lambda r: (r / "ImageSets/Segmentation/val.txt").write_text("d\ne\x07\n"),
                                r"val\.txt: id 'e\\x07' is not a plain file name"),
}


@pytest.mark.parametrize("case", CASES)
def test_prepare_rejects_in_one_line_and_keeps_the_previous_manifest(case, tiny_voc, tmp_path, capsys):
    prepared = tmp_path / "prepared"
    run_prepare(tiny_voc, prepared)
    before = (prepared / "manifest.json").read_bytes()
    breaker, expected = CASES[case]
    overrides = breaker(tiny_voc)
    argv = ["--params-json", canonical_json(_params(tiny_voc, **(overrides if isinstance(overrides, dict) else {}))),
            "--prepared", prepared]
    err = run_one_line(capsys, prepare.main, argv)
    assert err.startswith("maskforge: ")
    assert re.search(expected, err), err
    assert (prepared / "manifest.json").read_bytes() == before          # nothing downstream touched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared", "voc"]   # no temporary folder left


@pytest.mark.parametrize("key, value", [
    ("cam.train.scale_range", [1.3, 0.7]),
    ("cam.spg.head_thresholds", [0.05, 0.5]),
    ("cam.spg.attention_thresholds", [0.05, 0.7]),
    ("cam.train.epochs", "ten"),
    ("cam.train.lr", -1.0),
])
def test_config_errors_name_the_key_before_anything_runs(key, value, tmp_path, capsys):
    config = yaml.safe_load(open("params.yaml"))
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[leaf] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(config))
    ckpt = tmp_path / "models" / "cam_r0.pt"
    err = run_one_line(capsys, train_cam.main, ["--params-file", tmp_path / "params.yaml", "--prepared", tmp_path / "nope",
                                                "--ckpt", ckpt, "--curve", tmp_path / "curve.csv"])
    assert f"key '{key}'" in err
    assert not ckpt.exists()


def test_unlabelled_train_images_are_skipped_with_their_ids_and_conversions_recorded(tiny_voc, tmp_path, capsys):
    """Policy: a train image without labels leaves the train split, its id recorded; an image read
    in another mode than RGB is converted, and the manifest counts the conversions by mode."""
    _labels(tiny_voc, {"a": ["cat"], "b": [], "c": ["dog"], "d": [], "e": ["cat"]})
    Image.open(tiny_voc / "JPEGImages/a.jpg").convert("L").save(tiny_voc / "JPEGImages/a.jpg")
    Image.open(tiny_voc / "JPEGImages/c.jpg").convert("CMYK").save(tiny_voc / "JPEGImages/c.jpg")
    run_prepare(tiny_voc, tmp_path / "prepared", label_file="labels.json")
    manifest = Manifest.read(tmp_path / "prepared" / "manifest.json")
    assert manifest.ids("train") == ["a", "c"] and manifest.ids("val") == ["d", "e"]
    assert manifest.stats["train"]["skipped_without_labels"] == ["b"]
    assert manifest.stats["converted_to_rgb"] == {"CMYK": 1, "L": 1}
    assert manifest.load_image("c").shape == (6, 8, 3)
    err = capsys.readouterr().err
    assert "1 train images have no label and are left out (e.g. 'b'" in err and "converted to RGB when read: 1 CMYK, 1 L" in err


def _store(path, manifest_sha, ids=("a", "b")):
    with StoreWriter(path, kind="mask", stage="seeds", params={}, inputs={}, manifest=manifest_sha,
                     classes=["background", "cat", "dog"]) as writer:
        for image_id in ids:
            writer.add(image_id, np.zeros((6, 8), np.uint8))


@pytest.mark.parametrize("ids", [("a", "b"), ("x", "y")], ids=["overlapping ids", "no common id"])
def test_a_store_of_another_dataset_is_refused_naming_store_manifest_and_fix(ids, tiny_voc, tmp_path, capsys):
    """A store made from another manifest is never scored (no silent score, no null metrics)."""
    run_prepare(tiny_voc, tmp_path / "prepared")
    manifest = Manifest.read(tmp_path / "prepared" / "manifest.json")
    _store(tmp_path / "theirs", "0" * 64, ids)
    _store(tmp_path / "ours", manifest.sha256)
    metrics = tmp_path / "metrics.json"
    err = run_one_line(capsys, evaluate.main, ["--prepared", tmp_path / "prepared", "--store", tmp_path / "theirs",
                                               "--metrics", metrics, "--params-json", "{}"])
    assert f"{tmp_path / 'theirs'}: made from another dataset manifest" in err
    assert str(tmp_path / "prepared" / "manifest.json") in err and "re-run `seeds`" in err
    assert not metrics.exists()
    with pytest.raises(StoreError, match="made from another dataset manifest than"):
        same_manifest(open_store(tmp_path / "ours"), open_store(tmp_path / "theirs"))
    assert open_store(tmp_path / "ours", manifest=manifest).manifest_sha256 == manifest.sha256


def test_a_truncated_shard_is_found_before_anything_is_planned(tmp_path):
    """What the Snakefile checks at parse time: a store whose shard lost bytes names the shard and
    the command that rebuilds it; missing stores (not built yet) are fine."""
    _store(tmp_path / "cams", "0" * 64)
    check_existing([tmp_path / "cams", tmp_path / "not_built_yet"])
    shard = tmp_path / "cams" / "shard-00000.h5"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(StoreError, match=rf"shard-00000\.h5: \d+ bytes, meta\.json says \d+ bytes .*`rm -r {tmp_path / 'cams'}`"):
        check_existing([tmp_path / "cams"])
