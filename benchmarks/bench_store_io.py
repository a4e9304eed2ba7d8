"""Store I/O: a CAM store (HDF5 shards, float16, gzip) vs IRN-style per-image float32 .npy files.

CAM-like arrays for the first N MSRC train images (their sizes and labelled classes): smooth
random fields (coarse Gaussian noise upsampled bilinearly, ReLU, each map divided by its max),
which compress like real CAMs (mostly smooth, zero where the class is absent). MB/s counts the
float32 payload (K×H×W×4 bytes per image) for both, so the rates compare directly; size is the
bytes on disk. The store writer fsyncs its shards (atomic, durable), np.save does not (as IRN);
reads right after writing come from the page cache for both.

    python benchmarks/bench_store_io.py [--images 296]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from _table import Row
from maskforge.data.voc import read_voc
from maskforge.store import StoreWriter, open_store

MSRC = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "msrc"


def cam_like(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """K×H×W float32 in [0, 1]: ReLU of smooth noise (an 8×8 grid upsampled), each map / its max."""
    import cv2

    k, h, w = shape
    maps = np.stack([np.maximum(cv2.resize(rng.standard_normal((8, 8)).astype(np.float32), (w, h)), 0) for _ in range(k)])
    return maps / np.maximum(maps.reshape(k, -1).max(axis=1), 1e-5)[:, None, None]


def disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def measure(images: int) -> dict[str, float]:
    if not MSRC.exists():
        raise SystemExit(f"{MSRC} not found: this benchmark needs the MSRC dataset in VOC layout")
    manifest = read_voc(str(MSRC), splits={"train": "train", "val": "val"}, label_file=None)
    ids = manifest.ids("train")[:images]
    rng = np.random.default_rng(0)
    cams = {}
    for i in ids:
        labels = manifest.label_ids(i).tolist()
        record = manifest.images[i]
        cams[i] = (cam_like((len(labels), record.height, record.width), rng), labels)
    payload = sum(c.nbytes for c, _ in cams.values()) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        store, npy = Path(tmp) / "cams", Path(tmp) / "npy"
        start = time.perf_counter()
        with StoreWriter(store, kind="cam", stage="bench", params={}, inputs={}, manifest=manifest.sha256,
                         classes=manifest.classes) as writer:
            for i, (cam, labels) in cams.items():
                writer.add(i, cam, classes=labels)
        store_write = time.perf_counter() - start
        start = time.perf_counter()
        with open_store(store, kind="cam") as reader:
            for i in ids:
                reader[i]
        store_read = time.perf_counter() - start
        npy.mkdir()
        start = time.perf_counter()
        for i, (cam, _) in cams.items():
            np.save(npy / f"{i}.npy", cam)
        npy_write = time.perf_counter() - start
        start = time.perf_counter()
        for i in ids:
            np.load(npy / f"{i}.npy")
        npy_read = time.perf_counter() - start
        return {"images": len(ids), "payload_mb": payload, "store_write": payload / store_write,
                "store_read": payload / store_read, "npy_write": payload / npy_write, "npy_read": payload / npy_read,
                "store_mb": disk_bytes(store) / 1e6, "npy_mb": disk_bytes(npy) / 1e6}


def table_rows(tiny: bool) -> list[Row]:
    """Rows for benchmarks/run_all.py: the 296 MSRC train images (tiny: 2)."""
    m = measure(2 if tiny else 296)
    note = f"{m['images']} MSRC-sized CAMs, {m['payload_mb']:.1f} MB as float32"
    return [Row("CAM store write vs per-image .npy", f"{m['store_write']:.0f} MB/s", f"{m['npy_write']:.0f} MB/s",
                m["store_write"] / m["npy_write"], "", note + "; store fsyncs, np.save does not"),
            Row("CAM store read vs per-image .npy", f"{m['store_read']:.0f} MB/s", f"{m['npy_read']:.0f} MB/s",
                m["store_read"] / m["npy_read"], "", "page-cached reads, whole image per read"),
            Row("CAM store size on disk vs per-image .npy", f"{m['store_mb']:.1f} MB", f"{m['npy_mb']:.1f} MB",
                m["npy_mb"] / m["store_mb"], "", "ratio = how many times smaller the store is")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=296)
    args = parser.parse_args()
    m = measure(args.images)
    print(f"{m['images']} MSRC train-sized CAMs, {m['payload_mb']:.1f} MB of float32 payload")
    print(f"{'format':<34}{'write MB/s':>11}{'read MB/s':>11}{'on disk MB':>12}")
    print(f"{'CAM store (HDF5, float16, gzip)':<34}{m['store_write']:>11.1f}{m['store_read']:>11.1f}{m['store_mb']:>12.1f}")
    print(f"{'per-image float32 .npy (IRN)':<34}{m['npy_write']:>11.1f}{m['npy_read']:>11.1f}{m['npy_mb']:>12.1f}")


if __name__ == "__main__":
    main()
