"""Metrics against hand-worked examples and an independent brute-force computation."""

import math

import numpy as np
import pytest

from maskforge.metrics import ConfusionMatrix, ForegroundRecallPrecision, iou_from_confusion

VOID = 255


def brute_force(pairs, k):
    """Per-class IoU, precision, recall and labelled fraction from pixel-index sets."""
    gt_sets = [set() for _ in range(k)]
    pred_sets = [set() for _ in range(k)]
    labelled = valid = 0
    for n, (pred, gt) in enumerate(pairs):
        for i, (p, g) in enumerate(zip(pred.ravel().tolist(), gt.ravel().tolist())):
            if g == VOID:
                continue
            valid += 1
            gt_sets[g].add((n, i))
            if p != VOID:
                labelled += 1
                pred_sets[p].add((n, i))

    def ratio(a, b):
        return a / b if b else math.nan

    iou = [ratio(len(g & p), len(g | p)) for g, p in zip(gt_sets, pred_sets)]
    precision = [ratio(len(g & p), len(p)) for g, p in zip(gt_sets, pred_sets)]
    recall = [ratio(len(g & p), len(g)) for g, p in zip(gt_sets, pred_sets)]
    return iou, precision, recall, labelled / valid


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [2, 5, 21])
def test_matches_brute_force(seed, k):
    rng = np.random.default_rng(seed)
    values = np.array(list(range(k)) + [VOID])
    pairs = [(rng.choice(values, size=(7, 9)).astype(np.uint8), rng.choice(values, size=(7, 9)).astype(np.uint8))
             for _ in range(3)]
    cm = ConfusionMatrix(k)
    for pred, gt in pairs:
        cm.update(pred, gt)
    iou, precision, recall, labelled = brute_force(pairs, k)
    np.testing.assert_allclose(cm.iou(), iou)
    np.testing.assert_allclose(cm.precision(), precision)
    np.testing.assert_allclose(cm.recall(), recall)
    assert cm.labelled_fraction() == pytest.approx(labelled)
    assert cm.miou() == pytest.approx(100 * np.nanmean(iou))


def test_hand_worked_example():
    gt = np.array([[0, 0, 1, 1], [1, 1, 255, 2]], np.uint8)
    pred = np.array([[0, 1, 1, 255], [1, 0, 2, 255]], np.uint8)
    cm = ConfusionMatrix(3)
    cm.update(pred, gt)
    # class 0: GT{0,1} pred{0,5} → 1/3; class 1: GT{2,3,4,5} pred{1,2,4} → 2/5; class 2: GT{7} pred{} → 0
    # (pixel 6 is void: its pred 2 counts nowhere; pred 255 at 3 and 7 are misses, not false positives)
    np.testing.assert_allclose(cm.iou(), [1 / 3, 2 / 5, 0])
    assert cm.miou() == pytest.approx(100 * (1 / 3 + 2 / 5) / 3)
    assert cm.pixel_accuracy() == pytest.approx(100 * 3 / 7)
    np.testing.assert_allclose(cm.precision(), [1 / 2, 2 / 3, np.nan])
    np.testing.assert_allclose(cm.recall(), [1 / 2, 2 / 4, 0])
    assert cm.labelled_fraction() == pytest.approx(5 / 7)


def test_absent_class_is_nan_and_left_out_of_the_mean():
    cm = ConfusionMatrix(3)
    cm.update(np.array([[0, 1]], np.uint8), np.array([[0, 1]], np.uint8))
    assert np.isnan(cm.iou()[2]) and cm.miou() == 100.0
    summary = cm.as_dict(["bg", "a", "b"])
    assert summary["per_class"]["b"] == {"iou": None, "precision": None, "recall": None}
    assert summary["miou"] == 100.0 and summary["labelled_fraction"] == 1.0


def test_all_void_gives_nan_not_a_warning():
    cm = ConfusionMatrix(2)
    cm.update(np.zeros((2, 2), np.uint8), np.full((2, 2), VOID, np.uint8))
    with np.errstate(all="raise"):
        assert math.isnan(cm.miou()) and math.isnan(cm.pixel_accuracy()) and math.isnan(cm.labelled_fraction())


def test_custom_ignore_index():
    cm = ConfusionMatrix(2, ignore_index=9)
    cm.update(np.array([1, 1], np.uint8), np.array([1, 9], np.uint8))
    np.testing.assert_allclose(cm.iou(), [np.nan, 1.0])


@pytest.mark.parametrize("pred,gt,match", [
    (np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8), "shape"),
    (np.zeros((2,), np.uint8), np.array([3, 0], np.uint8), "GT holds class 3"),
    (np.array([3, 0], np.uint8), np.zeros((2,), np.uint8), "prediction holds"),
])
def test_update_rejects(pred, gt, match):
    with pytest.raises(ValueError, match=match):
        ConfusionMatrix(3).update(pred, gt)


def test_iou_from_confusion_square():
    mat = np.array([[3, 1], [2, 4]])
    np.testing.assert_allclose(iou_from_confusion(mat), [3 / 6, 4 / 7])


def test_foreground_recall_precision():
    score = ForegroundRecallPrecision()
    region = np.array([[1, 1, 0, 0]], bool)
    gt_fg = np.array([[1, 0, 1, 1]], bool)
    score.update(region, gt_fg, valid=np.array([[1, 1, 1, 0]], bool))  # last pixel void
    score.update(np.array([[True]]), np.array([[True]]))
    assert (score.tp, score.fp, score.fn) == (2, 1, 1)
    assert score.recall() == pytest.approx(2 / 3) and score.precision() == pytest.approx(2 / 3)
    assert math.isnan(ForegroundRecallPrecision().recall())
