"""Pictures of stores and self-contained HTML pages (galleries, metrics tables, store diffs).

Every page is one HTML file with its images inlined as PNG data URIs and no scripts or remote
styles, so it opens offline, can be attached to a mail and is kept whole by `snakemake --report`.
"""

from __future__ import annotations

import base64
import html
import io
import os
from typing import Any, Collection, Iterable, Mapping, Sequence

import cv2
import numpy as np
from PIL import Image

from maskforge.atomic import atomic_write_text
from maskforge.data.manifest import Manifest
from maskforge.degenerate import store_warning
from maskforge.evaluation import regions_to_mask
from maskforge.leaderboard import Entry, leaderboard, run_labels
from maskforge.metric_files import read_csv
from maskforge.metrics import IGNORE
from maskforge.quality import HEADERS as QUALITY_HEADERS
from maskforge.quality import quality_rows, seeds_threshold
from maskforge.plots import colour_bar_png, sweep_png, training_curve_png
from maskforge.store import StoreReader, input_digest, replace_folder
from maskforge.store_png import voc_palette

THUMBNAIL = 160   # longer side of a gallery picture, pixels
_STYLE = ("body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}"
          "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right;font-size:13px}th{background:#f3f3f3}"
          "td.l,th.l{text-align:left}figure{display:inline-block;margin:2px;text-align:center;font-size:11px}"
          "figure img{display:block;image-rendering:pixelated}.row{white-space:nowrap;overflow-x:auto}"
          "tr.best td{font-weight:bold;background:#fff6d5}.plot{display:inline-block;margin:4px}"
          ".warn{background:#fdecea;border-left:4px solid #c0392b;padding:4px 8px;margin:2px 0}"
          ".sw{display:inline-block;width:14px;height:14px;border:1px solid #888;vertical-align:middle;margin:0 4px 0 10px}"
          "details{margin:.3em 0 1em}summary{cursor:pointer;color:#1a5fb4}")
SWEEP_SUFFIX = "_sweep"   # evaluate_cam's threshold sweep CSV: metrics/<cam store>_sweep.csv
PAGE_WIDTH = 1400     # pixels the gallery rows are sized for (image, GT and the stores that matter)
FIGURE_MARGIN = 8     # pixels around a gallery picture
# Gallery columns first, in this order (by store name; variants beside the default); the other
# stores (more CAM rounds, regions, saliency, IR labels) are one click away below the gallery.
LEGEND_HEADING = "colours (masks: class palette; CAMs and saliency: heat map)"
GT_STORE = "gt"       # the ground_truth stage's store: the upper bound, never marked as the best store
MAIN_STORES = ("cam_r0", "seeds", "seeds_crf", "assemble_ae", "assemble_ae_crf", "irn", "predict")


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
    return png_uri(buffer.getvalue())


def png_uri(png: bytes) -> str:
    """PNG bytes as a data URI (pages inline every picture)."""
    return "data:image/png;base64," + base64.b64encode(png).decode()


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


