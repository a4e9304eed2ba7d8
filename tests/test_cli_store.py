"""`maskforge store info|diff|export|import` through main(argv) and once as a subprocess."""

import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from maskforge.cli import main
from maskforge.data.manifest import ImageRecord, Manifest
from maskforge.store import StoreWriter, input_digest, open_store
from maskforge.store_png import voc_palette

CLASSES = ["background", "cat", "dog"]


def write_store(path, kind, images, params=None):
    with StoreWriter(path, kind=kind, stage="test", params=params or {"crf": {"iters": 10}}, inputs={"cam": "abc"}, manifest="m",
                     classes=CLASSES) as writer:
        for image_id, array in images.items():
            writer.add(image_id, array, [1] if kind == "cam" else None)


def write_manifest(path, sizes, split="train"):
    """A manifest listing `sizes` (id → (height, width)) as `split`."""
    Manifest(root=str(path.parent), format="folder", label_source="test", classes=CLASSES,
             splits={split: list(sizes)}, stats={},
             images={i: ImageRecord(image=f"{i}.jpg", mask=None, height=h, width=w, labels=(1, 0))
                     for i, (h, w) in sizes.items()}).write(path)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def mask_pair(tmp_path):
    write_store(tmp_path / "a", "mask", {"x": np.array([[0, 0, 1, 1]], np.uint8), "y": np.ones((1, 4), np.uint8)})
    write_store(tmp_path / "b", "mask", {"x": np.array([[0, 1, 1, 255]], np.uint8), "z": np.ones((1, 4), np.uint8)},
                params={"crf": {"iters": 5}, "extra": "on"})
    return tmp_path / "a", tmp_path / "b"


def test_info(capsys, mask_pair):
    code, out, _ = run(capsys, "store", "info", mask_pair[1])
    assert code == 0
    for line in ("kind           mask", "stage          test", "images         2", "shards         1",
                 "classes        3: background, cat, dog", "crf.iters  5", 'extra      "on"', "cam   abc"):
        assert line in out


def test_diff(capsys, mask_pair):
    code, out, _ = run(capsys, "store", "diff", *mask_pair, "--top", "5")
    assert code == 0
    lines = out.splitlines()
    assert "mask stores: 1 common ids, 1 only in A, 1 only in B" in out
    assert "only in A: y" in lines and "only in B: z" in lines
    assert "crf.iters  10        5" in lines and 'extra      (absent)  "on"' in lines
    # in %: x: class 0 A{0,1} B{0} → 50; class 1 A{2,3} B{1,2} → 33.3; class 2 absent → nan
    assert "background  50.0000" in lines and "cat         33.3333" in lines and "dog         nan" in lines
    assert "pixel agreement (pixels labelled in either, %): 50.0000" in lines
    assert "pixels whose ignore status changed (%): 25.0000" in lines
    assert "x   50.0000" in lines


def test_diff_of_cam_stores(capsys, tmp_path):
    write_store(tmp_path / "a", "cam", {"x": np.zeros((1, 2, 2), np.float32)})
    write_store(tmp_path / "b", "cam", {"x": np.full((1, 2, 2), 0.5, np.float32)})
    code, out, _ = run(capsys, "store", "diff", tmp_path / "a", tmp_path / "b")
    assert code == 0 and "cat    0.5000" in out.splitlines() and "params differences: none" in out


def test_export_writes_voc_palette_pngs(capsys, tmp_path):
    mask = np.array([[0, 1], [2, 255]], np.uint8)
    write_store(tmp_path / "s", "mask", {"x": mask})
    code, out, _ = run(capsys, "store", "export", tmp_path / "s", tmp_path / "png")
    assert code == 0 and "wrote 1 PNGs" in out
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["x.png"]
    with Image.open(tmp_path / "png" / "x.png") as png:
        assert png.mode == "P"
        np.testing.assert_array_equal(np.array(png), mask)
        rgb = np.array(png.convert("RGB"))
    np.testing.assert_array_equal(rgb.reshape(4, 3), [[0, 0, 0], [128, 0, 0], [0, 128, 0], [224, 224, 192]])
    assert voc_palette()[[3, 15, 20]].tolist() == [[128, 128, 0], [192, 128, 128], [0, 64, 128]]


