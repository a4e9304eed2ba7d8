"""AE-PSL assembly rules on crafted 1×6 and 4×4 inputs: each rule proven on its own."""

import numpy as np
import pytest

from maskforge.assemble import (assemble_pseudo_mask, contested_pixels, ignore_reasons, object_labels,
                                saliency_background, unsalient_objects)

# one row of six pixels; classes 3 and 8
#            px:  0  1  2  3  4  5
F3 = np.array([[1, 1, 0, 0, 0, 0]], bool)
F8 = np.array([[0, 1, 1, 0, 0, 0]], bool)
REGIONS = np.stack([F3, F8])                               # 2×1×6
SALIENCY = np.array([[0.9, 0.9, 0.01, 0.02, 0.5, 0.9]])    # px2: mined but unsalient; px3: background; px4,5: neither


def assemble(bg=0.06, min_obj=0.06):
    return assemble_pseudo_mask(REGIONS, [3, 8], SALIENCY, bg_saliency=bg, min_object_saliency=min_obj)


def test_each_pixel_gets_the_rule_that_applies():
    assert assemble().tolist() == [[3, 255, 255, 0, 255, 255]]
    #  px0 one claim → 3; px1 contested → 255; px2 unsalient object → 255; px3 B → 0; px4/5 neither → 255


def test_conflict_between_two_classes_is_ignored():
    assert contested_pixels(REGIONS).tolist() == [[False, True, False, False, False, False]]
    assert assemble()[0, 1] == 255


def test_low_saliency_object_pixel_is_ignored_unless_threshold_allows_it():
    assert unsalient_objects(REGIONS, SALIENCY, 0.06).tolist() == [[False, False, True, False, False, False]]
    assert assemble(min_obj=0.06)[0, 2] == 255
    assert assemble(min_obj=0.005)[0, 2] == 8                # salient enough now: the single claim stands


@pytest.mark.parametrize("bg, expected", [(0.06, [0, 0, 1, 1, 0, 0]), (0.6, [0, 0, 1, 1, 1, 0])])
def test_background_is_saliency_below_the_threshold(bg, expected):
    assert saliency_background(SALIENCY, bg).astype(int).tolist() == [expected]


def test_background_never_overrides_a_mined_object():
    # px2 has saliency 0.01 < bg but lies in F: it is ignored (unsalient object), never background
    assert assemble(bg=0.5, min_obj=0.06)[0, 2] == 255
    assert assemble(bg=0.5, min_obj=0.005)[0, 2] == 8


def test_neither_object_nor_background_is_ignored():
    assert assemble()[0, 4] == 255 and assemble()[0, 5] == 255
    assert assemble(bg=0.6)[0, 4] == 0


def test_object_labels_without_classes_is_background():
    assert object_labels(np.zeros((0, 2, 2), bool), []).tolist() == [[0, 0], [0, 0]]


def test_ignore_reasons_partition_the_ignored_pixels():
    rng = np.random.default_rng(0)
    regions = rng.random((3, 16, 16)) < 0.3
    saliency = rng.random((16, 16))
    mask = assemble_pseudo_mask(regions, [1, 2, 5], saliency, bg_saliency=0.2, min_object_saliency=0.1)
    reasons = ignore_reasons(regions, saliency, bg_saliency=0.2, min_object_saliency=0.1)
    assert sum(reasons.values()) == int((mask == 255).sum())
    assert reasons == {"contested": int(contested_pixels(regions).sum()),
                       "unsalient_object": int((unsalient_objects(regions, saliency, 0.1) & ~contested_pixels(regions)).sum()),
                       "neither": int((~regions.any(axis=0) & (saliency >= 0.2)).sum())}
