"""IRN's random walk: the radius-limited walk equals IRN's dense n×n form, T is column-stochastic,
and a wall of boundary keeps a class on its side."""

import numpy as np
import pytest
import torch

from maskforge.irn import pair_offsets
from maskforge.randomwalk import (background_channel, bounded_random_walk, dense_random_walk, dense_transition, irn_mask, neighbour_offsets,
                                  transition_stencil, upsample_scores, walk_labels)


def smooth_random(shape, seed, dtype=torch.float64):
    """Random maps in [0, 1], smoothed so that affinities vary but are not all tiny."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=gen, dtype=dtype)
    x = torch.nn.functional.avg_pool2d(x.reshape(-1, 1, *shape[-2:]), 3, 1, 1, count_include_pad=False)
    return x.reshape(shape)


@pytest.mark.parametrize("h, w, radius, exp_times", [(6, 7, 2, 3), (9, 11, 3, 4), (12, 10, 5, 5), (4, 4, 5, 2),
                                                   (2, 2, 5, 3), (1, 3, 5, 2)])   # maps smaller than the radius
def test_bounded_walk_equals_dense_walk(h, w, radius, exp_times):
    boundary = smooth_random((h, w), seed=h) * 0.8
    cams = smooth_random((3, h, w), seed=w)
    dense = dense_random_walk(cams, boundary, radius, beta=10, exp_times=exp_times)
    bounded = bounded_random_walk(cams, boundary, radius, beta=10, exp_times=exp_times)
    assert dense.shape == bounded.shape == (3, h, w)
    torch.testing.assert_close(bounded, dense, rtol=1e-9, atol=1e-12)
    assert np.array_equal(walk_labels(bounded, [2, 5, 7], 0.25), walk_labels(dense, [2, 5, 7], 0.25))


def test_bounded_walk_equals_dense_walk_in_float32():
    boundary, cams = smooth_random((15, 13), 0, torch.float32), smooth_random((2, 15, 13), 1, torch.float32)
    dense = dense_random_walk(cams, boundary, 5, beta=10, exp_times=6)
    bounded = bounded_random_walk(cams, boundary, 5, beta=10, exp_times=6)
    torch.testing.assert_close(bounded, dense, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("radius", [1, 2, 5])
def test_stencil_is_the_dense_matrix_and_columns_sum_to_one(radius):
    h, w = 6, 8
    boundary = smooth_random((h, w), seed=radius)
    dense = dense_transition(boundary, radius, beta=3)
    torch.testing.assert_close(dense.sum(dim=0), torch.ones(h * w, dtype=torch.float64))
    stencil = transition_stencil(boundary, radius, beta=3)
    assert stencil.shape == (2 * len(pair_offsets(radius)) + 1, h, w)
    torch.testing.assert_close(stencil.sum(dim=0), torch.ones(h, w, dtype=torch.float64))
    rebuilt = torch.zeros(h * w, h * w, dtype=torch.float64)
    for (dy, dx), weights in zip(neighbour_offsets(radius), stencil):
        for y in range(h):
            for x in range(w):
                if 0 <= y + dy < h and 0 <= x + dx < w:
                    rebuilt[(y + dy) * w + x + dx, y * w + x] = weights[y, x]
                else:
                    assert weights[y, x] == 0          # no weight leaves the map
    torch.testing.assert_close(rebuilt, dense)


def test_affinity_is_symmetric_and_limited_to_the_radius():
    h, w, radius = 7, 7, 3
    transition = dense_transition(smooth_random((h, w), 3), radius, beta=1)
    affinity = transition * (1 / transition[torch.arange(h * w), torch.arange(h * w)])[None, :]   # A_ii = 1
    torch.testing.assert_close(affinity, affinity.T)
    ys, xs = torch.arange(h * w) // w, torch.arange(h * w) % w
    distance_sq = (ys[:, None] - ys[None]) ** 2 + (xs[:, None] - xs[None]) ** 2
    assert (affinity[distance_sq >= radius ** 2] == 0).all()


@pytest.mark.parametrize("walk", [bounded_random_walk, dense_random_walk])
def test_a_wall_of_boundary_keeps_a_class_on_its_side(walk):
    h, w = 10, 12
    boundary = torch.zeros(h, w, dtype=torch.float64)
    boundary[:, 5] = 1.0                                     # a wall: every path crossing column 5 has a = 0
    cams = torch.zeros(2, h, w, dtype=torch.float64)
    cams[0, 4:6, 1:3] = 1.0                                  # class 1 seeded left of the wall
    cams[1, 4:6, 9:11] = 1.0                                 # class 2 seeded right of it
    scores = walk(cams, boundary, 5, beta=10, exp_times=6)
    assert (scores[0, :, 6:] == 0).all() and (scores[1, :, :5] == 0).all()
    assert (scores[0, :, :5] > 0).all() and (scores[1, :, 6:] > 0).all()  # each spreads over its whole side
    labels = walk_labels(scores, [1, 2], bg_score=1e-6)
    assert (labels[:, :5] == 1).all() and (labels[:, 6:] == 2).all() and (labels[:, 5] == 0).all()


def test_without_a_wall_the_class_crosses():
    boundary = torch.zeros(10, 12, dtype=torch.float64)
    cams = torch.zeros(1, 10, 12, dtype=torch.float64)
    cams[0, 4:6, 1:3] = 1.0
    scores = bounded_random_walk(cams, boundary, 5, beta=10, exp_times=6)
    assert (scores[0, :, 6:] > 0).all()


def test_walk_labels_normalise_by_the_global_max_and_prepend_background():
    scores = torch.tensor([[[4.0, 1.0, 0.0]], [[2.0, 3.0, 0.5]]])     # max 4: [[1, .25, 0]], [[.5, .75, .125]]
    assert walk_labels(scores, [3, 9], bg_score=0.3).tolist() == [[3, 9, 0]]
    assert walk_labels(scores, [3, 9], bg_score=0.8).tolist() == [[3, 0, 0]]
    assert walk_labels(torch.zeros(0, 2, 3), [], 0.25).tolist() == [[0] * 3] * 2
    assert walk_labels(torch.zeros(1, 2, 2), [4], 0.25).tolist() == [[0, 0], [0, 0]]   # no NaN from 0/0


def test_upsample_scores_crops_the_stride_grid_then_resizes():
    scores = torch.arange(6, dtype=torch.float32).reshape(1, 2, 3)
    assert upsample_scores(scores, (7, 10), (7, 10)).shape == (1, 7, 10)
    assert upsample_scores(scores, (7, 10), (14, 20)).shape == (1, 14, 20)
    constant = upsample_scores(torch.full((2, 2, 3), 0.5), (7, 10), (21, 30))
    torch.testing.assert_close(constant, torch.full((2, 21, 30), 0.5))


def test_bad_shapes_are_errors():
    with pytest.raises(ValueError, match="same size"):
        bounded_random_walk(torch.zeros(1, 4, 4), torch.zeros(4, 5), 3, 10, 1)


# ---- irn_mask: IRN inference for one image ------------------------------------------------------

def _boundary_net():
    from maskforge.models.backbones import create_backbone
    from maskforge.models.irn import BoundaryNet
    torch.manual_seed(0)
    return BoundaryNet(create_backbone("efficientnet_lite0", None, 16)).eval()


WALK = {"max_side": 32, "radius": 3, "beta": 10.0, "exp_times": 2}


def test_irn_mask_of_an_image_without_classes_is_background():
    image = np.random.default_rng(0).integers(0, 255, (20, 30, 3), np.uint8)
    mask = irn_mask(_boundary_net(), image, np.zeros((0, 20, 30), np.float32), [], bg_score=0.25, **WALK)
    assert mask.shape == (20, 30) and mask.dtype == np.uint8 and not mask.any()


def test_irn_mask_is_the_walked_cam_against_the_background_score():
    """CAM ⊙ (1 − B) is positive wherever the CAM is (B < 1), so with a background score near 0 every
    pixel takes the class; at 1 (the normalised maximum) the background wins every tie."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (40, 52, 3), np.uint8)
    cams = np.ones((1, 40, 52), np.float32)
    model = _boundary_net()
    everywhere = irn_mask(model, image, cams, [3], bg_score=1e-6, **WALK)
    assert everywhere.shape == (40, 52) and (everywhere == 3).all()
    assert not irn_mask(model, image, cams, [3], bg_score=1.0, **WALK).any()


