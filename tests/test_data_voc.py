import json
from pathlib import Path

import numpy as np
import pytest

from maskforge.data.manifest import DatasetError
from maskforge.data.prepare import prepare_dataset
from maskforge.data.voc import VOC_CLASSES, read_voc, voc_palette, write_index_png

SPLITS = {"train": "train", "val": "val"}
MSRC = Path("/work/shared/datasets/msrc")


def test_labels_and_stats_from_masks(tiny_voc):
    m = read_voc(tiny_voc, splits=SPLITS, label_file=None)
    assert (m.format, m.label_source, m.classes) == ("voc", "masks", ["background", "cat", "dog"])
    assert m.ids("train") == ["a", "b", "c"] and m.ids("val") == ["d", "e"]
    assert {i: r.labels for i, r in m.images.items()} == {
        "a": (1, 0), "b": (0, 1), "c": (1, 1), "d": (0, 0), "e": (1, 0)}
    assert m.images["e"].image.endswith("e.png")
    assert (m.images["a"].height, m.images["a"].width) == (6, 8)
    train = m.stats["train"]
    assert train["class_counts"] == {"cat": 2, "dog": 2}
    assert train["void_fraction"] == round(8 / (3 * 48), 6)
    assert train["split_file"] == "ImageSets/Segmentation/train.txt"
    assert m.stats["val"]["images_without_labels"] == 1


def test_root_cls_labels_json_is_preferred_over_masks(tiny_voc):
    labels = {"a": ["dog"], "b": ["dog"], "c": [], "d": ["cat", "dog"], "e": ["cat"]}
    (tiny_voc / "cls_labels.json").write_text(json.dumps(labels))
    m = read_voc(tiny_voc, splits=SPLITS, label_file=None)
    assert m.label_source == "cls_labels.json"
    assert m.images["a"].labels == (0, 1) and m.images["d"].labels == (1, 1)


def test_irn_npy_labels_with_int_and_str_keys(tiny_voc):
    for old, new in (("a", "2007_000030"), ("b", "2007_000031")):
        (tiny_voc / "JPEGImages" / f"{old}.jpg").rename(tiny_voc / "JPEGImages" / f"{new}.jpg")
    (tiny_voc / "ImageSets/Segmentation/train.txt").write_text("2007_000030\n2007_000031\n")
    np.save(tiny_voc / "cls_labels.npy", {2007000030: np.array([1.0, 0.0]), "2007_000031": np.array([0.0, 1.0]),
                                          "d": np.zeros(2), "e": np.ones(2)})
    m = read_voc(tiny_voc, splits=SPLITS, label_file="cls_labels.npy")
    assert m.label_source == "cls_labels.npy"
    assert m.images["2007_000030"].labels == (1, 0) and m.images["2007_000031"].labels == (0, 1)
    assert m.images["2007_000030"].mask is None  # no GT for it: allowed when labels come from a file
    assert m.stats["train"]["n_masks"] == 0 and m.stats["train"]["void_fraction"] is None


def test_missing_image_names_id_and_path(tiny_voc):
    (tiny_voc / "JPEGImages" / "b.jpg").unlink()
    with pytest.raises(DatasetError, match=r"JPEGImages/b\.jpg: image for id 'b' missing"):
        read_voc(tiny_voc, splits=SPLITS, label_file=None)


def test_unknown_label_name(tiny_voc):
    (tiny_voc / "labels.json").write_text(json.dumps({i: ["cat"] for i in "abcd"} | {"e": ["horse"]}))
    with pytest.raises(DatasetError, match=r"labels\.json: 'e' has label 'horse'"):
        read_voc(tiny_voc, splits=SPLITS, label_file="labels.json")


