"""Dense-CRF refinement: colour edges respected, unsure pixels filled, gt_prob's effect, score
unaries, the single-class shortcut, determinism, the process pool and params validation."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from maskforge import crf as crf_module
from maskforge.config import ConfigError
from maskforge.crf import CRFParams, crf_from_labels, crf_from_scores
from maskforge.parallel import map_in_pool

RED, BLUE, GREEN = (220, 30, 30), (30, 30, 220), (30, 200, 30)
UNSURE = 255
PARAMS_YAML = Path(__file__).resolve().parents[1] / "params.yaml"


def two_halves(height=48, width=64, noise=0, seed=0):
    """Left half red, right half blue, optionally with uniform noise of ±`noise` grey levels."""
    image = np.zeros((height, width, 3), np.int64)
    image[:, : width // 2] = RED
    image[:, width // 2:] = BLUE
    if noise:
        image += np.random.default_rng(seed).integers(-noise, noise + 1, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def boundary_count(labels):
    """Number of 4-neighbour pairs with different labels."""
    return int((labels[1:] != labels[:-1]).sum() + (labels[:, 1:] != labels[:, :-1]).sum())


def refine_item(item):
    """Module level so that spawned workers can unpickle it."""
    return crf_from_labels(*item)


def fail_on_seven(x):
    if x == 7:
        raise ValueError("item 7 is bad")
    return x * x


def random_items(count, seed=0):
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(count):
        image = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        labels = rng.choice(np.array([0, 2, 4, UNSURE], np.uint8), size=(24, 32), p=[0.2, 0.2, 0.2, 0.4])
        items.append((image, labels, [0, 2, 4], CRFParams()))
    return items


# ---- crf_from_labels ---------------------------------------------------------------------------

@pytest.mark.parametrize("noise", [0, 20])
@pytest.mark.parametrize("gt_prob", [0.6, 0.7, 0.9])
def test_seeds_spread_to_their_colour_region_and_stop_at_the_edge(noise, gt_prob):
    image = two_halves(noise=noise)
    labels = np.full(image.shape[:2], UNSURE, np.uint8)
    labels[20:28, 8:16] = 3      # small patch inside the red half
    labels[20:28, 44:52] = 5     # small patch inside the blue half
    out = crf_from_labels(image, labels, [0, 3, 5], CRFParams(gt_prob=gt_prob))
    assert out.dtype == np.uint8 and out.shape == labels.shape
    assert (out[:, :32] == 3).mean() >= 0.95
    assert (out[:, 32:] == 5).mean() >= 0.95
    assert UNSURE not in out


def test_labels_that_agree_with_the_image_are_kept_exactly():
    image = two_halves(noise=20)
    labels = np.zeros(image.shape[:2], np.uint8)
    labels[:, :32], labels[:, 32:] = 3, 5
    np.testing.assert_array_equal(crf_from_labels(image, labels, [0, 3, 5], CRFParams()), labels)


def test_unsure_band_is_filled_along_the_colour_edge():
    image = two_halves(noise=10)
    labels = np.zeros(image.shape[:2], np.uint8)
    labels[:, :32], labels[:, 32:] = 1, 2
    labels[:, 20:44] = UNSURE    # a wide unsure band around the edge at x = 32
    out = crf_from_labels(image, labels, [0, 1, 2], CRFParams())
    expected = np.where(np.arange(64) < 32, 1, 2)[None].repeat(48, axis=0)
    assert (out == expected).mean() >= 0.99


def test_distinct_colour_patch_keeps_its_own_label():
    image = two_halves()
    image[16:32, 40:56] = GREEN
    labels = np.zeros(image.shape[:2], np.uint8)
    labels[:, :32], labels[:, 32:] = 3, 5
    labels[16:32, 40:56] = 7
    np.testing.assert_array_equal(crf_from_labels(image, labels, [0, 3, 5, 7], CRFParams()), labels)


def test_higher_gt_prob_keeps_a_label_the_image_barely_supports():
    """A 16×16 patch labelled 3 inside a region labelled 5, 5 grey levels brighter than its
    surroundings: weak colour evidence. The pairwise terms overrule a weakly trusted label
    (gt_prob 0.6) but not a strongly trusted one (0.95)."""
    image = np.full((60, 80, 3), 100, np.uint8)
    image[20:36, 30:46] += 5
    labels = np.full(image.shape[:2], 5, np.uint8)
    labels[20:36, 30:46] = 3
    kept = {p: (crf_from_labels(image, labels, [0, 3, 5], CRFParams(gt_prob=p))[20:36, 30:46] == 3).mean()
            for p in (0.6, 0.95)}
    assert kept[0.6] <= 0.05 and kept[0.95] >= 0.95


def test_without_pairwise_terms_the_labels_come_back():
    image = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    labels = np.random.default_rng(2).choice(np.array([0, 4, 9], np.uint8), size=(20, 30))
    params = CRFParams(gauss_compat=0, bilateral_compat=0)
    np.testing.assert_array_equal(crf_from_labels(image, labels, [0, 4, 9], params), labels)


def test_read_only_and_strided_images_are_accepted():
    """Images decoded by PIL come back read-only; flips and crops are not contiguous."""
    image = two_halves(noise=20)
    labels = np.zeros(image.shape[:2], np.uint8)
    labels[:, :32], labels[:, 32:] = 3, 5
    frozen = image.copy()
    frozen.flags.writeable = False
    flipped = np.ascontiguousarray(image[:, ::-1])[:, ::-1]   # equal pixels, negative stride
    for variant in (frozen, flipped, image[:, :, :]):
        np.testing.assert_array_equal(crf_from_labels(variant, labels, [0, 3, 5], CRFParams()), labels)


def test_deterministic():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    labels = rng.choice(np.array([0, 1, 2, 3, 4, UNSURE], np.uint8), size=(50, 70))
    first = crf_from_labels(image, labels, [0, 1, 2, 3, 4], CRFParams())
    for _ in range(3):
        np.testing.assert_array_equal(crf_from_labels(image, labels, [0, 1, 2, 3, 4], CRFParams()), first)


def test_label_not_in_classes_is_an_error():
    image = two_halves()
    labels = np.zeros(image.shape[:2], np.uint8)
    labels[0, 0] = 12
    with pytest.raises(ValueError, match=r"class ids \[12\].*not in the image's classes \[0, 3\]"):
        crf_from_labels(image, labels, [0, 3], CRFParams())
    with pytest.raises(ValueError, match=r"\[12\]"):
        crf_from_labels(image, labels, [0], CRFParams())     # also checked on the single-class shortcut


@pytest.mark.parametrize("bad", [
    dict(image=np.zeros((4, 4), np.uint8)),
    dict(image=np.zeros((4, 4, 3), np.float32)),
    dict(labels=np.zeros((4, 5), np.uint8)),
    dict(classes=[]),
    dict(classes=[0, 0]),
    dict(classes=[0, 255]),
])
def test_bad_inputs_are_errors(bad):
    args = dict(image=np.zeros((4, 4, 3), np.uint8), labels=np.zeros((4, 4), np.uint8), classes=[0, 1])
    args.update(bad)
    with pytest.raises(ValueError):
        crf_from_labels(args["image"], args["labels"], args["classes"], CRFParams())


@pytest.fixture
def no_crf(monkeypatch):
    """Fail if the dense-CRF library is called."""
    def refuse(*args, **kwargs):
        raise AssertionError("the CRF ran")
    monkeypatch.setattr(crf_module.densecrf, "DenseCRF2D", refuse)


def test_single_class_shortcut_skips_the_crf(no_crf):
    image = two_halves()
    labels = np.full(image.shape[:2], UNSURE, np.uint8)
    labels[:10] = 0
    np.testing.assert_array_equal(crf_from_labels(image, labels, [0], CRFParams()), 0)
    scores = np.random.default_rng(0).random((1, *image.shape[:2]))
    np.testing.assert_array_equal(crf_from_scores(image, scores, [0], CRFParams()), 0)


# ---- crf_from_scores ---------------------------------------------------------------------------

def test_scores_give_the_argmax_structure():
    image = two_halves(noise=10)
    image[12:36, 40:56] = GREEN
    scores = np.zeros((3, 48, 64), np.float32)
    scores[0] = 0.3                       # background score everywhere
    scores[1, :, :32] = 0.8               # class 3 favoured on the red half
    scores[2, 12:36, 40:56] = 0.9         # class 8 favoured on the green patch
    expected = np.zeros((48, 64), np.uint8)
    expected[:, :32], expected[12:36, 40:56] = 3, 8
    out = crf_from_scores(image, scores, [0, 3, 8], CRFParams())
    assert out.dtype == np.uint8
    assert (out == expected).mean() >= 0.99


def test_noisy_scores_on_a_flat_image_give_smooth_output():
    rng = np.random.default_rng(4)
    image = np.full((48, 64, 3), 128, np.uint8)
    scores = rng.random((2, 48, 64)).astype(np.float32)
    scores[1, :, 32:] += 0.3              # class 1 on the right half, under heavy noise
    raw = np.array([0, 1], np.uint8)[scores.argmax(0)]
    out = crf_from_scores(image, scores, [0, 1], CRFParams())
    assert boundary_count(raw) > 500
    assert boundary_count(out) <= 0.05 * boundary_count(raw)


def test_zero_scores_are_uniform_not_nan():
    image = two_halves()
    scores = np.zeros((2, 48, 64), np.float32)
    scores[1, 20:28, 44:52] = 1.0         # evidence only on a patch in the blue half
    scores[0, 20:28, 8:16] = 1.0          # and one in the red half
    out = crf_from_scores(image, scores, [0, 6], CRFParams())
    assert (out[:, :32] == 0).mean() >= 0.95 and (out[:, 32:] == 6).mean() >= 0.95


@pytest.mark.parametrize("scores", [np.ones((3, 48, 64)), -np.ones((2, 48, 64)), np.full((2, 48, 64), np.nan)])
def test_bad_scores_are_errors(scores):
    with pytest.raises(ValueError, match="scores"):
        crf_from_scores(two_halves(), scores, [0, 1], CRFParams())


# ---- map_in_pool -------------------------------------------------------------------------------

def test_pool_results_are_ordered_and_equal_in_process_results():
    items = random_items(6)
    in_process = [crf_from_labels(*item) for item in items]
    assert len({r.tobytes() for r in in_process}) == len(items)      # distinct, so order matters
    for workers in (1, 2):
        results = list(map_in_pool(refine_item, iter(items), workers))
        assert len(results) == len(items)
        for got, want in zip(results, in_process):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("workers", [1, 2])
def test_pool_streams_items(workers):
    pulled = []

    def items():
        for i in range(100):
            pulled.append(i)
            yield i

    results = map_in_pool(fail_on_seven, items(), workers)
    assert next(results) == 0
    assert len(pulled) <= 2 * workers        # bounded look-ahead, not the whole input
    results.close()


def test_pool_raises_the_workers_error():
    with pytest.raises(ValueError, match="item 7 is bad"):
        list(map_in_pool(fail_on_seven, range(10), 2))


@pytest.mark.parametrize("workers", [0, -1, 1.5, True])
def test_pool_rejects_bad_worker_counts(workers):
    with pytest.raises(ValueError, match="workers"):
        list(map_in_pool(fail_on_seven, range(3), workers))


# ---- CRFParams ---------------------------------------------------------------------------------

def test_params_yaml_section_gives_irn_defaults():
    section = yaml.safe_load(PARAMS_YAML.read_text())["crf"]
    assert "workers" in section
    assert CRFParams.from_params(section) == CRFParams()


def test_from_params_without_workers():
    section = dict(iterations=5, gauss_sxy=2, gauss_compat=1, bilateral_sxy=40, bilateral_srgb=13,
                   bilateral_compat=4, gt_prob=0.8)
    assert CRFParams.from_params(section) == CRFParams(5, 2, 1, 40, 13, 4, 0.8)


@pytest.mark.parametrize("change, message", [
    (dict(gt_prb=0.7), "unknown keys \\['gt_prb'\\]"),
    (dict(iterations=None), "missing keys \\['iterations'\\]"),
    (dict(iterations=0), "iterations"),
    (dict(iterations=2.5), "iterations"),
    (dict(iterations=True), "iterations"),
    (dict(gt_prob=1.0), "gt_prob"),
    (dict(gt_prob=0), "gt_prob"),
    (dict(gauss_sxy=0), "gauss_sxy"),
    (dict(bilateral_srgb=-1), "bilateral_srgb"),
    (dict(bilateral_compat=-0.1), "bilateral_compat"),
    (dict(gauss_compat="3"), "gauss_compat"),
    (dict(bilateral_sxy=float("nan")), "bilateral_sxy"),
])
def test_from_params_rejects(change, message):
    section = {**yaml.safe_load(PARAMS_YAML.read_text())["crf"], **change}
    section = {k: v for k, v in section.items() if v is not None}
    with pytest.raises(ConfigError, match=message):
        CRFParams.from_params(section)
