"""The quality table: every scored store in chain order, class-mean precision/recall, labelled and
foreground shares read from the store, ratio to its input store, GT-using columns marked."""

import json

import numpy as np
import pytest

from maskforge.cli import main
from maskforge.degenerate import LIKELY_KNOB
from maskforge.quality import HEADERS, quality_rows
from maskforge.store import StoreWriter, input_digest, open_store

CLASSES = ["background", "cat", "dog"]


def write(path, kind, stage, images, inputs, params=None, derived=None):
    with StoreWriter(path, kind=kind, stage=stage, params=params or {}, inputs=inputs, manifest="m", classes=CLASSES,
                     derived=derived) as writer:
        for image_id, array in images.items():
            writer.add(image_id, array, [1] if kind == "cam" else None)
    return path


@pytest.fixture
def chain(tmp_path):
    """cam_r0 → seeds → seeds_crf (stores and summaries), seeds made at tau otsu."""
    stores = tmp_path / "data" / "stores"
    cams = write(stores / "cam_r0", "cam", "make_cam", {"a": np.full((1, 2, 4), 0.5, np.float32)}, {"ckpt": "x"})
    seeds = write(stores / "seeds", "mask", "seeds", {"a": np.array([[0, 1, 1, 1], [0, 0, 1, 1]], np.uint8)},
                  {"cams": input_digest(cams)}, {"cam": {"bg_threshold": "otsu"}}, {"bg_threshold": 0.45})
    write(stores / "seeds_crf", "mask", "crf", {"a": np.array([[0, 255, 1, 1], [0, 0, 255, 255]], np.uint8)},
                {"masks": input_digest(seeds)})
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    summaries = {
        "cam_r0": {"miou": 20.0, "split": "train", "bg_threshold": 0.35, "precision": {"background": 0.5, "cat": 0.3},
                   "recall": {"background": 0.2, "cat": 0.8}},
        "seeds": {"miou": 25.0, "split": "train", "precision": {"background": 0.6, "cat": None, "dog": 0.2}},
        "seeds_crf": {"miou": 30.0, "split": "train"},
    }
    for name, summary in summaries.items():
        (metrics / f"{name}.json").write_text(json.dumps(summary))
    return tmp_path, {name: open_store(stores / name) for name in summaries}, summaries


def test_rows_follow_the_chain_with_shares_ratios_and_gt_notes(chain):
    _, stores, summaries = chain
    rows = quality_rows(stores, summaries)
    assert [(r.entry.store, r.entry.source) for r in rows] == [("cam_r0", None), ("seeds", "cam_r0"), ("seeds_crf", "seeds")]
    cam, seeds, crf = rows
    assert cam.precision == pytest.approx(40.0) and cam.recall == pytest.approx(50.0)
    assert cam.labelled is None and "GT-best tau 0.35" in cam.note          # a swept CAM score used GT
    assert seeds.precision == pytest.approx(40.0) and seeds.recall is None   # classes without a value are skipped
    assert seeds.labelled == 100 and seeds.foreground == pytest.approx(62.5) and seeds.note == "tau otsu = 0.450 (no GT)"
    assert seeds.entry.ratio == pytest.approx(1.25) and crf.entry.ratio == pytest.approx(1.2)
    assert crf.labelled == pytest.approx(62.5) and crf.foreground == pytest.approx(40.0) and crf.note == ""
    assert len(crf.cells()) == len(HEADERS)


def test_quality_command_prints_the_table_with_gt_columns_marked(chain, capsys, monkeypatch):
    root, _, _ = chain
    monkeypatch.chdir(root)
    assert main(["quality"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["variant", "store", "made", "from"] and "mIoU (GT)" in lines[0]
    assert lines[2].split()[:6] == ["default", "seeds", "cam_r0", "train", "25.00", "1.25"]
    assert "labelled % and foreground % are read from the store alone" in lines[-1]


def test_quality_command_without_scores_names_the_fix(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["quality"]) == 2
    assert "run the evaluate stages first" in capsys.readouterr().err


@pytest.mark.parametrize("fill, side", [(1, "foreground"), (0, "background")])
def test_a_mask_store_of_almost_one_side_is_flagged_with_its_knob(tmp_path, fill, side):
    mask = np.full((10, 10), fill, np.uint8)
    mask[0, :3] = 1 - fill                    # 3 % of the other side: still degenerate
    irn = write(tmp_path / "irn", "mask", "refine_irn", {"a": mask}, {})
    (row,) = quality_rows({"irn": open_store(irn)}, {"irn": {"miou": 10.0, "split": "train"}})
    assert row.note == f"WARNING: {side} almost everywhere (check {LIKELY_KNOB['refine_irn']})"
    mask[0, :6] = 1 - fill                    # 6 %: a real mask
    ok = write(tmp_path / "ok", "mask", "refine_irn", {"a": mask}, {})
    assert quality_rows({"ok": open_store(ok)}, {"ok": {"miou": 10.0}})[0].note == ""
