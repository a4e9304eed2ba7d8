"""The synthetic dataset: a seeded VOC-layout set built to have real data's WSSS difficulty.

Every object is a large, weakly discriminative BODY (a light wobbly ellipse whose faint stripe
angle and slight colour cast are the only class cues) plus a small, highly discriminative PART
(a saturated class-unique disc, 10-18% of the object) at one end of it. A classifier reaches a low
loss from the parts alone, so plain CAM covers the part and under-covers the body; erasing the part
leaves the body evidence, which a classifier can still learn, and the bodies stand out from the
darker textured backgrounds so saliency finds them.
"""

from __future__ import annotations

import colorsys
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .manifest import DatasetError
from .voc import write_index_png

# (name, saturated part colour); the body looks alike across classes.
CLASS_SPECS = [
    ("redcap", (225, 25, 30)),
    ("bluefin", (25, 60, 235)),
    ("greenhorn", (30, 205, 40)),
    ("goldtail", (245, 205, 0)),
    ("pinkear", (240, 40, 200)),
    ("cyanbeak", (0, 215, 225)),
    ("orangespot", (255, 120, 0)),
    ("violetwing", (135, 35, 225)),
]
BODY_RGB = np.array([190.0, 175.0, 155.0])  # shared body colour; classes add only a faint cast
BODY_CAST = 6.0        # amplitude of the class colour cast (grey levels)
STRIPE_AMPLITUDE = 9.0  # amplitude of the class-angled body stripes (grey levels)
STRIPE_PERIOD = 6.0     # pixels
PART_FRACTION = (0.11, 0.20)  # part disc area / body ellipse area (≈ 10-18% of the object)
AXIS_RANGE = (0.16, 0.26)     # body semi-major axis / image size
ASPECT_RANGE = (0.45, 0.75)   # semi-minor / semi-major axis
PART_DIR_SPREAD = 0.4         # the part sits at one end of the major axis, ± this (radians, 1 sd)
MAX_OVERLAP = 0.12            # of an earlier object's area that a later one may cover
SPLIT_CODES = {"train": 0, "val": 1}


@dataclass(frozen=True)
class Scene:
    image: np.ndarray          # uint8 H×W×3 RGB
    mask: np.ndarray           # uint8 H×W: 0 background, class index, 255 void ring around objects
    classes: tuple[int, ...]   # class index of each object instance, in paint order
    bodies: tuple[np.ndarray, ...]  # visible body pixels of each instance (bool H×W)
    parts: tuple[np.ndarray, ...]   # visible part pixels of each instance (bool H×W)


def class_names(num_classes: int) -> list[str]:
    """["background", first `num_classes` names of CLASS_SPECS]."""
    if not 1 <= num_classes <= len(CLASS_SPECS):
        raise DatasetError(f"synthetic num_classes={num_classes}: must be 1..{len(CLASS_SPECS)}; "
                           "change dataset.synthetic.num_classes in params.yaml")
    return ["background"] + [name for name, _ in CLASS_SPECS[:num_classes]]


def stripe_angle(cls: int, num_classes: int) -> float:
    """Body stripe angle of class `cls` (1-based), radians in [0, π/2] so that horizontal flips
    (angle -> -angle) never turn one class's stripes into another's."""
    return 0.0 if num_classes == 1 else (cls - 1) / (num_classes - 1) * np.pi / 2


