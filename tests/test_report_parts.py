"""Report parts without a pipeline run: degenerate-store warnings, gallery columns, plots."""

import numpy as np
import pytest

from maskforge.degenerate import class_shares, degenerate_warning, store_warning
from maskforge.store import StoreWriter, open_store
from maskforge.viz import PAGE_WIDTH, best_per_split, gallery_columns, report_plots

CLASSES = ["background", "cat", "dog"]


def mask_store(path, stage, masks):
    with StoreWriter(path, kind="mask", stage=stage, params={}, inputs={}, manifest="m", classes=CLASSES) as writer:
        for image_id, mask in masks.items():
            writer.add(image_id, np.array(mask, np.uint8))
    return open_store(path)


def test_class_shares_count_labelled_pixels_only(tmp_path):
    store = mask_store(tmp_path / "s", "seeds", {"a": [[0, 0, 1, 255]], "b": [[2, 0, 255, 255]]})
    np.testing.assert_allclose(class_shares(store, 3), [3 / 5, 1 / 5, 1 / 5])


@pytest.mark.parametrize("shares, expected", [
    ([0.96, 0.02, 0.02], "background on 96% of the labelled pixels"),
    ([0.02, 0.97, 0.01], "cat on 97% of the labelled pixels"),
    ([0.03, 0.50, 0.47], "background on only 3.0% of the labelled pixels, nearly everything foreground"),
    ([0.60, 0.30, 0.10], None),
    ([0.0, 0.0, 0.0], None),
])
def test_degenerate_warning_names_the_share_and_the_likely_knob(shares, expected):
    warning = degenerate_warning("predict", "predict", np.array(shares), CLASSES)
    if expected is None:
        assert warning is None
    else:
        assert expected in warning and "seg.train" in warning


def test_store_warning_for_an_all_background_seeds_store_but_never_for_gt(tmp_path):
    all_bg = {"a": [[0, 0, 0, 255]]}
    assert "cam.bg_threshold" in store_warning("seeds", mask_store(tmp_path / "s", "seeds", all_bg))
    assert store_warning("gt", mask_store(tmp_path / "g", "ground_truth", all_bg)) is None


def test_gallery_shows_the_stores_that_matter_and_fit_and_leaves_out_gt(tmp_path):
    names = ["regions_r0", "gt", "seeds", "cam_r0", "irn", "saliency", "x/seeds", "assemble_ae", "seeds_crf", "predict"]
    stores = {name: mask_store(tmp_path / name.replace("/", "_"), "ground_truth" if name == "gt" else "test",
                               {"a": [[0]]}) for name in names}
    size = PAGE_WIDTH // 8 - 8          # 8 pictures per row: image, GT and 6 stores
    main, rest = gallery_columns(stores, size)
    assert list(main) == ["cam_r0", "seeds", "x/seeds", "seeds_crf", "assemble_ae", "irn"]
    assert list(rest) == ["predict", "regions_r0", "saliency"]


def test_best_per_split_marks_each_splits_top_score():
    assert best_per_split([("train", 40.0), ("val", 30.0), ("train", 55.0), ("val", 30.0)]) == {1, 2, 3}


def test_report_plots_tell_training_curves_from_sweeps_and_skip_other_tables():
    tables = {"train_seg": [{"epoch": "1", "step": "4", "loss": "0.9", "lr": "0.01", "val_miou": "20.5"}],
              "cam_r0_sweep": [{"threshold": "0.1", "miou": "30"}, {"threshold": "0.2", "miou": "35"}],
              "assemble_ae_ignored": [{"ignored_fraction": "0.3"}]}
    curves, sweeps = report_plots(tables, {})
    assert list(curves) == ["train_seg"] and list(sweeps) == ["cam_r0_sweep"]
    assert all(png.startswith(b"\x89PNG") for png in [*curves.values(), *sweeps.values()])