def gallery_columns(stores: Mapping[str, StoreReader], size: int) -> tuple[dict[str, StoreReader], dict[str, StoreReader]]:
    """The stores a gallery shows as columns (MAIN_STORES first, as many as fit PAGE_WIDTH beside the
    image and its GT) and the rest. The GT store is left out: the gallery shows the GT already."""
    def rank(label: str) -> tuple[int, str]:
        variant, _, name = label.rpartition("/")
        return (MAIN_STORES.index(name) if name in MAIN_STORES else len(MAIN_STORES), variant)
    shown = sorted((label for label, s in stores.items() if s.meta["stage"] != "ground_truth"), key=rank)
    fit = max(1, PAGE_WIDTH // (size + FIGURE_MARGIN) - 2)
    return {label: stores[label] for label in shown[:fit]}, {label: stores[label] for label in shown[fit:]}


def split_gallery_html(manifest: Manifest, stores: Mapping[str, StoreReader], ids: Sequence[str], size: int) -> str:
    """A split's gallery: the stores that matter as columns, the others in a collapsed second gallery."""
    main, rest = gallery_columns(stores, size)
    body = gallery_html(manifest, main, ids, size)
    if rest:
        body += (f"<details><summary>{len(rest)} more stores: {html.escape(', '.join(rest))}</summary>\n"
                 f"{gallery_html(manifest, rest, ids, size)}</details>")
    return body


def legend_html(classes: Sequence[str]) -> str:
    """The palette colour of every class (and of ignored pixels), then the heat maps' colour bar."""
    palette = voc_palette()
    swatches = "".join(f'<span class="sw" style="background:rgb{tuple(int(v) for v in palette[i])}"></span>{html.escape(c)}'
                       for i, c in [*enumerate(classes), (IGNORE, "ignore (255)")])
    bar = f'<img src="{png_uri(colour_bar_png())}" alt="heat-map colour bar">'
    return f"<p>{swatches}</p>\n<p>{bar}</p>"


def _number(value: Any) -> str:
    return "–" if value is None else f"{value:.2f}" if isinstance(value, float) else html.escape(str(value))


def table_html(headers: Sequence[str], rows: Iterable[Sequence[Any]], left: int = 1, marked: Collection[int] = ()) -> str:
    """A plain HTML table; the first `left` columns are left-aligned (names); rows whose index is in
    `marked` are highlighted (the best of their split)."""
    def cells(tag: str, values: Sequence[Any]) -> str:
        return "".join(f'<{tag}{" class=l" if i < left else ""}>{_number(v) if tag == "td" else html.escape(str(v))}</{tag}>'
                       for i, v in enumerate(values))
    body = "".join(f"<tr{' class=best' if n in marked else ''}>{cells('td', row)}</tr>" for n, row in enumerate(rows))
    return f"<table><tr>{cells('th', headers)}</tr>{body}</table>"


def metrics_table_html(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """Store → evaluation summary (metrics/<store>.json) as one table: mIoU, split, labelled
    fraction and the IoU of every class."""
    scored = {name: s for name, s in summaries.items() if "miou" in s and "per_class" in s}
    classes = list(dict.fromkeys(c for s in scored.values() for c in s["per_class"]))
    rows = [[name, s.get("split", ""), s["miou"], 100 * s["labelled_fraction"] if "labelled_fraction" in s else None,
             *(s["per_class"].get(c) for c in classes)] for name, s in scored.items()]
    return table_html(["store", "split", "mIoU", "labelled %", *classes], rows, left=2,
                      marked=best_per_split([(row[1], None if _is_gt(row[0]) else row[2]) for row in rows]))


def _is_gt(label: str) -> bool:
    return label.rpartition("/")[2] == GT_STORE


def best_per_split(scores: Sequence[tuple[str, float]]) -> set[int]:
    """Indices of the (split, mIoU) pairs with the highest mIoU of their split (None: unscored)."""
    best = {split: max((m for s, m in scores if s == split and m is not None), default=None) for split, _ in scores}
    return {n for n, (split, miou) in enumerate(scores) if miou is not None and miou == best[split]}


def precision_recall_table_html(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """Per-class precision / recall (%) of every scored mask store: what a pseudo label gets
    right (precision) and how much of each class it covers (recall)."""
    scored = {name: s for name, s in summaries.items() if "precision" in s and "recall" in s}
    classes = list(dict.fromkeys(c for s in scored.values() for c in s["precision"]))

    def pair(s: Mapping[str, Any], c: str) -> str:
        p, r = s["precision"].get(c), s["recall"].get(c)
        return "–" if p is None and r is None else " / ".join("–" if v is None else f"{100 * v:.0f}" for v in (p, r))
    return table_html(["store", "split", *classes], [[name, s.get("split", ""), *(pair(s, c) for c in classes)]
                                                      for name, s in scored.items()], left=2)


def plots_html(pictures: Mapping[str, bytes]) -> str:
    """PNG plots side by side (each titled inside the picture)."""
    return "".join(f'<img class="plot" src="{png_uri(png)}" alt="{html.escape(name)}" title="{html.escape(name)}">'
                   for name, png in pictures.items())


def warnings_html(warnings: Sequence[str]) -> str:
    return "".join(f'<p class="warn">{html.escape(w)}</p>' for w in warnings)


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
        summary += [["pixel agreement (%)", diff["agreement"]], ["ignore status changed (%)", diff["ignore_changed"]]]
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
        cells += [_figure(render_store_image(s, image_id, base), f"{side} ({diff['most_changed_metric']} {_number(score)})"
                          if side == "B" else side, size) for side, s in (("A", a), ("B", b))]
        rows.append(f'<div class="row">{"".join(cells)}</div>')
    sections.append((LEGEND_HEADING, legend_html(a.classes)))
    sections.append((f"most changed images ({diff['most_changed_metric']})", "\n".join(rows)))
    return page_html(f"store diff: {a.path.name} vs {b.path.name}", sections)


def leaderboard_html(entries: Sequence[Entry]) -> str:
    """The leaderboard as a table: variant, store, the store it was made from, split, mIoU, ratio."""
    return table_html(["variant", "store", "made from", "split", "mIoU", "ratio"],
                      [[e.variant, e.store, e.source or "", e.split, e.miou, e.ratio] for e in entries], left=4,
                      marked=best_per_split([(e.split, None if _is_gt(e.store) else e.miou) for e in entries]))


def quality_html(stores: Mapping[str, StoreReader], summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """The quality table (maskforge.quality): per scored store mIoU, precision/recall, labelled and
    foreground shares, ratio to its input store."""
    return table_html(QUALITY_HEADERS, [row.cells() for row in quality_rows(stores, summaries)], left=4)


def report_html(manifest: Manifest, stores: Mapping[str, StoreReader], summaries: Mapping[str, Mapping[str, Any]],
                images: int, size: int = THUMBNAIL, curves: Mapping[str, bytes] | None = None,
                sweeps: Mapping[str, bytes] | None = None, warnings: Sequence[str] = ()) -> str:
    """The pipeline report, stores and summaries keyed by the same labels (`run_labels`): warnings
    about degenerate stores, the leaderboard of every variant's stores, the metrics table (the
    best store of each split highlighted), per-class precision/recall, the plots (name → PNG) of
    the training `curves` and threshold `sweeps`, the colour legend, then one gallery per split (train:
    pseudo labels; val: predictions) of its first `images` ids with GT, the same store of every
    variant side by side. The quality table follows the leaderboard (maskforge.quality)."""
    sections = [("warnings", warnings_html(warnings))] if warnings else []
    sections += [("leaderboard (mIoU %, best first, best of each split highlighted; ratio to the store it was made from)",
                  leaderboard_html(leaderboard(stores, summaries))),
                 ("quality: which stage helps (GT columns use pixel ground truth; labelled/foreground % do not)",
                  quality_html(stores, summaries)),
                 ("metrics (mIoU and per-class IoU, %)", metrics_table_html(summaries)),
                 ("per-class precision / recall (%)", precision_recall_table_html(summaries))]
    if curves:
        sections.append(("training curves (loss; val mIoU where scored)", plots_html(curves)))
    if sweeps:
        sections.append(("CAM threshold sweeps (best τ starred; dashed: the τ the seeds used)", plots_html(sweeps)))
    sections.append((LEGEND_HEADING, legend_html(manifest.classes)))
    for split in manifest.splits:
        ids = [i for i in manifest.ids(split) if manifest.images[i].mask is not None][:images]
        shown = {label: s for label, s in stores.items() if any(i in s for i in ids)}
        if ids and shown:
            sections.append((f"{split}: image, GT and the stores", split_gallery_html(manifest, shown, ids, size)))
    return page_html("maskforge report", sections)


def chosen_thresholds(stores: Mapping[str, StoreReader]) -> dict[str, dict[str, float]]:
    """CAM store label → {seeds store label: the τ (cam.bg_threshold) it used on that CAM store}."""
    seeds = {label: s for label, s in stores.items() if s.meta["stage"] == "seeds"}
    if not seeds:
        return {}
    cam_of_digest = {input_digest(s.path): label for label, s in stores.items() if s.kind == "cam"}
    chosen: dict[str, dict[str, float]] = {}
    for label, store in seeds.items():
        cams = cam_of_digest.get(store.meta["inputs"].get("cams", ""))
        if cams is not None:
            chosen.setdefault(cams, {})[label] = seeds_threshold(store)
    return chosen


def report_plots(tables: Mapping[str, Sequence[Mapping[str, Any]]],
                 stores: Mapping[str, StoreReader]) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """PNG plots of CSV rows by label (`run_labels`): training curves (rows with `epoch`, `loss`)
    and threshold sweeps (rows with `threshold`, `miou`; `<cam store>_sweep`, the best τ and the
    τ each seeds store used on that CAM store marked); other tables are left out."""
    chosen = chosen_thresholds(stores)
    curves = {label: training_curve_png(rows, label) for label, rows in tables.items() if rows and "epoch" in rows[0]}
    sweeps = {label: sweep_png(rows, chosen.get(label.removesuffix(SWEEP_SUFFIX), {}), label)
              for label, rows in tables.items() if rows and "threshold" in rows[0]}
    return curves, sweeps


def write_report(html_path: str | os.PathLike, plots_dir: str | os.PathLike, manifest: Manifest,
                 stores: Mapping[str, StoreReader], summaries: Mapping[str, Mapping[str, Any]],
                 curve_paths: Sequence[str | os.PathLike], images: int, size: int = THUMBNAIL) -> list[str]:
    """Write the report page and its plots as PNG files (`<plots_dir>/<label>.png`, a variant's
    label `variant/x` as `variant__x.png`; the folder replaced whole); return the degenerate-store
    warnings it shows."""
    curves, sweeps = report_plots({label: read_csv(p) for label, p in zip(run_labels(curve_paths), curve_paths)}, stores)
    warnings = [w for label, s in stores.items() if (w := store_warning(label, s))]
    with replace_folder(plots_dir) as tmp:
        for label, png in {**curves, **sweeps}.items():
            (tmp / f"{label.replace('/', '__')}.png").write_bytes(png)
    atomic_write_text(html_path, report_html(manifest, stores, summaries, images, size, curves, sweeps, warnings))
    return warnings
