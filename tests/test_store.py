"""The HDF5 mask store: round trips, determinism, atomic writes, bad files, diff."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

import maskforge
from maskforge.store import SCHEMA_VERSION, StoreError, StoreWriter, input_digest, open_store, params_sha256
from maskforge.store_diff import ABSENT, diff_stores
from maskforge.store_parts import part_name

CLASSES = ["background", "cat", "dog", "bird"]
PARAMS = {"crf": {"iters": 10, "sxy": 3}, "seed": 0}


def sample(kind: str, rng: np.random.Generator, h: int = 6, w: int = 5):
    """(array, classes) of one random image of `kind`."""
    if kind == "mask":
        return rng.choice(np.array([0, 1, 2, 3, 255], np.uint8), size=(h, w)), None
    if kind == "saliency":
        return rng.random((h, w)), None
    labels = sorted(rng.choice([1, 2, 3], size=2, replace=False).tolist())
    if kind == "cam":
        return rng.random((2, h, w)).astype(np.float32), labels
    return rng.random((2, h, w)) > 0.5, labels


def write(path, kind, images, params=PARAMS, shard_size=2, inputs=None):
    with StoreWriter(path, kind=kind, stage="test", params=params, inputs=inputs or {"cam": "abc"}, manifest="m",
                     classes=CLASSES, shard_size=shard_size) as writer:
        for image_id, (array, classes) in images.items():
            writer.add(image_id, array, classes)


def images_of(kind, n=5, seed=0):
    rng = np.random.default_rng(seed)
    return {f"img{i:02d}": sample(kind, rng) for i in range(n)}


@pytest.mark.parametrize("kind", ["mask", "saliency", "cam", "region"])
def test_round_trip(tmp_path, kind):
    images = images_of(kind)
    write(tmp_path / "s", kind, images)
    with open_store(tmp_path / "s", kind=kind) as store:
        assert store.ids == list(images) and len(store) == 5 and list(store) == list(images)
        assert store.kind == kind and store.classes == CLASSES and store.params == PARAMS
        assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
            "meta.json", "shard-00000.h5", "shard-00001.h5", "shard-00002.h5"]
        assert store.meta["ids"]["img02"] == "shard-00001.h5"
        for image_id, (array, classes) in images.items():
            got = store[image_id]
            if kind in ("cam", "saliency"):
                assert got.dtype == np.float32
                np.testing.assert_allclose(got, array, atol=1e-3)
            else:
                assert got.dtype == (bool if kind == "region" else np.uint8)
                np.testing.assert_array_equal(got, array)
            labels = store.label_classes(image_id)
            assert labels is None if classes is None else labels.tolist() == classes
            assert image_id in store
        assert "nope" not in store


def test_reader_keeps_one_shard_open(tmp_path):
    """An open HDF5 file holds the metadata of what was read from it: a reader that kept every shard
    open grew with the store. Reading any image, in any order, still works."""
    images = images_of("cam", n=6)
    write(tmp_path / "s", "cam", images)                          # 3 shards of 2
    with open_store(tmp_path / "s", kind="cam") as store:
        for image_id in [*images, "img00", "img05", "img02"]:
            np.testing.assert_allclose(store[image_id], images[image_id][0], atol=1e-3)
            assert store.label_classes(image_id).tolist() == images[image_id][1]
            assert list(store._files) == [store.meta["ids"][image_id]]     # only this image's shard is open
        handles = list(store._files.values())
    assert not any(h.id.valid for h in handles)                    # closed with the reader


@pytest.mark.parametrize("kind,stored", [("mask", np.uint8), ("saliency", np.float16),
                                         ("cam", np.float16), ("region", np.uint8)])
def test_on_disk_layout(tmp_path, kind, stored):
    write(tmp_path / "s", kind, images_of(kind, n=1))
    with h5py.File(tmp_path / "s" / "shard-00000.h5") as f:
        ds = f["img00"]
        assert ds.dtype == stored and ds.compression == "gzip" and ds.compression_opts == 4 and ds.shuffle
        assert ("classes" in ds.attrs) == (kind in ("cam", "region"))


def test_meta_provenance(tmp_path):
    write(tmp_path / "s", "mask", images_of("mask", n=3), inputs={"seeds": "1" * 64})
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    assert list(meta) == ["schema_version", "kind", "stage", "params", "params_sha256", "inputs", "manifest_sha256",
                          "classes", "ids", "shards", "code_version"]
    assert meta["schema_version"] == SCHEMA_VERSION and meta["code_version"] == maskforge.__version__
    assert meta["params"] == PARAMS and meta["inputs"] == {"seeds": "1" * 64}
    canonical = json.dumps(PARAMS, sort_keys=True, separators=(",", ":")).encode()
    assert meta["params_sha256"] == params_sha256(PARAMS) == hashlib.sha256(canonical).hexdigest()
    assert list(meta["ids"]) == ["img00", "img01", "img02"]
    assert meta["shards"] == {n: (tmp_path / "s" / n).stat().st_size for n in ("shard-00000.h5", "shard-00001.h5")}


def _md5s(path):
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


@pytest.mark.parametrize("kind", ["mask", "cam"])
def test_identical_content_gives_identical_bytes(tmp_path, kind):
    write(tmp_path / "a", kind, images_of(kind))
    time.sleep(1.1)  # HDF5 timestamps have 1 s resolution: any stored time would now differ
    write(tmp_path / "b", kind, images_of(kind))
    assert _md5s(tmp_path / "a") == _md5s(tmp_path / "b")
    assert len(_md5s(tmp_path / "a")) == 4


@pytest.mark.parametrize("kind,array,classes,match", [
    ("mask", np.zeros((4, 4), np.int64), None, "uint8 H×W"),
    ("mask", np.full((4, 4), 4, np.uint8), None, "class indices < 4"),
    ("mask", np.zeros((4, 4), np.uint8), [1], "no `classes`"),
    ("saliency", np.full((4, 4), 1.5), None, r"in \[0,1\]"),
    ("saliency", np.full((4, 4), np.nan), None, r"in \[0,1\]"),
    ("cam", np.zeros((2, 4, 4), np.float32), None, "need `classes`"),
    ("cam", np.zeros((2, 4, 4), np.float32), [1], "2 distinct"),
    ("cam", np.zeros((2, 4, 4), np.float32), [1, 4], "0..3"),
    ("cam", np.full((1, 4, 4), 1e6, np.float32), [1], "finite float K×H×W"),
    ("cam", np.zeros((4, 4), np.float32), [1], "finite float K×H×W"),
    ("region", np.full((1, 4, 4), 2, np.uint8), [1], "0/1"),
])
def test_add_rejects_bad_images(tmp_path, kind, array, classes, match):
    with pytest.raises(StoreError, match=match):
        with StoreWriter(tmp_path / "s", kind=kind, stage="t", params={}, inputs={}, manifest="m", classes=CLASSES) as w:
            w.add("x", array, classes)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("ids,match", [(["a", "a"], "added twice"), (["a/b"], "invalid id"), ([""], "invalid id")])
def test_add_rejects_bad_ids(tmp_path, ids, match):
    with pytest.raises(StoreError, match=match):
        with StoreWriter(tmp_path / "s", kind="mask", stage="t", params={}, inputs={}, manifest="m", classes=CLASSES) as w:
            for image_id in ids:
                w.add(image_id, np.zeros((2, 2), np.uint8))


def test_writer_rejects_bad_setup(tmp_path):
    with pytest.raises(StoreError, match="unknown store kind"):
        StoreWriter(tmp_path / "s", kind="masks", stage="t", params={}, inputs={}, manifest="m", classes=CLASSES)
    with pytest.raises(StoreError, match="JSON-serialisable"):
        StoreWriter(tmp_path / "s", kind="mask", stage="t", params={"x": object()}, inputs={}, manifest="m", classes=CLASSES)
    writer = StoreWriter(tmp_path / "s", kind="mask", stage="t", params={}, inputs={}, manifest="m", classes=CLASSES)
    with pytest.raises(StoreError, match="outside the writer"):
        writer.add("a", np.zeros((2, 2), np.uint8))


@pytest.mark.parametrize("previous", [False, True])
def test_exception_inside_with_leaves_target_untouched(tmp_path, previous):
    if previous:
        write(tmp_path / "s", "mask", images_of("mask", seed=1))
    before = _md5s(tmp_path / "s") if previous else None
    with pytest.raises(RuntimeError, match="simulated crash"):
        with StoreWriter(tmp_path / "s", kind="mask", stage="t", params={}, inputs={}, manifest="m", classes=CLASSES,
                         shard_size=2) as w:
            for image_id, (array, _) in images_of("mask").items():
                w.add(image_id, array)
            raise RuntimeError("simulated crash")
    assert [p.name for p in tmp_path.iterdir()] == (["s"] if previous else [])
    if previous:
        assert _md5s(tmp_path / "s") == before
        assert len(open_store(tmp_path / "s")) == 5


def test_rewrite_replaces_previous_store(tmp_path):
    write(tmp_path / "s", "mask", images_of("mask", n=5, seed=1))
    write(tmp_path / "s", "mask", images_of("mask", n=1, seed=2))
    assert [p.name for p in tmp_path.iterdir()] == ["s"]
    assert open_store(tmp_path / "s").ids == ["img00"]


_KILLED_WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from maskforge.store import StoreWriter
    with StoreWriter(sys.argv[1], kind="mask", stage="t", params={}, inputs={}, manifest="m", classes=["bg", "a"], shard_size=2) as w:
        for i in range(5):
            w.add(f"new{i}", np.zeros((8, 8), np.uint8))
        print("written", flush=True)
        time.sleep(60)
""")


