"""Pictures of stores and self-contained HTML pages (galleries, metrics tables, store diffs).

Every page is one HTML file with its images inlined as PNG data URIs and no scripts or remote
styles, so it opens offline, can be attached to a mail and is kept whole by `snakemake --report`.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any, Iterable, Mapping, Sequence

import cv2
import numpy as np
from PIL import Image

from maskforge.data.manifest import Manifest
from maskforge.evaluation import regions_to_mask
from maskforge.leaderboard import Entry, leaderboard
from maskforge.quality import HEADERS as QUALITY_HEADERS
from maskforge.quality import quality_rows
from maskforge.store import StoreReader
from maskforge.store_png import voc_palette

THUMBNAIL = 160   # longer side of a gallery picture, pixels
_STYLE = ("body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}"
          "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right;font-size:13px}th{background:#f3f3f3}"
          "td.l,th.l{text-align:left}figure{display:inline-block;margin:2px;text-align:center;font-size:11px}"
          "figure img{display:block;image-rendering:pixelated}.row{white-space:nowrap;overflow-x:auto}")


def colour_mask(mask: np.ndarray) -> np.ndarray:
    """H×W class indices (255 = ignore) → H×W×3 RGB with the VOC palette."""
    return voc_palette()[mask]


def heatmap(values: np.ndarray, image: np.ndarray | None = None) -> np.ndarray:
    """H×W map in [0, 1] → JET colours (RGB), blended half-and-half over `image` when given."""
    jet = cv2.applyColorMap(np.clip(values * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    return jet if image is None else (0.5 * jet + 0.5 * image).astype(np.uint8)


def render_store_image(store: StoreReader, image_id: str, image: np.ndarray) -> np.ndarray:
    """One store entry as an RGB picture: masks and regions in palette colours, CAMs (max over the
    labelled classes) and saliency as heat maps over the image."""
    data = store[image_id]
    if store.kind == "mask":
        return colour_mask(data)
    if store.kind == "region":
        return colour_mask(regions_to_mask(data, store.label_classes(image_id)))
    values = data.astype(np.float32)
    if store.kind == "saliency":
        return heatmap(values, image)
    return heatmap(values.max(axis=0) if len(values) else np.zeros(image.shape[:2], np.float32), image)   # cam


def thumbnail(picture: np.ndarray, size: int = THUMBNAIL) -> np.ndarray:
    h, w = picture.shape[:2]
    scale = size / max(h, w)
    return cv2.resize(picture, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_NEAREST)


def png_data_uri(picture: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _figure(picture: np.ndarray, caption: str, size: int) -> str:
    return (f'<figure><img src="{png_data_uri(thumbnail(picture, size))}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def gallery_html(manifest: Manifest, stores: Mapping[str, StoreReader], ids: Iterable[str], size: int = THUMBNAIL) -> str:
    """One row per image: the image, its GT and each store's version side by side (captioned by label)."""
    rows = []
    for image_id in ids:
        image = manifest.load_image(image_id)
        cells = [_figure(image, image_id, size)]
        gt = manifest.load_mask(image_id)
        if gt is not None:
            cells.append(_figure(colour_mask(gt), "GT", size))
        cells += [_figure(render_store_image(s, image_id, image), label, size) for label, s in stores.items() if image_id in s]
        rows.append(f'<div class="row">{"".join(cells)}</div>')
    return "\n".join(rows)


def _number(value: Any) -> str:
    return "–" if value is None else f"{value:.2f}" if isinstance(value, float) else html.escape(str(value))


def table_html(headers: Sequence[str], rows: Iterable[Sequence[Any]], left: int = 1) -> str:
    """A plain HTML table; the first `left` columns are left-aligned (names)."""
    def cells(tag: str, values: Sequence[Any]) -> str:
        return "".join(f'<{tag}{" class=l" if i < left else ""}>{_number(v) if tag == "td" else html.escape(str(v))}</{tag}>'
                       for i, v in enumerate(values))
    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return f"<table><tr>{cells('th', headers)}</tr>{body}</table>"


