"""`maskforge store diff`: how two versions of a store differ — ids, provenance, params, inputs,
per-class IoU/agreement (masks) or mean change (maps), and the images that changed most; what
`dvc diff` cannot say."""

from __future__ import annotations

import json

import numpy as np

from maskforge.metrics import IGNORE, iou_from_confusion
from maskforge.store import StoreReader, StoreError

ABSENT = "(absent)"  # shown in parameter diffs for a key one side lacks


def flatten(tree: dict, prefix: str = "") -> dict:
    """Nested dicts (params) as {"a.b.c": leaf}, in insertion order."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        flat.update(flatten(value, f"{name}.") if isinstance(value, dict) and value else {name: value})
    return flat


def _differences(a: dict, b: dict) -> list[tuple[str, str, str]]:
    """(dotted key, value in a, value in b) for every differing key, values as JSON."""
    fa, fb = flatten(a), flatten(b)

    def show(flat: dict, key: str) -> str:
        return json.dumps(flat[key], sort_keys=True) if key in flat else ABSENT

    return [(k, show(fa, k), show(fb, k)) for k in sorted(fa.keys() | fb.keys())
            if k not in fa or k not in fb or fa[k] != fb[k]]


def _pair(a: StoreReader, b: StoreReader, image_id: str) -> tuple[np.ndarray, np.ndarray]:
    """One image from both stores, which must have the same shape."""
    da, db = a[image_id], b[image_id]
    if da.shape != db.shape:
        raise StoreError(f"{b.path}: image {image_id!r} is {db.shape}, {da.shape} in {a.path} — diff stores of one dataset")
    return da, db


def _joint_histogram(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """256×256 counts of (value in a, value in b) over the pixels of two uint8 masks."""
    return np.bincount(a.astype(np.int64).ravel() * 256 + b.ravel(), minlength=256 * 256).reshape(256, 256)


def _agreement(hist: np.ndarray) -> float:
    """Equal labels / pixels labelled in either mask, in %; 100 when neither labels anything."""
    labelled = hist.sum() - hist[IGNORE, IGNORE]
    return 100 * float(np.trace(hist) - hist[IGNORE, IGNORE]) / labelled if labelled else 100.0


def _mask_diff(a: StoreReader, b: StoreReader, common: list[str]) -> dict:
    total = np.zeros((256, 256), np.int64)
    per_image = []
    for image_id in common:
        hist = _joint_histogram(*_pair(a, b, image_id))
        total += hist
        per_image.append((image_id, _agreement(hist)))
    changed = total[IGNORE].sum() + total[:, IGNORE].sum() - 2 * total[IGNORE, IGNORE]
    return {"per_class_metric": "IoU A vs B (%)",
            "per_class": dict(zip(a.classes, (100 * iou_from_confusion(total)[: len(a.classes)]).tolist())),
            "agreement": _agreement(total) if common else float("nan"),
            "ignore_changed": 100 * float(changed / total.sum()) if total.sum() else float("nan"),
            "most_changed_metric": "agreement (%)",
            "most_changed": sorted(per_image, key=lambda item: item[1])}


def _channels(data: np.ndarray, labels: np.ndarray | None) -> dict[int, np.ndarray]:
    """Class index → H×W float map of a cam/region/saliency image (saliency under index -1)."""
    data = data.astype(np.float32)
    return {-1: data} if labels is None else dict(zip(labels.tolist(), data))


def _map_diff(a: StoreReader, b: StoreReader, common: list[str]) -> dict:
    sums: dict[int, float] = {}
    counts: dict[int, int] = {}
    per_image = []
    for image_id in common:
        da, db = _pair(a, b, image_id)
        ca, cb = _channels(da, a.label_classes(image_id)), _channels(db, b.label_classes(image_id))
        deltas = {c: np.abs(ca[c] - cb[c]) for c in ca.keys() & cb.keys()}
        for c, delta in deltas.items():
            sums[c] = sums.get(c, 0.0) + float(delta.sum())
            counts[c] = counts.get(c, 0) + delta.size
        if deltas:
            per_image.append((image_id, float(np.mean([d.mean() for d in deltas.values()]))))
    names = {-1: a.kind, **dict(enumerate(a.classes))}
    return {"per_class_metric": "mean |Δ|",
            "per_class": {names[c]: sums[c] / counts[c] if counts[c] else float("nan") for c in sorted(sums)},
            "most_changed_metric": "mean |Δ|",
            "most_changed": sorted(per_image, key=lambda item: -item[1])}


def diff_stores(a: StoreReader, b: StoreReader, top: int = 10) -> dict:
    """Compare two versions of a store: ids, provenance differences and per-class change.

    Masks: per-class IoU of A vs B, pixel agreement (over pixels labelled in either) and the
    share of pixels whose ignore status changed, all in % as in the report; other kinds: per-class mean |Δ|. `most_changed`
    lists the `top` images that changed most."""
    if a.kind != b.kind:
        raise StoreError(f"{b.path}: a {b.kind} store, {a.path} is a {a.kind} store — diff two stores of one kind")
    if a.classes != b.classes:
        raise StoreError(f"{b.path}: class list differs from {a.path}'s — diff stores of one dataset")
    common = [i for i in a.ids if i in b]
    result = (_mask_diff if a.kind == "mask" else _map_diff)(a, b, common)
    result["most_changed"] = result["most_changed"][:top]
    provenance = [{key: m[key] for key in ("stage", "code_version")} for m in (a.meta, b.meta)]
    return {"kind": a.kind, "common": len(common),
            "only_a": [i for i in a.ids if i not in b], "only_b": [i for i in b.ids if i not in a],
            "provenance": _differences(*provenance),
            "params": _differences(a.params, b.params),
            "inputs": _differences(a.meta["inputs"], b.meta["inputs"]), **result}
