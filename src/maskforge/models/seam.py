"""SEAM network (Wang et al., "Self-supervised Equivariant Attention Mechanism for Weakly
Supervised Semantic Segmentation", CVPR 2020): a CAM classifier plus the pixel correlation module.

PCM (§3.3): per image, features f = [image downsampled to the CAM grid, mid-level features,
high-level features] (the two backbone levels before the last, detached and projected by 1×1
convs + ReLU, as SEAM's f8_3/f8_4), embedded by a 1×1 conv (f9), L2-normalised per pixel;
affinity a_ij = ReLU(cos(f_i, f_j)), normalised so that the affinities into each pixel j sum to
1; the refined CAM ŷ_j = Σ_i ŷ_i a_ij. The CAM it refines is the detached, max-normalised CAM
with a background map 1 − max of the foreground maps, where every foreground class except the
strongest is set to 0 at each pixel (SEAM's released code).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbones import Backbone
from .cam import CAMNet

__all__ = ["SEAMNet", "max_normalise", "pcm_affinity", "pcm_seed", "strongest_class_only", "with_background"]

MID_CHANNELS, HIGH_CHANNELS, EMBED_CHANNELS = 64, 128, 192   # SEAM: f8_3, f8_4 and f9 widths


def max_normalise(maps: Tensor, eps: float = 1e-5) -> Tensor:
    """SEAM's max_norm: per map, ReLU then (x − min)/(max − min), so each non-empty map spans [0, 1]."""
    maps = F.relu(maps)
    low = maps.flatten(2).amin(dim=2)[..., None, None]
    high = maps.flatten(2).amax(dim=2)[..., None, None]
    return F.relu(maps - low - eps) / (high - low + eps)


def with_background(foreground: Tensor) -> Tensor:
    """B×K×h×w normalised foreground maps → B×(K+1)×h×w with the background 1 − max_k first."""
    return torch.cat([1 - foreground.amax(dim=1, keepdim=True), foreground], dim=1)


def strongest_class_only(maps: Tensor) -> Tensor:
    """B×(K+1)×h×w with every foreground score but the pixel's largest set to 0 (background kept)."""
    foreground = maps[:, 1:]
    return torch.cat([maps[:, :1], foreground * (foreground >= foreground.amax(dim=1, keepdim=True))], dim=1)


def pcm_seed(class_maps: Tensor) -> Tensor:
    """What PCM propagates (no gradient): max-normalised CAM with background, where at each pixel
    only the strongest foreground class keeps its score. B×(K+1)×h×w."""
    return strongest_class_only(with_background(max_normalise(class_maps.detach())))


def pcm_affinity(embedding: Tensor, eps: float = 1e-5) -> Tensor:
    """B×C×h×w pixel embeddings → B×n×n affinities (n = h·w): ReLU of the cosine similarity,
    each column divided by its sum, so that the weights pixel j gathers from all i sum to 1."""
    f = embedding.flatten(2)
    f = f / (f.norm(dim=1, keepdim=True) + eps)
    affinity = F.relu(f.transpose(1, 2) @ f)
    return affinity / (affinity.sum(dim=1, keepdim=True) + eps)


class SEAMNet(CAMNet):
    """CAMNet (GAP + 1×1 classifier, foreground classes) plus SEAM's pixel correlation module.

    ``siamese_outputs(x)`` gives what training needs: the pre-ReLU class maps B×K×h×w and the
    PCM-refined CAM B×(K+1)×h×w (background first). ``cams(x)`` is the refined foreground CAM
    (SEAM's inference); ``raw_cams(x)`` the plain CAM of the same network.
    """

    def __init__(self, backbone: Backbone, num_classes: int, freeze_bn: bool = False) -> None:
        super().__init__(backbone, num_classes, freeze_bn=freeze_bn)
        mid, high = backbone.feature_info.channels[-3], backbone.feature_info.channels[-2]
        self.project_mid = nn.Conv2d(mid, MID_CHANNELS, 1, bias=False)
        self.project_high = nn.Conv2d(high, HIGH_CHANNELS, 1, bias=False)
        self.pcm_embed = nn.Conv2d(3 + MID_CHANNELS + HIGH_CHANNELS, EMBED_CHANNELS, 1, bias=False)
        nn.init.kaiming_normal_(self.project_mid.weight)
        nn.init.kaiming_normal_(self.project_high.weight)
        nn.init.xavier_uniform_(self.pcm_embed.weight, gain=4)          # SEAM's initialisation

    def new_layers(self) -> list[nn.Module]:
        return [self.classifier, self.project_mid, self.project_high, self.pcm_embed]

    def siamese_outputs(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(pre-ReLU class maps B×K×h×w, PCM-refined CAM B×(K+1)×h×w) of normalised images."""
        levels = self.backbone(x)
        maps = self.classifier(levels[-1])
        size = maps.shape[-2:]
        resize = lambda t: F.interpolate(t, size=size, mode="bilinear", align_corners=False)   # noqa: E731
        features = torch.cat([resize(x),
                              F.relu(self.project_mid(resize(levels[-3].detach()))),
                              F.relu(self.project_high(resize(levels[-2].detach())))], dim=1)
        affinity = pcm_affinity(self.pcm_embed(features))
        refined = (pcm_seed(maps).flatten(2) @ affinity).view(maps.shape[0], -1, *size)
        return maps, refined

    def cams(self, x: Tensor) -> Tensor:
        """PCM-refined foreground CAM B×K×h×w (SEAM's inference maps)."""
        return self.siamese_outputs(x)[1][:, 1:]

    def raw_cams(self, x: Tensor) -> Tensor:
        """The plain CAM ReLU(classifier(features)) of the same network."""
        return super().cams(x)
