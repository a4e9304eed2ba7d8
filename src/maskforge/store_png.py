"""Mask stores as VOC palette PNGs (`maskforge store export`) and PNG folders (external saliency
maps or masks) read into stores (`maskforge store import`, the saliency folder source)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from maskforge.store import StoreReader, StoreError


def voc_palette() -> np.ndarray:
    """The standard PASCAL VOC colour map, 256×3 uint8 (255 → void colour (224, 224, 192))."""
    palette = np.zeros((256, 3), np.uint8)
    for index in range(256):
        c, colour = index, [0, 0, 0]
        for shift in range(7, -1, -1):
            for channel in range(3):
                colour[channel] |= ((c >> channel) & 1) << shift
            c >>= 3
        palette[index] = colour
    return palette


def export_pngs(store: StoreReader, out_dir: str | os.PathLike) -> int:
    """Write each mask of a mask store as `<out_dir>/<id>.png` with the VOC palette; returns the count."""
    if store.kind != "mask":
        raise StoreError(f"{store.path}: export writes mask stores only, this is a {store.kind} store — export a mask store")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    palette = voc_palette().ravel().tolist()
    for image_id in store:
        png = Image.fromarray(store[image_id])
        png.putpalette(palette)  # L → P: the mask values become palette indices
        tmp = out / f".{image_id}.png.tmp"
        png.save(tmp, format="PNG")
        os.replace(tmp, out / f"{image_id}.png")
    return len(store)


def read_png(path: Path, kind: str, height: int, width: int) -> np.ndarray:
    """An external PNG as a store image of `kind` at height×width: saliency = grayscale 0–255
    resized bilinearly to a float32 map in [0, 1]; mask = index PNG resized nearest, uint8."""
    with Image.open(path) as png:
        if kind == "mask" and png.mode not in ("P", "L"):
            raise StoreError(f"{path}: a {png.mode} PNG — masks must be index PNGs (mode P or L)")
        data = np.array(png if kind == "mask" else png.convert("L"))
    if data.shape != (height, width):
        data = cv2.resize(data, (width, height), interpolation=cv2.INTER_NEAREST if kind == "mask" else cv2.INTER_LINEAR)
    return data if kind == "mask" else data.astype(np.float32) / 255
