"""Multi-scale + horizontal-flip test-time inference, shared by CAM inference and segmentation.

IRN (Ahn et al., CVPR 2019, §3.1) sums the CAMs of an image at several scales and of their
horizontal flips; DeepLab (Chen et al., TPAMI 2018, §4.3) averages the class scores the same
way. Both are Σ_s [g(x_s) + flip(g(flip(x_s)))], each term upsampled to the input size, for a
per-pixel score function g: `multiscale_flip_sum` computes that sum once for both.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F


@torch.inference_mode()
def multiscale_flip_sum(scores: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                        scales: Sequence[float]) -> torch.Tensor:
    """Σ over `scales` of scores(x_s) + flip(scores(flip(x_s))), each bilinearly upsampled to H×W.

    `images` float B×3×H×W of one size; `scores` maps a 2B×3×h×w batch to float 2B×K×h'×w'.
    An image and its flip run as one channels_last batch (fast convolutions on CPU and GPU); the
    two halves are added at score resolution (bilinear upsampling commutes with the flip), so
    each scale is upsampled once. Returns float B×K×H×W.
    """
    b, _, h, w = images.shape
    total = None
    for scale in scales:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        scaled = images if size == (h, w) else F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        both = scores(torch.cat([scaled, scaled.flip(-1)]).contiguous(memory_format=torch.channels_last))
        summed = F.interpolate(both[:b] + both[b:].flip(-1), size=(h, w), mode="bilinear", align_corners=False)
        total = summed if total is None else total + summed
    return total