def test_irn_mask_labels_each_pixel_with_the_stronger_walked_class():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 255, (40, 40, 3), np.uint8)
    cams = np.zeros((2, 40, 40), np.float32)
    cams[0, :, :20], cams[1, :, 20:] = 1.0, 1.0                 # class 2 on the left, class 5 on the right
    mask = irn_mask(_boundary_net(), image, cams, [2, 5], bg_score=1e-6, **{**WALK, "exp_times": 0})
    assert set(np.unique(mask)) <= {0, 2, 5}
    assert (mask[:, :8] == 2).all() and (mask[:, -8:] == 5).all()


def test_background_channel_is_psa_one_minus_the_max_cam_to_the_power():
    cams = torch.tensor([[[0.0, 0.5, 1.0]], [[0.2, 0.1, 0.0]]])
    torch.testing.assert_close(background_channel(cams, 2.0), torch.tensor([[[0.64, 0.25, 0.0]]]))
    torch.testing.assert_close(background_channel(torch.zeros(0, 1, 3), 2.0), torch.ones(1, 1, 3))


@pytest.mark.parametrize("power", [1.0, 4.0])
def test_irn_mask_with_a_walked_background_channel_keeps_the_background_where_the_cam_is_low(power):
    """With bg_power the background is the channel (1 − CAM)^α walked with the class (one step here):
    where the CAM is 0 the background channel is 1 and wins, where it is 1 the class wins, whatever
    bg_score (unused then)."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (40, 40, 3), np.uint8)
    cams = np.zeros((1, 40, 40), np.float32)
    cams[0, :, 20:] = 1.0                                       # class 4 on the right half only
    for bg_score in (1e-6, 0.99):
        mask = irn_mask(_boundary_net(), image, cams, [4], bg_score=bg_score, bg_power=power, **{**WALK, "exp_times": 0})
        assert (mask[:, :8] == 0).all() and (mask[:, -8:] == 4).all()