def render_object(size: int, center: tuple[float, float], axes: tuple[float, float], angle: float,
                  wobble: tuple[float, float], part_dir: float, part_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint bool size×size masks (body, part) of one object: a three-lobed wobbly ellipse
    (semi-axes `axes`, rotated by `angle`, lobe amplitude/phase `wobble`) and a disc of area
    `part_frac` × πab centred on its outline in the ellipse's parametric direction `part_dir`."""
    (cy, cx), (a, b), (amp, phase) = center, axes, wobble
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    cos, sin = np.cos(angle), np.sin(angle)
    u = ((x - cx) * cos + (y - cy) * sin) / a
    v = (-(x - cx) * sin + (y - cy) * cos) / b
    blob = np.hypot(u, v) <= 1.0 + amp * np.sin(3 * np.arctan2(v, u) + phase)
    edge = 1.0 + amp * np.sin(3 * part_dir + phase)
    pu, pv = a * edge * np.cos(part_dir), b * edge * np.sin(part_dir)
    px, py = cx + pu * cos - pv * sin, cy + pu * sin + pv * cos
    part = np.hypot(x - px, y - py) <= np.sqrt(part_frac * a * b)
    return blob & ~part, part


def compose_image(rng: np.random.Generator, image_size: int, num_classes: int, max_objects: int) -> Scene:
    """One image: a textured background and 1..max_objects objects of distinct classes (repeats only
    when max_objects > num_classes); a later object covers at most MAX_OVERLAP of an earlier one
    and stays 2 px clear of its part. Void (255) is the 1-px ring just outside each object."""
    size = image_size
    image = _background(rng, size)
    n = int(rng.integers(1, max_objects + 1))
    wanted = rng.choice(num_classes, size=n, replace=n > num_classes) + 1
    order = np.zeros((size, size), np.uint8)  # paint order: 0 background, i = the i-th object
    classes: list[int] = []
    parts: list[np.ndarray] = []
    for cls in wanted:
        placed = _place(rng, size, order, parts)
        if placed is None:
            continue
        body, part = placed
        classes.append(int(cls))
        parts.append(part)
        order[body | part] = len(classes)
        _paint_body(rng, image, body, int(cls), num_classes)
        image[part] = np.asarray(CLASS_SPECS[cls - 1][1], np.float64) * rng.uniform(0.88, 1.0)
    image += rng.normal(0.0, 3.0, image.shape)
    void = cv2.dilate(order, np.ones((3, 3), np.uint8)) > order
    mask = np.array([0, *classes], np.uint8)[order]
    mask[void] = 255
    visible = [(order == i + 1) & ~void for i in range(len(classes))]
    return Scene(
        image=np.clip(np.rint(image), 0, 255).astype(np.uint8),
        mask=mask,
        classes=tuple(classes),
        bodies=tuple(v & ~p for v, p in zip(visible, parts)),
        parts=tuple(v & p for v, p in zip(visible, parts)),
    )


def generate_synthetic(out_dir: str | os.PathLike, *, seed: int, num_train: int, num_val: int,
                       image_size: int, num_classes: int, max_objects: int) -> None:
    """Write the synthetic set in VOC layout (JPEGImages/, SegmentationClass/, ImageSets/Segmentation/,
    classes.json, cls_labels.json from the generation record). Image i of a split depends only on
    (seed, split, i), so the bytes are reproducible; built in a temp folder, then renamed."""
    names = class_names(num_classes)
    if image_size < 32 or max_objects < 1 or num_train < 1 or num_val < 1:
        raise DatasetError(f"synthetic set: image_size={image_size} (>= 32), max_objects={max_objects}, "
                           f"num_train={num_train}, num_val={num_val} (>= 1); fix dataset.synthetic in params.yaml")
    out = Path(out_dir)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (tmp / sub).mkdir(parents=True)
    labels: dict[str, list[str]] = {}
    for split, count in (("train", num_train), ("val", num_val)):
        ids = [f"{split}_{i:05d}" for i in range(count)]
        for i, image_id in enumerate(ids):
            scene = compose_image(np.random.default_rng([seed, SPLIT_CODES[split], i]),
                                  image_size, num_classes, max_objects)
            Image.fromarray(scene.image).save(tmp / "JPEGImages" / f"{image_id}.jpg", quality=95)
            write_index_png(tmp / "SegmentationClass" / f"{image_id}.png", scene.mask)
            labels[image_id] = [names[c] for c in sorted(set(scene.classes))]
        (tmp / "ImageSets/Segmentation" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    (tmp / "classes.json").write_text(json.dumps({"classes": names}, indent=1) + "\n")
    (tmp / "cls_labels.json").write_text(json.dumps(labels, indent=1) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


def _place(rng: np.random.Generator, size: int, order: np.ndarray,
           parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """Sample an object that lies inside the image and respects the overlap rules (None after 40 tries)."""
    keep_clear = cv2.dilate(np.any([np.zeros((size, size), bool), *parts], axis=0).astype(np.uint8),
                            np.ones((5, 5), np.uint8)) > 0  # 2 px around earlier parts
    areas = np.bincount(order.ravel(), minlength=len(parts) + 1)
    for _ in range(40):
        a = rng.uniform(*AXIS_RANGE) * size
        b = a * rng.uniform(*ASPECT_RANGE)
        body, part = render_object(
            size, center=(rng.uniform(0, size), rng.uniform(0, size)), axes=(a, b),
            angle=rng.uniform(0, np.pi), wobble=(rng.uniform(0.0, 0.12), rng.uniform(0, 2 * np.pi)),
            part_dir=np.pi * rng.integers(2) + rng.normal(0, PART_DIR_SPREAD), part_frac=rng.uniform(*PART_FRACTION))
        obj = body | part
        if obj[[0, -1], :].any() or obj[:, [0, -1]].any() or (obj & keep_clear).any():
            continue
        covered = np.bincount(order[obj], minlength=len(parts) + 1)
        if np.all(covered[1:] <= MAX_OVERLAP * areas[1:]):
            return body, part
    return None


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """float H×W×3: two muted dark colours blended by coarse + medium smooth noise, plus grain."""
    colours = [np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.1, 0.45), rng.uniform(0.15, 0.5))) * 255
               for _ in range(2)]
    fine = rng.uniform(0.0, 0.5)
    weight = (1 - fine) * _smooth_noise(rng, size, int(rng.integers(2, 6))) \
        + fine * _smooth_noise(rng, size, int(rng.integers(10, 25)))
    image = colours[0] * (1 - weight[..., None]) + colours[1] * weight[..., None]
    return image + rng.normal(0.0, rng.uniform(2.0, 8.0), (size, size, 1))


def _paint_body(rng: np.random.Generator, image: np.ndarray, body: np.ndarray, cls: int, num_classes: int) -> None:
    """Fill `body` with the shared body colour, the class's faint cast and class-angled stripes."""
    hue = 2 * np.pi * (cls - 1) / num_classes
    cast = BODY_CAST * np.cos(hue - np.array([0, 2 * np.pi / 3, 4 * np.pi / 3]))
    theta = stripe_angle(cls, num_classes)
    y, x = np.nonzero(body)
    stripes = STRIPE_AMPLITUDE * np.sin(2 * np.pi * (x * np.cos(theta) + y * np.sin(theta)) / STRIPE_PERIOD
                                        + rng.uniform(0, 2 * np.pi))
    image[y, x] = BODY_RGB + cast + rng.uniform(-15, 15) + stripes[:, None]


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """float H×W in [0, 1]: a cells×cells uniform grid upsampled bicubically."""
    grid = rng.uniform(0, 1, (cells, cells)).astype(np.float32)
    return np.clip(cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC), 0, 1).astype(np.float64)
