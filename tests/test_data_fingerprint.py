"""The dataset is a dependency of prepare: its content hash, what each engine sees, and that an
edited mask reruns prepare in both engines while a touched file reruns nothing."""

import json
import os

import numpy as np

from maskforge.config import load_config
from maskforge.data import fingerprint
from maskforge.data.fingerprint import FINGERPRINT, dataset_paths, dataset_sha256, write_fingerprint
from maskforge.data.voc import write_index_png
from maskforge_workflow.dvc_yaml import dvc_yaml
from maskforge_workflow.rules import snakemake_rules

DATASET = load_config()["dataset"]


def voc(root, **keys):
    return {**DATASET, "root": str(root), "label_file": None, **keys}


def test_paths_are_what_prepare_reads(tiny_voc, tmp_path):
    assert dataset_paths(voc(tiny_voc)) == [str(tiny_voc / p) for p in
                                            ("ImageSets/Segmentation", "JPEGImages", "SegmentationClass", "classes.json")]
    (tiny_voc / "labels.json").write_text("{}")
    assert dataset_paths(voc(tiny_voc, label_file="labels.json"))[-1] == str(tiny_voc / "labels.json")
    assert dataset_paths(DATASET) == []                                   # synthetic: its params make it
    (tmp_path / "coco/annotations").mkdir(parents=True)
    (tmp_path / "coco/annotations/instances_train2014.json").write_text("{}")
    (tmp_path / "coco/train2014").mkdir()
    coco = voc(tmp_path / "coco", train_split="train2014", val_split="val2014")
    assert dataset_paths(coco) == [str(tmp_path / "coco/annotations/instances_train2014.json"),
                                   str(tmp_path / "coco/train2014")]


def test_hash_follows_content_not_mtimes_and_reuses_unchanged_files(tiny_voc, tmp_path, monkeypatch):
    cache, dataset = tmp_path / "cache.json", voc(tiny_voc)
    first = dataset_sha256(dataset, cache)
    assert first == dataset_sha256(dataset, None)
    hashed = []
    monkeypatch.setattr(fingerprint, "file_sha256", lambda p, real=fingerprint.file_sha256: hashed.append(p) or real(p))
    os.utime(tiny_voc / "JPEGImages/a.jpg")                              # touched: rehashed, same content
    assert dataset_sha256(dataset, cache) == first and hashed == [str(tiny_voc / "JPEGImages/a.jpg")]
    mask = tiny_voc / "SegmentationClass/b.png"
    write_index_png(mask, np.ones((6, 8), np.uint8))
    assert dataset_sha256(dataset, cache) != first
    (tiny_voc / "ImageSets/Segmentation/val.txt").write_text("d\n")
    assert len({first, dataset_sha256(dataset, cache), dataset_sha256(voc(tiny_voc), None)}) == 2


def test_fingerprint_file_is_rewritten_only_when_the_content_changes(tiny_voc, tmp_path):
    path, cache, dataset = tmp_path / "dataset.json", tmp_path / "cache.json", voc(tiny_voc)
    assert write_fingerprint(dataset, path, cache)
    os.utime(path, ns=(1, 1))
    os.utime(tiny_voc / "classes.json")
    assert not write_fingerprint(dataset, path, cache) and path.stat().st_mtime_ns == 1
    (tiny_voc / "classes.json").write_text(json.dumps({"classes": ["background", "cat", "dog", "cow"]}))
    assert write_fingerprint(dataset, path, cache) and json.loads(path.read_text())["root"] == str(tiny_voc)


def test_each_engine_sees_the_dataset_as_an_input_of_prepare(tiny_voc):
    config = load_config()
    config["dataset"] = voc(tiny_voc)
    prepare = dvc_yaml(config)["stages"]["prepare"]
    assert set(dataset_paths(config["dataset"])) <= set(prepare["deps"])
    rule = next(r for r in snakemake_rules(config) if r.name == "prepare")
    assert rule.inputs({})["dataset"] == [FINGERPRINT]
    assert all(r.inputs(dict(next(iter(r.by_wildcards)))).get("dataset") == [] for r in snakemake_rules(config)
               if r.name != "prepare")
