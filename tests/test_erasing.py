"""AE-PSL region mining, accumulation over rounds and erasing."""

import numpy as np
import pytest

from maskforge.erasing import accumulate_regions, erase, mean_pixel, mine_regions


@pytest.mark.parametrize("threshold", [0.5, 0.8, 0.95])
def test_mined_region_is_every_pixel_at_or_above_the_threshold(threshold):
    cams = np.linspace(0, 1, 100, dtype=np.float32).reshape(1, 10, 10)
    mined = mine_regions(cams, threshold)
    assert mined.sum() == np.count_nonzero(cams >= threshold)
    assert cams[mined].min() >= threshold > cams[~mined].max()


def test_regions_accumulate_class_by_class_across_rounds():
    previous = np.zeros((2, 4, 4), bool)
    previous[0, 0, 0] = previous[1, 3, 3] = True        # classes 2 and 5
    mined = np.zeros((2, 4, 4), bool)
    mined[0, 1, 1] = mined[1, 2, 2] = True              # classes 5 and 7
    merged = accumulate_regions(previous, [2, 5], mined, [5, 7])
    assert merged[0].sum() == 2 and merged[0, 3, 3] and merged[0, 1, 1]      # class 5: old ∪ new
    assert merged[1].sum() == 1 and merged[1, 2, 2]                          # class 7: new only
    assert accumulate_regions(None, [], mined, [5, 7]).sum() == mined.sum()


def test_erase_fills_the_region_with_the_mean_pixel_only():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    region = np.array([[True, False, False], [False, False, True]])
    out = erase(image, region, np.array([10.4, 20.6, 30.0]))
    assert (out[region] == [10, 21, 30]).all()
    assert (out[~region] == image[~region]).all()


def test_mean_pixel_weights_every_pixel_equally():
    a = np.zeros((1, 1, 3), np.uint8)
    b = np.full((1, 3, 3), 100, np.uint8)
    assert np.allclose(mean_pixel([a, b]), 75)
