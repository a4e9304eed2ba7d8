import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from maskforge.data.manifest import DatasetError, Manifest
from maskforge.data.prepare import prepare_dataset

# Category ids are sparse and listed out of order, as in COCO: class index follows the id.
CATEGORIES = [{"id": 7, "name": "zebra"}, {"id": 1, "name": "person"}, {"id": 3, "name": "car"}]
H, W = 10, 12


def box(x0, y0, x1, y1):
    """A rectangle polygon covering pixels x0..x1-1, y0..y1-1."""
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def crowd_rle(y0, y1, x0, x1):
    """Uncompressed (column-major) RLE of a rectangle, as COCO stores crowd regions."""
    m = np.zeros((H, W), np.uint8)
    m[y0:y1, x0:x1] = 1
    flat = m.flatten(order="F")
    counts, value, run = [], 0, 0
    for v in flat:
        if v != value:
            counts.append(run)
            value, run = v, 0
        run += 1
    return {"counts": counts + [run], "size": [H, W]}


@pytest.fixture
def fake_coco(tmp_path):
    """2 train images (one with a person over a car plus a crowd of persons), 1 val image."""
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    layout = {
        "train2014": [
            (1, [(1, box(0, 0, 6, 6), 0), (3, box(4, 4, 10, 9), 0), (1, crowd_rle(0, 3, 9, 12), 1)]),
            (2, [(7, box(2, 2, 5, 5), 0)]),
        ],
        "val2014": [(3, [])],
    }
    for split, images in layout.items():
        (root / split).mkdir()
        doc = {"images": [], "annotations": [], "categories": CATEGORIES}
        for image_id, anns in images:
            name = f"COCO_{split}_{image_id:012d}.jpg"
            Image.new("RGB", (W, H), (image_id * 40, 0, 0)).save(root / split / name)
            doc["images"].append({"id": image_id, "file_name": name, "height": H, "width": W})
            for cat, segm, crowd in anns:
                doc["annotations"].append({"id": len(doc["annotations"]) + 100 * image_id, "image_id": image_id,
                                           "category_id": cat, "segmentation": segm, "iscrowd": crowd,
                                           "area": 1.0, "bbox": [0, 0, 1, 1]})
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))
    return root


def prepare(root, out):
    return prepare_dataset(str(root), train_split="train2014", val_split="val2014", label_file=None,
                           mask_dir="SegmentationClass", synthetic={}, out_dir=str(out))


def test_coco_manifest_and_masks(fake_coco, tmp_path):
    m = prepare(fake_coco, tmp_path / "out")
    assert (m.format, m.label_source) == ("coco", "coco-annotations")
    assert m.classes == ["background", "person", "car", "zebra"]
    first, second = "COCO_train2014_000000000001", "COCO_train2014_000000000002"
    assert m.ids("train") == [first, second] and m.ids("val") == ["COCO_val2014_000000000003"]
    assert m.label_ids(first).tolist() == [1, 2] and m.label_ids(second).tolist() == [3]
    assert m.stats["val"]["images_without_labels"] == 1
    assert m.images[first].mask == str(tmp_path / "out" / "coco_masks" / f"{first}.png")

    mask = m.load_mask(first)
    assert mask.shape == (H, W)
    assert mask[1, 1] == 1 and mask[7, 7] == 2
    assert mask[5, 5] == 2           # the later annotation (car) is painted over the person
    assert (mask[0:3, 9:12] == 255).all()  # crowd -> void
    assert mask[9, 0] == 0
    assert m.stats["train"]["void_fraction"] == round(9 / (2 * H * W), 6)
    assert np.count_nonzero(m.load_mask(second) == 3) > 0
    assert m.load_image(second).shape == (H, W, 3)


def test_coco_is_deterministic_and_round_trips(fake_coco, tmp_path):
    digests = []
    for out in ("out1", "out2"):
        m = prepare(fake_coco, tmp_path / out)
        m.write(tmp_path / out / "manifest.json")
        assert Manifest.read(tmp_path / out / "manifest.json") == m
        masks = (tmp_path / out / "coco_masks").iterdir()
        digests.append(sorted(hashlib.md5(p.read_bytes()).hexdigest() for p in masks))
    assert digests[0] == digests[1] and len(digests[0]) == 3


def test_coco_errors(fake_coco, tmp_path):
    with pytest.raises(DatasetError, match=r"instances_train\.json: annotation file missing"):
        prepare_dataset(str(fake_coco), train_split="train", val_split="val2014", label_file=None,
                        mask_dir="SegmentationClass", synthetic={}, out_dir=str(tmp_path / "out"))
    (fake_coco / "val2014" / "COCO_val2014_000000000003.jpg").unlink()
    with pytest.raises(DatasetError, match="COCO_val2014_000000000003.jpg: image for id"):
        prepare(fake_coco, tmp_path / "out")
