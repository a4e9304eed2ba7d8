"""CAM inference, normalisation and seeds on hand-built tensors (no files, no trained model)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from maskforge.cam import multiscale_cams, normalise_max, same_size_batches
from maskforge.seed_masks import SCORE_BINS, cam_argmax, otsu_threshold, score_histogram, seeds_from_cams


class PixelCAM(torch.nn.Module):
    """A fake CAM model: class k's map is the k-th input channel (ReLU), at full resolution."""
    num_classes = 3

    def __init__(self):
        super().__init__()
        self.backbone = self
        self.calls = []

    def normalize(self, images):
        return images

    def cams(self, x):
        self.calls.append(tuple(x.shape))
        return F.relu(x[:, :3])


def test_multiscale_cams_sum_scales_and_flips_in_one_batch_per_scale():
    model = PixelCAM()
    images = torch.rand(2, 3, 8, 12) * 255
    cams = multiscale_cams(model, images, [1.0])
    assert torch.allclose(cams, 2 * images)          # CAM + flip(CAM(flip)) of a per-pixel map = 2×
    assert model.calls == [(4, 3, 8, 12)]            # image and flip in one batch
    model.calls.clear()
    cams = multiscale_cams(model, images, [1.0, 0.5])
    assert cams.shape == (2, 3, 8, 12) and model.calls == [(4, 3, 8, 12), (4, 3, 4, 6)]


def test_multiscale_cams_of_chosen_classes_equal_those_channels_of_all():
    model = PixelCAM()
    images = torch.rand(2, 3, 8, 12) * 255
    every = multiscale_cams(model, images, [1.0, 0.5, 1.5])
    assert torch.equal(multiscale_cams(model, images, [1.0, 0.5, 1.5], classes=[3, 1]), every[:, [2, 0]])
    assert multiscale_cams(model, images, [1.0, 0.5], classes=[]).shape == (2, 0, 8, 12)


def test_normalise_max_gives_each_map_max_one_and_keeps_zero_maps():
    cams = torch.rand(2, 6, 6) * 7
    cams[1] = 0
    out = normalise_max(cams)
    assert torch.allclose(out[0], cams[0] / (cams[0].max() + 1e-5)) and out[0].max() > 0.999
    assert not out[1].any()


@pytest.mark.parametrize("tau", [0.1, 0.5, 0.9])
def test_seeds_take_background_where_no_cam_exceeds_tau(tau):
    cams = np.stack([np.linspace(0, 1, 16).reshape(4, 4), np.linspace(1, 0, 16).reshape(4, 4)]).astype(np.float32)
    seeds = seeds_from_cams(cams, [3, 7], tau)
    best = np.where(cams[0] >= cams[1], 3, 7)
    assert ((seeds == 0) == (cams.max(0) <= tau)).all()
    assert (seeds[seeds > 0] == best[seeds > 0]).all()


@pytest.mark.parametrize("low, high", [(0.1, 0.6), (0.3, 0.9), (0.05, 0.4)])
def test_otsu_splits_two_score_modes_between_them(low, high):
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(low, 0.03, 3000), rng.normal(high, 0.03, 1000)]).clip(0, 1)
    cams = scores.reshape(1, 40, 100).astype(np.float32)
    histogram = score_histogram(cams, [2])
    assert histogram.sum() == scores.size and len(histogram) == SCORE_BINS
    tau = otsu_threshold(histogram)
    assert low + 0.05 < tau < high - 0.05
    seeds = seeds_from_cams(cams, [2], tau)
    assert abs((seeds == 2).mean() - 0.25) < 0.01


def test_otsu_of_a_single_occupied_bin_is_its_upper_edge_and_of_nothing_an_error():
    counts = np.zeros(SCORE_BINS)
    counts[0] = 10
    assert otsu_threshold(counts) == 1 / SCORE_BINS
    with pytest.raises(ValueError, match="empty"):
        otsu_threshold(np.zeros(SCORE_BINS))


def test_cam_argmax_of_an_image_without_labels_is_background():
    label, score = cam_argmax(np.zeros((0, 3, 4), np.float32), [])
    assert label.shape == (3, 4) and not label.any() and not score.any()


def test_same_size_batches_group_by_size_and_cover_every_index_once():
    sizes = [(2, 3), (3, 2), (2, 3), (2, 3), (3, 2)]
    batches = same_size_batches(sizes, 2)
    assert sorted(i for b in batches for i in b) == list(range(5))
    assert all(len({sizes[i] for i in b}) == 1 and len(b) <= 2 for b in batches)
    assert batches[0] == [0, 2]