def metrics_table_html(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """Store → evaluation summary (metrics/<store>.json) as one table: mIoU, split, labelled
    fraction and the IoU of every class."""
    scored = {name: s for name, s in summaries.items() if "miou" in s and "per_class" in s}
    classes = list(dict.fromkeys(c for s in scored.values() for c in s["per_class"]))
    rows = [[name, s.get("split", ""), s["miou"], 100 * s["labelled_fraction"] if "labelled_fraction" in s else None,
             *(s["per_class"].get(c) for c in classes)] for name, s in scored.items()]
    return table_html(["store", "split", "mIoU", "labelled %", *classes], rows, left=2)


def page_html(title: str, sections: Sequence[tuple[str, str]]) -> str:
    """A complete offline HTML page from (heading, HTML body) sections."""
    body = "".join(f"<h2>{html.escape(h)}</h2>\n{b}\n" for h, b in sections)
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>\n{body}</body></html>\n")


def store_diff_html(diff: Mapping[str, Any], a: StoreReader, b: StoreReader, manifest: Manifest | None,
                    size: int = THUMBNAIL) -> str:
    """`maskforge store diff --html`: the diff's tables plus A, B (and image, GT) of the images
    that changed most."""
    sections = [("stores", table_html(["", "path", "stage", "images"], [
        ["A", a.path, a.meta["stage"], len(a)], ["B", b.path, b.meta["stage"], len(b)]]))]
    for key in ("params", "inputs", "provenance"):
        sections.append((f"{key} differences", table_html(["key", "A", "B"], diff[key]) if diff[key] else "<p>none</p>"))
    summary = [["common ids", diff["common"]], ["only in A", len(diff["only_a"])], ["only in B", len(diff["only_b"])]]
    if diff["kind"] == "mask":
        summary += [["pixel agreement", diff["agreement"]], ["ignore status changed", diff["ignore_changed"]]]
    sections.append(("summary", table_html(["", "value"], summary)))
    sections.append((f"per class ({diff['per_class_metric']})", table_html(["class", diff["per_class_metric"]],
                                                                           diff["per_class"].items())))
    rows = []
    for image_id, score in diff["most_changed"]:
        image = manifest.load_image(image_id) if manifest else None
        base = image if image is not None else np.zeros((*a[image_id].shape[-2:], 3), np.uint8)
        cells = [] if image is None else [_figure(image, image_id, size)]
        gt = manifest.load_mask(image_id) if manifest else None
        if gt is not None:
            cells.append(_figure(colour_mask(gt), "GT", size))
        cells += [_figure(render_store_image(s, image_id, base), f"{side} ({diff['most_changed_metric']} {score:.3f})"
                          if side == "B" else side, size) for side, s in (("A", a), ("B", b))]
        rows.append(f'<div class="row">{"".join(cells)}</div>')
    sections.append((f"most changed images ({diff['most_changed_metric']})", "\n".join(rows)))
    return page_html(f"store diff: {a.path.name} vs {b.path.name}", sections)


def leaderboard_html(entries: Sequence[Entry]) -> str:
    """The leaderboard as a table: variant, store, the store it was made from, split, mIoU, ratio."""
    return table_html(["variant", "store", "made from", "split", "mIoU", "ratio"],
                      [[e.variant, e.store, e.source or "", e.split, e.miou, e.ratio] for e in entries], left=4)


def quality_html(stores: Mapping[str, StoreReader], summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """The quality table (maskforge.quality): per scored store mIoU, precision/recall, labelled and
    foreground shares, ratio to its input store."""
    return table_html(QUALITY_HEADERS, [row.cells() for row in quality_rows(stores, summaries)], left=4)


def report_html(manifest: Manifest, stores: Mapping[str, StoreReader], summaries: Mapping[str, Mapping[str, Any]],
                images: int, size: int = THUMBNAIL) -> str:
    """The pipeline report, stores and summaries keyed by the same labels (`run_labels`): the
    leaderboard of every variant's stores, the metrics table, then one gallery per split (train:
    pseudo labels; val: predictions) of its first `images` ids with GT, the same store of every
    variant side by side. The quality table follows the leaderboard (maskforge.quality)."""
    sections = [("leaderboard (mIoU %, best first; ratio to the store it was made from)",
                 leaderboard_html(leaderboard(stores, summaries))),
                ("quality: which stage helps (GT columns use pixel ground truth; labelled/foreground % do not)",
                 quality_html(stores, summaries)),
                ("metrics (mIoU and per-class IoU, %)", metrics_table_html(summaries))]
    by_store = dict(sorted(stores.items(), key=lambda item: (item[0].rpartition("/")[2], item[0])))
    for split in manifest.splits:
        ids = [i for i in manifest.ids(split) if manifest.images[i].mask is not None][:images]
        shown = {label: s for label, s in by_store.items() if any(i in s for i in ids)}
        if ids and shown:
            sections.append((f"{split}: image, GT, " + ", ".join(shown), gallery_html(manifest, shown, ids, size)))
    return page_html("maskforge report", sections)
