"""One per-image parallel map into a store: results land under their ids, in order, atomically."""

import numpy as np
import pytest

from maskforge.parallel import map_into_store
from maskforge.store import open_store


def square_mask(size: int) -> np.ndarray:
    """A size×size mask of ones (module level: worker processes unpickle it by name)."""
    return np.ones((size, size), np.uint8)


def fail_on_seven(size: int) -> np.ndarray:
    if size == 7:
        raise ValueError("item 7 is bad")
    return square_mask(size)


@pytest.mark.parametrize("workers", [1, 2])
def test_results_are_written_under_their_ids_in_order(tmp_path, workers):
    ids, sizes = ["a", "b", "c", "d"], [3, 5, 4, 6]
    map_into_store(tmp_path / "s", square_mask, ids, iter(sizes), workers, kind="mask", stage="test",
                   params={"x": 1}, inputs={"in": "00"}, manifest="m", classes=["bg", "obj"])
    with open_store(tmp_path / "s", kind="mask") as store:
        assert store.ids == ids and store.params == {"x": 1} and store.meta["stage"] == "test"
        assert [store[i].shape for i in ids] == [(s, s) for s in sizes]


def test_a_failing_image_leaves_no_store(tmp_path):
    with pytest.raises(ValueError, match="item 7"):
        map_into_store(tmp_path / "s", fail_on_seven, ["a", "b"], [3, 7], 2, kind="mask", stage="test",
                       params={}, inputs={}, manifest="m", classes=["bg", "obj"])
    assert not (tmp_path / "s").exists()


def test_ids_and_items_must_pair_up(tmp_path):
    with pytest.raises(ValueError):
        map_into_store(tmp_path / "s", square_mask, ["a", "b"], [3], 1, kind="mask", stage="test",
                       params={}, inputs={}, manifest="m", classes=["bg", "obj"])
