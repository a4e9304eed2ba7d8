"""Image transforms for classifier training (IRN/AE-PSL practice: rescale, flip, jitter, crop)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def scaled_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(h, w) with the longer side at most `max_side`, as resize_longer_side resizes to."""
    scale = min(1.0, max_side / max(height, width))
    return (max(1, round(height * scale)), max(1, round(width * scale)))


def resize_longer_side(image: torch.Tensor, max_side: int, mode: str = "bilinear") -> torch.Tensor:
    """Resize a C×H×W tensor so its longer side is at most `max_side` (never upsampled)."""
    size = scaled_size(*image.shape[-2:], max_side)
    if size == tuple(image.shape[-2:]):
        return image
    out = F.interpolate(image[None].float(), size=size, mode=mode, align_corners=False if mode != "nearest" else None)
    return out[0] if image.is_floating_point() else out[0].round().to(image.dtype)


def color_jitter(image: torch.Tensor, strength: float, rng: np.random.Generator) -> torch.Tensor:
    """Random brightness, contrast and saturation factors in [1-s, 1+s] on a float 0..255 C×H×W image."""
    if strength == 0:
        return image
    b, c, s = rng.uniform(1 - strength, 1 + strength, size=3)
    image = image * b
    mean = image.mean()
    image = (image - mean) * c + mean
    gray = image.mean(dim=0, keepdim=True)
    image = (image - gray) * s + gray
    return image.clamp(0, 255)


def random_scale_flip_crop(image: torch.Tensor, crop_size: int, scale_range: tuple[float, float],
                           rng: np.random.Generator) -> torch.Tensor:
    """Random rescale, horizontal flip, and a crop_size² crop (zero-padded where the image is smaller)."""
    return _scale_flip_crop(image, None, crop_size, scale_range, rng)[0]


def random_scale_flip_crop_pair(image: torch.Tensor, mask: torch.Tensor, crop_size: int,
                                scale_range: tuple[float, float], rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random rescale, flip and crop of a float C×H×W image and its uint8/long H×W mask
    (torchvision's segmentation reference: the mask is resized with nearest neighbour and padded
    with 255 = ignore, the image with 0)."""
    return _scale_flip_crop(image, mask, crop_size, scale_range, rng)


def _scale_flip_crop(image: torch.Tensor, mask: torch.Tensor | None, crop_size: int,
                     scale_range: tuple[float, float], rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    scale = rng.uniform(*scale_range)
    h, w = image.shape[-2:]
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
    if mask is not None:
        mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].to(mask.dtype)
    if rng.random() < 0.5:
        image = image.flip(-1)
        mask = None if mask is None else mask.flip(-1)
    h, w = size
    top = int(rng.integers(0, max(h - crop_size, 0) + 1))
    left = int(rng.integers(0, max(w - crop_size, 0) + 1))
    ch, cw = min(crop_size, h), min(crop_size, w)
    oy = int(rng.integers(0, crop_size - ch + 1))
    ox = int(rng.integers(0, crop_size - cw + 1))
    out = image.new_zeros((image.shape[0], crop_size, crop_size))
    out[:, oy:oy + ch, ox:ox + cw] = image[:, top:top + ch, left:left + cw]
    out_mask = None
    if mask is not None:
        out_mask = mask.new_full((crop_size, crop_size), 255)
        out_mask[oy:oy + ch, ox:ox + cw] = mask[top:top + ch, left:left + cw]
    return out, out_mask