@pytest.mark.parametrize("previous", [False, True])
def test_sigkill_mid_write_never_leaves_a_whole_looking_store(tmp_path, previous):
    target = tmp_path / "s"
    if previous:
        write(target, "mask", images_of("mask", n=3, seed=1))
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(target)], stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"written\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    leftovers = list(tmp_path.glob("s.tmp-*"))
    assert [p.name for p in leftovers] == [f"s.tmp-{proc.pid}"]
    (leftovers[0] / "meta.json").write_text((target / "meta.json").read_text() if previous else "{}")
    with pytest.raises(StoreError, match="unfinished temporary store"):
        open_store(leftovers[0])
    if previous:
        assert open_store(target).ids == ["img00", "img01", "img02"]
    else:
        assert not target.exists()


def test_truncated_shard(tmp_path):
    write(tmp_path / "s", "cam", images_of("cam"))
    shard = tmp_path / "s" / "shard-00001.h5"
    os.truncate(shard, shard.stat().st_size // 2)
    with pytest.raises(StoreError, match=r"shard-00001\.h5.*truncated.*re-run"):
        open_store(tmp_path / "s")


def test_missing_shard(tmp_path):
    write(tmp_path / "s", "mask", images_of("mask"))
    (tmp_path / "s" / "shard-00002.h5").unlink()
    with pytest.raises(StoreError, match=r"shard-00002\.h5: missing.*re-run"):
        open_store(tmp_path / "s")


def test_corrupt_shard_of_the_right_size_fails_on_access(tmp_path):
    write(tmp_path / "s", "mask", images_of("mask"))
    shard = tmp_path / "s" / "shard-00000.h5"
    with open(shard, "r+b") as f:
        f.write(b"\0" * 512)
    store = open_store(tmp_path / "s")
    with pytest.raises(StoreError, match=r"shard-00000\.h5: cannot read image 'img00'.*re-run"):
        store["img00"]
    assert store["img04"].shape == (6, 5)


def test_wrong_schema_version(tmp_path):
    write(tmp_path / "s", "mask", images_of("mask", n=1))
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    (tmp_path / "s" / "meta.json").write_text(json.dumps({**meta, "schema_version": 99}))
    with pytest.raises(StoreError, match=f"schema version 99, this maskforge reads {SCHEMA_VERSION}"):
        open_store(tmp_path / "s")


@pytest.mark.parametrize("content,match", [(None, "not a mask store"), ("{", "not valid JSON")])
def test_not_a_store(tmp_path, content, match):
    (tmp_path / "s").mkdir()
    if content is not None:
        (tmp_path / "s" / "meta.json").write_text(content)
    with pytest.raises(StoreError, match=match):
        open_store(tmp_path / "s")


def test_wrong_kind_and_missing_id(tmp_path):
    write(tmp_path / "s", "mask", images_of("mask", n=1))
    with pytest.raises(StoreError, match="a mask store, expected a cam store"):
        open_store(tmp_path / "s", kind="cam")
    with pytest.raises(StoreError, match="no image 'img07'"):
        open_store(tmp_path / "s")["img07"]


def test_input_digest(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a.txt").write_bytes(b"alpha")
    (tmp_path / "d" / "sub" / "b.txt").write_bytes(b"beta")
    assert input_digest(tmp_path / "d" / "a.txt") == hashlib.sha256(b"alpha").hexdigest()
    first = input_digest(tmp_path / "d")
    (tmp_path / "d" / "sub" / "b.txt").rename(tmp_path / "d" / "sub" / "c.txt")
    renamed = input_digest(tmp_path / "d")
    (tmp_path / "d" / "sub" / "c.txt").write_bytes(b"gamma")
    assert len({first, renamed, input_digest(tmp_path / "d")}) == 3
    with pytest.raises(StoreError, match="does not exist"):
        input_digest(tmp_path / "nope")


def _masks(*arrays):
    return {f"m{i}": (np.array(a, np.uint8), None) for i, a in enumerate(arrays)}


def test_diff_masks_hand_worked(tmp_path):
    same = [[1, 2], [3, 255]]
    write(tmp_path / "a", "mask", {**_masks([[0, 0, 1, 1]], same), "onlya": (np.zeros((1, 1), np.uint8), None)},
          params={"crf": {"iters": 10, "sxy": 3}, "seed": 0}, inputs={"cam": "x", "sal": "s"})
    write(tmp_path / "b", "mask", {**_masks([[0, 1, 1, 255]], same), "onlyb": (np.zeros((1, 1), np.uint8), None)},
          params={"crf": {"iters": 5, "sxy": 3}, "new": True}, inputs={"cam": "y", "sal": "s"})
    d = diff_stores(open_store(tmp_path / "a"), open_store(tmp_path / "b"))
    assert (d["common"], d["only_a"], d["only_b"]) == (2, ["onlya"], ["onlyb"])
    # in %: image m0: class 0 A{0,1} B{0} → 1/2; class 1 A{2,3} B{1,2} → 1/3; m1 identical (1, 2, 3 once each)
    np.testing.assert_allclose([d["per_class"][c] for c in CLASSES], [50, 50, 100, 100])
    assert d["agreement"] == pytest.approx(100 * 5 / 7)  # m0: 2 of 4 labelled-in-either pixels, m1: 3 of 3
    assert d["ignore_changed"] == pytest.approx(100 / 8)
    assert d["most_changed"] == [("m0", 50.0), ("m1", 100.0)]
    assert d["params"] == [("crf.iters", "10", "5"), ("new", ABSENT, "true"), ("seed", "0", ABSENT)]
    assert d["inputs"] == [("cam", '"x"', '"y"')] and d["provenance"] == []


def test_diff_cams_mean_abs_delta(tmp_path):
    base = np.zeros((2, 2, 2), np.float32)
    write(tmp_path / "a", "cam", {"x": (base, [1, 2])})
    write(tmp_path / "b", "cam", {"x": (base + np.array([0.5, 0.25], np.float32)[:, None, None], [1, 2])})
    d = diff_stores(open_store(tmp_path / "a"), open_store(tmp_path / "b"))
    assert d["per_class"] == {"cat": 0.5, "dog": 0.25} and d["most_changed"] == [("x", 0.375)]


def test_diff_refuses_other_kind_or_shape(tmp_path):
    write(tmp_path / "m", "mask", _masks([[0]]))
    write(tmp_path / "m2", "mask", _masks([[0, 0]]))
    write(tmp_path / "s", "saliency", {"m0": (np.zeros((1, 1)), None)})
    with pytest.raises(StoreError, match="diff two stores of one kind"):
        diff_stores(open_store(tmp_path / "m"), open_store(tmp_path / "s"))
    with pytest.raises(StoreError, match=r"image 'm0' is \(1, 2\)"):
        diff_stores(open_store(tmp_path / "m"), open_store(tmp_path / "m2"))


def write_parts(path, count, params=PARAMS):
    """A mask store written by `count` jobs, each its id range as part-<i>-of-<count>."""
    images = images_of("mask", n=5)
    ids = list(images)
    for i in range(count):
        chunk = ids[i * len(ids) // count:(i + 1) * len(ids) // count]
        write(path / part_name(i, count), "mask", {k: images[k] for k in chunk}, params=params)
    return images


@pytest.mark.parametrize("count", [1, 2, 3])
def test_a_folder_of_parts_opens_as_one_store(tmp_path, count):
    images = write_parts(tmp_path / "cams", count)
    with open_store(tmp_path / "cams", kind="mask") as store:
        assert sorted(store.ids) == sorted(images)
        for image_id, (mask, _) in images.items():
            np.testing.assert_array_equal(store[image_id], mask)


def test_parts_must_be_complete_agree_and_not_mix_with_a_whole_store(tmp_path):
    write_parts(tmp_path / "a", 3)
    shutil.rmtree(tmp_path / "a" / part_name(1, 3))
    with pytest.raises(StoreError, match="part-00001-of-00003: missing"):
        open_store(tmp_path / "a")
    write_parts(tmp_path / "b", 2)
    write(tmp_path / "b" / part_name(1, 2), "mask", {"x": (np.zeros((2, 2), np.uint8), None)}, params={"other": 1})
    with pytest.raises(StoreError, match="params differ"):
        open_store(tmp_path / "b")
    write_parts(tmp_path / "c", 2)
    write_parts(tmp_path / "c", 3)
    with pytest.raises(StoreError, match="parts of \\[2, 3\\] jobs"):
        open_store(tmp_path / "c")
    write_parts(tmp_path / "d", 2)
    (tmp_path / "d" / "meta.json").write_text("{}")
    with pytest.raises(StoreError, match="both a whole store and parts"):
        open_store(tmp_path / "d")
