import json

import numpy as np
import pytest

from maskforge.data.manifest import DatasetError, ImageRecord, Manifest
from maskforge.data.voc import read_voc

SPLITS = {"train": "train", "val": "val"}


@pytest.fixture
def manifest(tiny_voc):
    return read_voc(tiny_voc, splits=SPLITS, label_file=None)


def test_round_trip_is_equal_and_byte_identical(manifest, tmp_path):
    manifest.write(tmp_path / "m1.json")
    again = Manifest.read(tmp_path / "m1.json")
    assert again == manifest
    again.write(tmp_path / "m2.json")
    assert (tmp_path / "m1.json").read_bytes() == (tmp_path / "m2.json").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["m1.json", "m2.json"]  # no temp files


def test_same_content_in_another_insertion_order_gives_same_bytes(manifest, tmp_path):
    shuffled = Manifest(**{**manifest.__dict__, "images": dict(reversed(manifest.images.items()))})
    manifest.write(tmp_path / "a.json")
    shuffled.write(tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_split_order_is_file_order(manifest, tmp_path):
    manifest.splits["train"] = ["c", "a", "b"]
    manifest.write(tmp_path / "m.json")
    assert Manifest.read(tmp_path / "m.json").ids("train") == ["c", "a", "b"]


def test_labels_accessors(manifest):
    assert manifest.label_ids("c").tolist() == [1, 2]
    assert manifest.label_ids("c").dtype == np.int64
    assert manifest.label_ids("d").tolist() == []
    hot = manifest.multi_hot("b")
    assert hot.dtype == np.float32 and hot.tolist() == [0.0, 1.0]


def test_load_image_and_mask(manifest, tiny_voc):
    image = manifest.load_image("e")
    assert image.shape == (6, 8, 3) and image.dtype == np.uint8
    mask = manifest.load_mask("a")
    assert mask.dtype == np.uint8 and mask.shape == (6, 8)
    assert set(np.unique(mask)) == {0, 1, 255}
    no_mask = Manifest(**{**manifest.__dict__, "images": {
        **manifest.images, "a": ImageRecord(manifest.images["a"].image, None, 6, 8, (1, 0))}})
    assert no_mask.load_mask("a") is None


def test_unknown_split_and_id(manifest):
    with pytest.raises(DatasetError, match="unknown split 'test'"):
        manifest.ids("test")
    with pytest.raises(DatasetError, match="'zz'"):
        manifest.label_ids("zz")


def test_missing_image_file_names_it(manifest, tiny_voc):
    (tiny_voc / "JPEGImages" / "a.jpg").unlink()
    with pytest.raises(DatasetError, match="a.jpg: file missing"):
        manifest.load_image("a")


@pytest.mark.parametrize("text, why", [
    (None, "manifest not found"),
    ("{not json", "not a readable manifest"),
    ('{"root": "x"}', "expected keys"),
    ("[]", "expected keys"),
])
def test_read_rejects_missing_or_corrupt_files(tmp_path, text, why):
    path = tmp_path / "manifest.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(DatasetError, match=why) as err:
        Manifest.read(path)
    assert str(path) in str(err.value) and "re-run the prepare stage" in str(err.value)


@pytest.mark.parametrize("edit, why", [
    (lambda d: d.update(manifest_version=99), "manifest_version"),
    (lambda d: d["images"]["a"].update(label_ids=[7]), "label id 7"),
    (lambda d: d["images"]["a"].pop("height"), "bad image record"),
    (lambda d: d["splits"]["train"].append("zz"), "'zz'"),
])
def test_read_rejects_wrong_content(manifest, tmp_path, edit, why):
    manifest.write(tmp_path / "m.json")
    doc = json.loads((tmp_path / "m.json").read_text())
    edit(doc)
    (tmp_path / "m.json").write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match=why):
        Manifest.read(tmp_path / "m.json")