@pytest.mark.parametrize("name, content, why", [
    ("labels.json", "{oops", "not valid JSON"),
    ("labels.json", json.dumps(["a"]), "expected {id: \\[class names\\]}"),
    ("labels.json", json.dumps({i: ["cat"] for i in "abcd"}), "no labels for id 'e'"),
    ("labels.json", json.dumps({i: "cat" for i in "abcde"}), "must be a list of class names"),
    ("labels.npy", {i: np.ones(3) for i in "abcde"}, "have length 3, expected 2"),
    ("labels.npy", np.zeros(3), "not a pickled"),
    ("labels.txt", "a cat", "unknown label file type"),
    ("absent.json", None, "label file missing"),
])
def test_bad_label_file(tiny_voc, name, content, why):
    path = tiny_voc / name
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        np.save(path, content)
    with pytest.raises(DatasetError, match=why) as err:
        read_voc(tiny_voc, splits=SPLITS, label_file=name)
    assert name in str(err.value)


def test_mask_errors(tiny_voc):
    (tiny_voc / "SegmentationClass" / "c.png").unlink()
    with pytest.raises(DatasetError, match=r"c\.png: mask missing"):
        read_voc(tiny_voc, splits=SPLITS, label_file=None)
    write_index_png(tiny_voc / "SegmentationClass" / "c.png", np.full((6, 8), 9, np.uint8))
    with pytest.raises(DatasetError, match=r"mask values \[9\]"):
        read_voc(tiny_voc, splits=SPLITS, label_file=None)
    write_index_png(tiny_voc / "SegmentationClass" / "c.png", np.zeros((5, 8), np.uint8))
    with pytest.raises(DatasetError, match="mask is 8x5 but its image is 8x6"):
        read_voc(tiny_voc, splits=SPLITS, label_file=None)


def test_split_file_errors(tiny_voc):
    with pytest.raises(DatasetError, match=r"train_aug\.txt: split file missing"):
        read_voc(tiny_voc, splits={"train": "train_aug", "val": "val"}, label_file=None)
    (tiny_voc / "ImageSets/Segmentation/val.txt").write_text("d\nd\n")
    with pytest.raises(DatasetError, match="'d' is listed twice"):
        read_voc(tiny_voc, splits=SPLITS, label_file=None)


def test_voc_defaults_and_palette(tiny_voc):
    (tiny_voc / "classes.json").unlink()
    m = read_voc(tiny_voc, splits=SPLITS, label_file=None)
    assert m.classes == VOC_CLASSES and len(m.images["a"].labels) == 20
    palette = voc_palette()
    assert palette[3:6] == [128, 0, 0] and palette[15 * 3:16 * 3] == [192, 128, 128]
    assert palette[255 * 3:] == [224, 224, 192]


def test_prepare_dispatch(tiny_voc, tmp_path):
    m = prepare_dataset(str(tiny_voc), train_split="train", val_split="val", label_file=None,
                        mask_dir="SegmentationClass", synthetic={}, out_dir=str(tmp_path / "out"))
    assert m.format == "voc" and m.ids("val") == ["d", "e"]
    with pytest.raises(DatasetError, match="not a VOC-layout folder"):
        prepare_dataset(str(tmp_path), train_split="train", val_split="val", label_file=None,
                        mask_dir="SegmentationClass", synthetic={}, out_dir=str(tmp_path / "out"))


def test_msrc(tmp_path):
    if not MSRC.is_dir():
        pytest.skip(f"{MSRC} is absent")
    m = read_voc(MSRC, splits=SPLITS, label_file=None)
    assert (len(m.ids("train")), len(m.ids("val")), len(m.classes)) == (296, 49, 16)
    assert m.classes[:3] == ["background", "cow", "sheep"] and m.label_source == "masks"
    assert m.stats["train"]["images_without_labels"] == 0
    assert sum(m.stats["train"]["class_counts"].values()) >= 296
    assert 0.1 < m.stats["train"]["void_fraction"] < 0.35
    image_id = m.ids("val")[0]
    image, mask = m.load_image(image_id), m.load_mask(image_id)
    assert image.shape[:2] == mask.shape and image.shape[2] == 3
    present = set(np.unique(mask).tolist()) - {0, 255}
    assert present == set(m.label_ids(image_id).tolist())
    m.write(tmp_path / "msrc.json")
    assert m.__class__.read(tmp_path / "msrc.json") == m