def test_export_refuses_other_kinds(capsys, tmp_path):
    write_store(tmp_path / "s", "saliency", {"x": np.zeros((2, 2))})
    code, _, err = run(capsys, "store", "export", tmp_path / "s", tmp_path / "png")
    assert code == 2 and "export writes mask stores only, this is a saliency store" in err
    assert not (tmp_path / "png").exists()


def test_import_saliency_resizes_bilinearly(capsys, tmp_path):
    src = tmp_path / "maps"
    src.mkdir()
    small = np.array([[0, 255], [255, 0]], np.uint8)
    Image.fromarray(small).save(src / "a.png")
    Image.fromarray(np.full((6, 8), 51, np.uint8)).save(src / "b.png")
    write_manifest(tmp_path / "manifest.json", {"a": (6, 8), "b": (6, 8)})
    code, _, _ = run(capsys, "store", "import", src, tmp_path / "sal", "--kind", "saliency",
                     "--manifest", tmp_path / "manifest.json")
    assert code == 0
    store = open_store(tmp_path / "sal", kind="saliency")
    assert store.ids == ["a", "b"] and store.meta["stage"] == "import"
    assert store.params == {"source": str(src), "kind": "saliency"}
    assert store.meta["inputs"] == {"source": input_digest(src)}
    expected = cv2.resize(small, (8, 6), interpolation=cv2.INTER_LINEAR) / 255
    np.testing.assert_allclose(store["a"], expected, atol=1e-3)
    assert ((store["a"] > 0.1) & (store["a"] < 0.9)).any()  # really interpolated, not nearest
    np.testing.assert_allclose(store["b"], 0.2, atol=1e-3)


def test_import_masks_resizes_nearest(capsys, tmp_path):
    src = tmp_path / "masks"
    src.mkdir()
    png = Image.fromarray(np.array([[0, 1], [2, 255]], np.uint8))
    png.putpalette(voc_palette().ravel().tolist())
    png.save(src / "a.png")
    write_manifest(tmp_path / "manifest.json", {"a": (4, 4)}, split="val")
    code, _, _ = run(capsys, "store", "import", src, tmp_path / "m", "--kind", "mask",
                     "--manifest", tmp_path / "manifest.json", "--split", "val")
    assert code == 0
    np.testing.assert_array_equal(open_store(tmp_path / "m")["a"], np.kron([[0, 1], [2, 255]], np.ones((2, 2))))


def test_import_missing_file_writes_nothing(capsys, tmp_path):
    src = tmp_path / "maps"
    src.mkdir()
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(src / "a.png")
    write_manifest(tmp_path / "manifest.json", {"a": (2, 2), "b": (2, 2)})
    code, out, err = run(capsys, "store", "import", src, tmp_path / "sal", "--kind", "saliency",
                         "--manifest", tmp_path / "manifest.json")
    assert code == 2 and out == ""
    assert err == f"maskforge: {src / 'b.png'}: missing (1 of 2 train ids have no PNG) — add the maps or pass the right folder/--split\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "maps"]


def test_dataset_errors_exit_2(capsys, tmp_path):
    code, _, err = run(capsys, "store", "import", tmp_path, tmp_path / "s", "--kind", "mask",
                       "--manifest", tmp_path / "none.json")
    assert code == 2 and err.startswith("maskforge: ") and "manifest not found" in err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["store", "import", "a", "b", "--kind", "cam", "--manifest", "m"])
    assert exc.value.code == 2


def test_module_entry_point_reports_store_errors_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "maskforge.cli", "store", "info", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (f"maskforge: {tmp_path}: not a mask store (no meta.json)"
                           " — pass a store directory written by maskforge\n")
