"""Saliency sources for AE-PSL's background cue (Wei et al., CVPR 2017, §3.2).

AE-PSL takes background B = pixels whose saliency is below 0.06 (its maps came from DSS). Two
kinds of source: a folder of precomputed maps (grayscale PNGs 0–255 of any size, e.g. DSS,
PoolNet or DRFI outputs, `<folder>/<image id>.png`), or OpenCV's weight-free static saliency:
spectral residual (Hou & Zhang, CVPR 2007) and fine-grained centre-surround (Montabone & Soto,
Image and Vision Computing 2010). Every source goes through `postprocess_saliency`, so all maps
are float32 H×W in [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from maskforge.data.manifest import DatasetError
from maskforge.store_png import read_png

SOURCES = ("spectral_residual", "fine_grained", "folder")
_OPENCV = {"spectral_residual": cv2.saliency.StaticSaliencySpectralResidual_create,
           "fine_grained": cv2.saliency.StaticSaliencyFineGrained_create}


class SaliencyError(DatasetError):
    """A saliency problem, as one line: '<what> — <fix>'."""


def opencv_saliency(image: np.ndarray, method: str) -> np.ndarray:
    """Raw static saliency of an RGB uint8 H×W×3 image from OpenCV's saliency module, float32 H×W.

    `spectral_residual`: Hou & Zhang, "Saliency Detection: A Spectral Residual Approach" (CVPR
    2007) — the log-amplitude spectrum minus its local mean, back-transformed; OpenCV computes it
    on a 64×64 copy, and the map is resized (bilinearly) back to H×W. `fine_grained`: Montabone &
    Soto, "Human detection using a mobile platform and novel features derived from a visual
    saliency mechanism" (Image and Vision Computing 28(3), 2010) — centre-surround differences on
    an intensity pyramid, at full resolution. Both look at intensity only, so the image is turned
    to grayscale here (from RGB, avoiding OpenCV's BGR default). Not normalised: see
    `postprocess_saliency`."""
    if method not in _OPENCV:
        raise SaliencyError(f"unknown OpenCV saliency method {method!r} — use one of {', '.join(_OPENCV)}")
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise SaliencyError(f"saliency needs a uint8 H×W×3 RGB image, got {image.dtype} {image.shape} — convert it first")
    height, width = image.shape[:2]
    gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    ok, saliency = _OPENCV[method]().computeSaliency(gray)
    if not ok or saliency is None:
        raise SaliencyError(f"OpenCV {method} saliency failed on a {height}×{width} image — try the other method")
    saliency = np.asarray(saliency, dtype=np.float32)
    if saliency.shape != (height, width):
        saliency = cv2.resize(saliency, (width, height), interpolation=cv2.INTER_LINEAR)
    return saliency


def postprocess_saliency(saliency: np.ndarray, blur_sigma: float) -> np.ndarray:
    """Gaussian blur with standard deviation `blur_sigma` pixels (0 = none; kernel size from sigma,
    reflected borders), then min–max normalisation to [0, 1]; a constant map becomes all zeros.
    float32 H×W."""
    if blur_sigma < 0:
        raise SaliencyError(f"blur_sigma {blur_sigma} — use 0 (no blur) or a positive sigma in pixels")
    saliency = np.asarray(saliency, dtype=np.float32)
    if blur_sigma > 0:
        saliency = cv2.GaussianBlur(saliency, (0, 0), sigmaX=blur_sigma, sigmaY=blur_sigma,
                                    borderType=cv2.BORDER_REFLECT_101)
    lo, hi = (float(saliency.min()), float(saliency.max())) if saliency.size else (0.0, 0.0)
    if not hi - lo > 1e-6 * max(abs(lo), abs(hi), 1e-30):  # constant (up to float rounding) or empty
        return np.zeros_like(saliency)
    return np.clip((saliency - lo) / (hi - lo), 0, 1).astype(np.float32)


def folder_saliency(path: Path, height: int, width: int) -> np.ndarray:
    """A precomputed saliency map: grayscale PNG 0–255 of any size (colour PNGs are converted to
    gray), resized bilinearly to height×width, float32 in [0, 1] (via `store_png.read_png`)."""
    path = Path(path)
    if not path.is_file():
        raise SaliencyError(f"{path}: no saliency map — put a grayscale PNG named after the image id there,"
                            " or set the saliency source to spectral_residual / fine_grained")
    try:
        return read_png(path, "saliency", height, width)
    except (OSError, ValueError, SyntaxError) as e:  # PIL's UnidentifiedImageError is an OSError
        raise SaliencyError(f"{path}: unreadable saliency map ({e}) — replace it with a grayscale 0–255 PNG") from None


def saliency_map(image: np.ndarray, *, source: str, folder: str | None, image_id: str,
                 blur_sigma: float) -> np.ndarray:
    """The saliency of one RGB uint8 H×W×3 image, float32 H×W in [0, 1]: OpenCV's `source`
    method, or `<folder>/<image_id>.png` for source `folder`; then `postprocess_saliency` with
    `blur_sigma` either way."""
    if source not in SOURCES:
        raise SaliencyError(f"unknown saliency source {source!r} — use one of {', '.join(SOURCES)}")
    if source == "folder":
        if not folder:
            raise SaliencyError("saliency source 'folder' without a folder — set the folder of <id>.png maps")
        height, width = np.asarray(image).shape[:2]
        raw = folder_saliency(Path(folder) / f"{image_id}.png", height, width)
    else:
        raw = opencv_saliency(image, source)
    return postprocess_saliency(raw, blur_sigma)
