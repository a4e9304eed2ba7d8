"""Saliency sources: OpenCV static saliency, post-processing, precomputed map folders, and a
real-data check on MSRC (object pixels must be more salient than background)."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskforge.saliency import (SOURCES, SaliencyError, folder_saliency, opencv_saliency,
                                postprocess_saliency, saliency_map)

OPENCV_METHODS = [s for s in SOURCES if s != "folder"]
MSRC = Path("/work/shared/datasets/msrc")


def disk_image(height=96, width=128, radius=18, seed=0):
    """A bright saturated orange disk on a noisy flat grey background; returns (RGB image, disk mask)."""
    rng = np.random.default_rng(seed)
    image = np.clip(rng.normal(110, 6, (height, width, 3)), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:height, :width]
    disk = (yy - height * 0.45) ** 2 + (xx - width * 0.6) ** 2 <= radius ** 2
    image[disk] = (255, 200, 30)
    return image, disk


@pytest.mark.parametrize("method", OPENCV_METHODS)
@pytest.mark.parametrize("blur", [0, 3])
def test_disk_is_salient(method, blur):
    image, disk = disk_image()
    sal = saliency_map(image, source=method, folder=None, image_id="x", blur_sigma=blur)
    assert sal.shape == disk.shape and sal.dtype == np.float32
    assert sal.min() == 0 and sal.max() == 1
    inside, outside = sal[disk].mean(), sal[~disk].mean()
    assert inside > outside + 0.15 and inside > 2.5 * outside


@pytest.mark.parametrize("method", OPENCV_METHODS)
@pytest.mark.parametrize("shape", [(97, 131), (213, 320), (320, 213)])
def test_opencv_saliency_keeps_the_image_resolution(method, shape):
    image = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    raw = opencv_saliency(image, method)
    assert raw.shape == shape and raw.dtype == np.float32 and np.isfinite(raw).all()


@pytest.mark.parametrize("method", OPENCV_METHODS)
def test_opencv_saliency_reads_rgb(method):
    """The map is that of the image's luma (ITU-R 601, as PIL's "L"); reading the array as BGR
    would weigh the red disk 0.114 instead of 0.299 and give another map."""
    image, _ = disk_image()
    image[..., 1:] = 100
    gray = np.repeat(np.asarray(Image.fromarray(image).convert("L"))[..., None], 3, axis=2)
    np.testing.assert_array_equal(opencv_saliency(image, method), opencv_saliency(gray, method))
    swapped = np.ascontiguousarray(image[..., ::-1])
    assert np.abs(opencv_saliency(swapped, method) - opencv_saliency(gray, method)).max() > 0.1


@pytest.mark.parametrize("bad", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 4), np.uint8)])
def test_opencv_saliency_rejects_non_rgb_uint8(bad):
    with pytest.raises(SaliencyError, match="uint8 H×W×3"):
        opencv_saliency(bad, "spectral_residual")


def test_unknown_method_and_source():
    image, _ = disk_image()
    with pytest.raises(SaliencyError, match="spectral_residual"):
        opencv_saliency(image, "dss")
    with pytest.raises(SaliencyError, match="folder"):
        saliency_map(image, source="dss", folder=None, image_id="x", blur_sigma=0)
    with pytest.raises(SaliencyError, match="without a folder"):
        saliency_map(image, source="folder", folder=None, image_id="x", blur_sigma=0)


def test_postprocess_is_min_max_normalisation():
    raw = np.random.default_rng(2).uniform(3, 7, (20, 30)).astype(np.float64)
    out = postprocess_saliency(raw, 0)
    assert out.dtype == np.float32 and out.min() == 0 and out.max() == 1
    np.testing.assert_allclose(out, (raw - raw.min()) / (raw.max() - raw.min()), atol=1e-6)


@pytest.mark.parametrize("value", [0.0, 0.5, 3.0])
@pytest.mark.parametrize("blur", [0, 2.5])
def test_constant_map_becomes_zeros(value, blur):
    out = postprocess_saliency(np.full((15, 17), value, np.float32), blur)
    assert out.dtype == np.float32 and out.shape == (15, 17) and not out.any()


def test_blur_reduces_variance():
    raw = np.random.default_rng(3).uniform(0, 1, (64, 64)).astype(np.float32)
    sharp, smooth = postprocess_saliency(raw, 0), postprocess_saliency(raw, 3)
    assert smooth.min() == 0 and smooth.max() == 1
    assert smooth.var() < 0.5 * sharp.var()


@pytest.mark.parametrize("sigma", [1.5, 2, 4])
def test_blur_sigma_is_in_pixels(sigma):
    """An impulse blurs into exp(-d²/2σ²) once normalised by its peak."""
    raw = np.zeros((61, 61), np.float32)
    raw[30, 30] = 1
    out = postprocess_saliency(raw, sigma)
    d = np.arange(0, 2 * int(sigma) + 1)
    np.testing.assert_allclose(out[30, 30 + d], np.exp(-d ** 2 / (2 * sigma ** 2)), atol=1e-4)
    np.testing.assert_allclose(out[30 + d, 30], out[30, 30 + d], atol=1e-6)


def test_negative_blur_is_rejected():
    with pytest.raises(SaliencyError, match="blur_sigma"):
        postprocess_saliency(np.zeros((4, 4), np.float32), -1)


def test_folder_map_is_resized_bilinearly(tmp_path):
    """A 40-wide × 30-high horizontal ramp (6 per column) read at 80 × 60: bilinear 2× upsampling
    (pixel centres aligned) keeps the ramp linear, 3 per output column, clamped at the edges."""
    ramp = np.tile((6 * np.arange(40)).astype(np.uint8), (30, 1))
    Image.fromarray(ramp).save(tmp_path / "m.png")
    sal = folder_saliency(tmp_path / "m.png", 60, 80)
    assert sal.shape == (60, 80) and sal.dtype == np.float32
    x = np.arange(80)
    expected = 6 * np.clip((x + 0.5) / 2 - 0.5, 0, 39) / 255
    np.testing.assert_allclose(sal, np.tile(expected, (60, 1)), atol=1.01 / 255)


def test_folder_map_of_the_image_size_is_read_as_is(tmp_path):
    values = np.random.default_rng(4).integers(0, 256, (30, 40), dtype=np.uint8)
    Image.fromarray(values).save(tmp_path / "m.png")
    np.testing.assert_array_equal(folder_saliency(tmp_path / "m.png", 30, 40), values / np.float32(255))


def test_missing_or_broken_map_names_the_file(tmp_path):
    with pytest.raises(SaliencyError, match=r"missing\.png: no saliency map — "):
        folder_saliency(tmp_path / "missing.png", 10, 10)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(SaliencyError, match=r"broken\.png: unreadable saliency map .* — replace it"):
        folder_saliency(tmp_path / "broken.png", 10, 10)


def test_folder_source_resizes_then_postprocesses(tmp_path):
    image, disk = disk_image()  # 96×128
    small = np.where(disk[::2, ::2], 200, 50).astype(np.uint8)  # a 48×64 map of the disk, values 50..200
    Image.fromarray(small).save(tmp_path / "img7.png")
    for blur in (0, 2):
        sal = saliency_map(image, source="folder", folder=str(tmp_path), image_id="img7", blur_sigma=blur)
        expected = postprocess_saliency(folder_saliency(tmp_path / "img7.png", 96, 128), blur)
        np.testing.assert_array_equal(sal, expected)
        assert sal.shape == (96, 128) and sal.min() == 0 and sal.max() == 1
    assert sal[disk].mean() > 0.9 and sal[~disk].mean() < 0.1
    with pytest.raises(SaliencyError, match=r"img8\.png"):
        saliency_map(image, source="folder", folder=str(tmp_path), image_id="img8", blur_sigma=0)


def _msrc_samples(count=10):
    if not MSRC.is_dir():
        pytest.skip(f"{MSRC} is absent")
    ids = (MSRC / "ImageSets/Segmentation/train.txt").read_text().split()
    samples = []
    for image_id in ids[:: len(ids) // count][:count]:
        image = np.array(Image.open(MSRC / "JPEGImages" / f"{image_id}.jpg").convert("RGB"))
        gt = np.array(Image.open(MSRC / "SegmentationClass" / f"{image_id}.png"))
        samples.append((image, gt))
    return samples


def test_msrc_objects_are_more_salient_than_background():
    """Mean saliency of GT object pixels vs GT background pixels (void left out) on 10 MSRC train
    images, and the fractions below AE-PSL's 0.06 background threshold (printed for choosing
    `bg_saliency`; run with -s). Only spectral residual without blur is asserted."""
    samples = _msrc_samples()
    print(f"\n{'method':18} blur  mean fg  mean bg  bg<0.06  fg<0.06")
    for method in OPENCV_METHODS:
        for blur in (0, 3):
            fg, bg, gaps = [], [], []
            for image, gt in samples:
                sal = saliency_map(image, source=method, folder=None, image_id="", blur_sigma=blur)
                f, b = sal[(gt > 0) & (gt != 255)], sal[gt == 0]
                fg.append(f)
                bg.append(b)
                if f.size and b.size:
                    gaps.append(f.mean() - b.mean())
            fg, bg = np.concatenate(fg), np.concatenate(bg)
            print(f"{method:18} {blur:4} {fg.mean():8.3f} {bg.mean():8.3f} {(bg < 0.06).mean():8.3f} {(fg < 0.06).mean():8.3f}")
            if method == "spectral_residual" and blur == 0:
                assert np.mean(gaps) > 0.03 and fg.mean() > bg.mean() + 0.03
