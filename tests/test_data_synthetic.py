import hashlib
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from maskforge.data.manifest import DatasetError
from maskforge.data.prepare import prepare_dataset
from maskforge.data.synthetic import CLASS_SPECS, compose_image, generate_synthetic, render_object

PARAMS = dict(seed=0, num_train=8, num_val=4, image_size=64, num_classes=3, max_objects=3)


def digests(root):
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in files}


def scenes(n=40, size=96, num_classes=4, max_objects=3):
    return [compose_image(np.random.default_rng([1, i]), size, num_classes, max_objects) for i in range(n)]


def test_generation_is_byte_identical(synthetic_root, tmp_path):
    generate_synthetic(tmp_path / "again", **PARAMS)
    assert digests(tmp_path / "again") == digests(synthetic_root)
    assert len(digests(synthetic_root)) == 2 * 12 + 4
    generate_synthetic(tmp_path / "other", **{**PARAMS, "seed": 1})
    first = "JPEGImages/train_00000.jpg"
    assert digests(tmp_path / "other")[first] != digests(synthetic_root)[first]


def test_regenerating_replaces_the_whole_folder(synthetic_root, tmp_path):
    generate_synthetic(tmp_path / "s", **PARAMS)
    generate_synthetic(tmp_path / "s", **{**PARAMS, "num_train": 2})
    assert len(list((tmp_path / "s" / "JPEGImages").iterdir())) == 2 + 4
    second = "JPEGImages/train_00001.jpg"  # image i depends on (seed, split, i) only
    assert digests(tmp_path / "s")[second] == digests(synthetic_root)[second]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no temp folder left


def test_labels_are_the_classes_in_the_masks(synthetic_root):
    classes = json.loads((synthetic_root / "classes.json").read_text())["classes"]
    labels = json.loads((synthetic_root / "cls_labels.json").read_text())
    assert classes == ["background", "redcap", "bluefin", "greenhorn"]
    ids = (synthetic_root / "ImageSets/Segmentation/train.txt").read_text().split()
    ids += (synthetic_root / "ImageSets/Segmentation/val.txt").read_text().split()
    assert sorted(labels) == sorted(ids) and len(ids) == 12
    for image_id in ids:
        mask_img = Image.open(synthetic_root / "SegmentationClass" / f"{image_id}.png")
        image = Image.open(synthetic_root / "JPEGImages" / f"{image_id}.jpg")
        assert mask_img.mode == "P" and mask_img.size == image.size == (64, 64) and image.mode == "RGB"
        values = set(np.unique(np.asarray(mask_img)).tolist())
        assert values <= {0, 1, 2, 3, 255} and 0 in values and 255 in values
        assert {classes[v] for v in values - {0, 255}} == set(labels[image_id])


def test_prepare_reads_the_generated_set(tmp_path):
    m = prepare_dataset("synthetic", train_split="ignored", val_split="ignored", label_file=None,
                        mask_dir="ignored", synthetic=PARAMS, out_dir=str(tmp_path))
    assert (m.format, m.label_source, len(m.ids("train")), len(m.ids("val"))) == ("synthetic", "cls_labels.json", 8, 4)
    assert m.root == str(tmp_path / "synthetic")
    assert m.load_image("val_00003").shape == (64, 64, 3)


@pytest.mark.parametrize("axes", [(8.0, 5.0), (14.0, 12.0), (18.0, 11.0)])
@pytest.mark.parametrize("part_frac", [0.11, 0.2])
@pytest.mark.parametrize("part_dir", [0.0, 1.3, 4.0])
def test_part_is_a_small_attached_fraction_of_the_object(axes, part_frac, part_dir):
    body, part = render_object(64, center=(32.0, 30.0), axes=axes, angle=0.7, wobble=(0.1, 2.0),
                               part_dir=part_dir, part_frac=part_frac)
    assert not (body & part).any()
    assert 0.08 <= part.sum() / (body.sum() + part.sum()) <= 0.2
    touching = cv2.dilate(part.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & body
    assert touching.sum() >= 3


def test_scenes_have_several_classes_and_visible_parts():
    all_scenes = scenes()
    assert np.mean([len(set(s.classes)) >= 2 for s in all_scenes]) >= 0.45
    for s in all_scenes:
        assert 1 <= len(s.classes) <= 3 and len(set(s.classes)) == len(s.classes)
        assert s.image.shape == (96, 96, 3) and s.mask.shape == (96, 96) and s.image.dtype == np.uint8
        for cls, body, part in zip(s.classes, s.bodies, s.parts):
            assert part.sum() >= 10 and 0.08 <= part.sum() / (body.sum() + part.sum()) <= 0.25  # visible, small
            assert (s.mask[body | part] == cls).all()
        assert (s.mask == 255).mean() < 0.08  # a thin void ring, not a thick one


def test_bodies_are_weak_cues_and_parts_strong_ones():
    """Bodies look alike across classes and stand out from the background; parts are unique colours."""
    body_rgb, part_rgb, contrast = {}, {}, []
    for s in scenes():
        image = s.image.astype(float)
        background = image[s.mask == 0].mean(axis=0)
        for cls, body, part in zip(s.classes, s.bodies, s.parts):
            body_rgb.setdefault(cls, []).append(image[body].mean(axis=0))
            part_rgb.setdefault(cls, []).append(image[part].mean(axis=0))
            contrast.append(image[body].mean() - background.mean())
    body_means = np.array([np.mean(body_rgb[c], axis=0) for c in sorted(body_rgb)])
    part_means = np.array([np.mean(part_rgb[c], axis=0) for c in sorted(part_rgb)])
    pairwise = lambda x: [np.abs(a - b).max() for i, a in enumerate(x) for b in x[i + 1:]]  # noqa: E731
    assert len(body_means) == 4
    assert max(pairwise(body_means)) < 20
    assert min(pairwise(part_means)) > 100
    assert min(contrast) > 30


def test_class_names_are_descriptive_and_unique():
    names = [n for n, _ in CLASS_SPECS]
    assert len(set(names)) == len(names) and all(n.isalpha() and n.islower() for n in names)


@pytest.mark.parametrize("bad", [{"num_classes": 0}, {"num_classes": 99}, {"max_objects": 0}, {"image_size": 8}])
def test_bad_parameters(tmp_path, bad):
    with pytest.raises(DatasetError, match="dataset.synthetic"):
        generate_synthetic(tmp_path / "s", **{**PARAMS, **bad})
