"""Dense-CRF throughput: `map_in_pool(crf_from_labels, …)` with 1 and 2 worker processes on MSRC.

Seed-like labels are made from each train image's GT mask so the CRF has real work: every class
region is eroded (a band of `--band` pixels around every boundary becomes 255 = unsure), and a
further random `--unsure` fraction of pixels becomes 255 (fixed seed); GT void stays 255. The
timed part is the whole pool run, worker start-up included (images are loaded beforehand).
Prints seconds, images/s and speed-up per worker count, checks that every worker count gives the
same masks, and prints the mIoU against GT of the seeds (255 = miss) and of the CRF output.

    python benchmarks/bench_crf.py [--images 48] [--workers 1 2] [--band 8] [--unsure 0.3]
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import cv2
import numpy as np

from _table import Row
from maskforge.crf import CRFParams, crf_from_labels
from maskforge.parallel import map_in_pool
from maskforge.data.voc import read_voc
from maskforge.metrics import ConfusionMatrix

MSRC = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "msrc"
UNSURE = 255


def seed_like(gt: np.ndarray, band: int, unsure: float, rng: np.random.Generator) -> np.ndarray:
    """GT with each class region eroded by `band` pixels and a random `unsure` fraction set to 255."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    seeds = np.full_like(gt, UNSURE)
    for cls in np.unique(gt):
        if cls == UNSURE:
            continue
        core = cv2.erode((gt == cls).astype(np.uint8), kernel, borderType=cv2.BORDER_REPLICATE).astype(bool)
        seeds[core] = cls
    seeds[rng.random(gt.shape) < unsure] = UNSURE
    return seeds


def refine(item: tuple[np.ndarray, np.ndarray, list[int], CRFParams]) -> np.ndarray:
    return crf_from_labels(*item)


def measure(images: int, workers: list[int], band: int, unsure: float, seed: int) -> dict:
    """CRF over the first `images` MSRC train images with each worker count: seconds, mIoU, same masks."""
    if not MSRC.exists():
        raise SystemExit(f"{MSRC} not found: this benchmark needs the MSRC dataset in VOC layout")
    manifest = read_voc(str(MSRC), splits={"train": "train", "val": "val"}, label_file=None)
    ids = manifest.ids("train")[:images]
    rng = np.random.default_rng(seed)
    params = CRFParams()
    gts = [manifest.load_mask(i) for i in ids]
    items = [(manifest.load_image(i), seed_like(gt, band, unsure, rng), [0, *manifest.label_ids(i).tolist()],
              params) for i, gt in zip(ids, gts)]

    num_classes = len(manifest.classes)
    seed_cm = ConfusionMatrix(num_classes)
    for (_, seeds, _, _), gt in zip(items, gts):
        seed_cm.update(seeds, gt)

    rows, reference = [], None
    for count in workers:
        start = time.perf_counter()
        outputs = list(map_in_pool(refine, items, count))
        seconds = time.perf_counter() - start
        if reference is None:
            reference = outputs
        same = all(np.array_equal(a, b) for a, b in zip(outputs, reference))
        cm = ConfusionMatrix(num_classes)
        for out, gt in zip(outputs, gts):
            cm.update(out, gt)
        rows.append((count, seconds, cm.miou(), same))
    return {"items": items, "params": params, "seed_cm": seed_cm, "rows": rows}


def table_rows(tiny: bool) -> list[Row]:
    """Rows for benchmarks/run_all.py: 2 workers vs 1 on 24 images (tiny: 2)."""
    result = measure(2 if tiny else 24, [1, 2], 8, 0.3, 0)
    (_, one, _, _), (_, two, miou, same) = result["rows"]
    n = len(result["items"])
    return [Row("crf, 2 worker processes vs 1", f"{n / two:.2f} img/s", f"{n / one:.2f} img/s", one / two,
                f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB RSS (main process)",
                f"CRF mIoU {miou:.1f}, same masks: {'yes' if same else 'NO'}")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--band", type=int, default=8, help="erosion radius in pixels (unsure band at boundaries)")
    parser.add_argument("--unsure", type=float, default=0.3, help="extra random fraction of unsure pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result = measure(args.images, args.workers, args.band, args.unsure, args.seed)
    items, params, seed_cm, rows = result["items"], result["params"], result["seed_cm"], result["rows"]

    sizes = sorted({f"{im.shape[1]}x{im.shape[0]}" for im, *_ in items})
    print(f"MSRC train, {len(items)} images ({', '.join(sizes)}), labels per image "
          f"{np.mean([len(c) for _, _, c, _ in items]):.1f} on average; CPU cores visible: {os.cpu_count()}")
    print(f"CRF: {params}")
    print(f"seeds: band {args.band} px + {args.unsure:.0%} random unsure; labelled "
          f"{seed_cm.labelled_fraction():.1%} of non-void pixels, mIoU {seed_cm.miou():.1f} (unsure = miss)")
    print(f"{'workers':>7}{'seconds':>9}{'images/s':>10}{'speed-up':>10}{'CRF mIoU':>10}{'same masks':>12}")
    one = rows[0][1]
    for workers, seconds, miou, same in rows:
        print(f"{workers:>7}{seconds:>9.2f}{len(items) / seconds:>10.2f}{one / seconds:>9.2f}x{miou:>10.1f}"
              f"{'yes' if same else 'NO':>12}")


if __name__ == "__main__":
    main()
