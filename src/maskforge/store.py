"""The store format: one directory per pseudo-label version (meta.json + HDF5 shards), written by
StoreWriter and read by StoreReader (`open_store`). Differences between stores are in store_diff,
PNG export/import in store_png.

`<store>/meta.json` holds the provenance; `shard-00000.h5`, … hold one dataset `/<id>` per image.
Identical content gives byte-identical files (no wall-clock times; h5py pinned). A store is
written under `<store>.tmp-<pid>` and renamed into place on success, so a crash never leaves a
store that looks whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from maskforge import __version__
from maskforge.atomic import is_leftover, temp_path
from maskforge.metrics import IGNORE
from maskforge.store_parts import PART, part_name

if TYPE_CHECKING:
    from maskforge.data.manifest import Manifest

SCHEMA_VERSION = 2   # 2: manifest_sha256
KINDS = ("cam", "mask", "saliency", "region")
META = "meta.json"
_PER_CLASS = ("cam", "region")  # kinds whose images are K×H×W with a `classes` attribute
_TMP_NAME = re.compile(r"\.tmp-\d+$")
_RERUN = "re-run the stage that wrote it"


class StoreError(ValueError):
    """A store problem, as one line: '<path>: <what> — <fix>'."""


def params_sha256(params: dict) -> str:
    """sha256 of the canonical JSON of `params` (sorted keys, compact separators)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def file_sha256(path: str | os.PathLike) -> bytes:
    """sha256 digest of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.digest()


def input_digest(path: str | os.PathLike) -> str:
    """sha256 hex of a file's bytes, or of a directory's files (relative names + contents, sorted)."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path).hex()
    if not path.is_dir():
        raise StoreError(f"{path}: input does not exist — build it first or fix the path")
    h = hashlib.sha256()
    names = (p.relative_to(path) for p in path.rglob("*") if p.is_file())
    for name in sorted(n.as_posix() for n in names      # not Snakemake's marker, not a killed writer's temp
                       if n.name != ".snakemake_timestamp" and not any(map(is_leftover, n.parts))):
        h.update(name.encode() + b"\0" + file_sha256(path / name))
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap_in(tmp: Path, path: Path) -> None:
    """Rename the finished folder `tmp` to `path`, replacing what was there (moved aside first,
    then removed), and fsync the parent so the rename survives a crash."""
    _fsync(tmp)
    old = path.with_name(f"{path.name}.old-{os.getpid()}")
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    _fsync(path.parent)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def replace_folder(path: str | os.PathLike) -> Iterator[Path]:
    """`with replace_folder(path) as tmp:` build a folder in `<path>.tmp-<pid>`; on a clean exit
    it replaces `path`, on an exception `path` is left as it was. The temporary folder is removed
    either way."""
    path = Path(path)
    tmp = temp_path(path)          # also clears what killed writers of `path` left
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        _swap_in(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_classes(where: str, classes: Sequence[int] | None, k: int, num_classes: int) -> np.ndarray:
    """The `classes` attribute of a K×H×W image: K distinct class indices."""
    if classes is None:
        raise StoreError(f"{where}: K×H×W images need `classes` — pass the labelled class indices")
    labels = np.asarray(classes, dtype=np.int64).reshape(-1)
    if len(labels) != k or len(set(labels.tolist())) != k or (labels < 0).any() or (labels >= num_classes).any():
        raise StoreError(f"{where}: classes {labels.tolist()} must be {k} distinct indices in 0..{num_classes - 1}"
                         " — pass one class index per channel")
    return labels


def _encode(where: str, kind: str, array: np.ndarray, classes: Sequence[int] | None,
            num_classes: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate one image for `kind`; return (array as stored, `classes` attribute or None)."""
    array = np.asarray(array)
    want = {"mask": "uint8 H×W", "saliency": "float H×W in [0,1]",
            "cam": "finite float K×H×W (float16 range)", "region": "bool/uint8 0/1 K×H×W"}[kind]
    bad = StoreError(f"{where}: a {kind} image must be {want}, got {array.dtype} {array.shape} — convert it before add()")
    if array.ndim != (3 if kind in _PER_CLASS else 2):
        raise bad
    if kind not in _PER_CLASS and classes is not None:
        raise StoreError(f"{where}: {kind} images take no `classes` — drop the argument")
    if kind == "mask":
        if array.dtype != np.uint8:
            raise bad
        if ((array >= num_classes) & (array != IGNORE)).any():
            raise StoreError(f"{where}: mask values must be class indices < {num_classes} or {IGNORE} (ignore)"
                             " — check the class list")
        return array, None
    if kind == "region":
        if array.dtype not in (np.bool_, np.uint8) or array.max(initial=0) > 1:
            raise bad
        return array.astype(np.uint8), _check_classes(where, classes, array.shape[0], num_classes)
    if not np.issubdtype(array.dtype, np.floating):
        raise bad
    with np.errstate(over="ignore"):
        stored = array.astype(np.float16)
    if not np.isfinite(stored).all() or (kind == "saliency" and (array.min(initial=0) < 0 or array.max(initial=0) > 1)):
        raise bad
    return stored, (_check_classes(where, classes, array.shape[0], num_classes) if kind == "cam" else None)


class StoreWriter:
    """Writes a store atomically: `with StoreWriter(path, ...) as w: w.add(id, array)`.

    On a clean exit the store replaces whatever was at `path`; on an exception nothing at `path`
    changes and the temporary directory is removed."""

    def __init__(self, path: str | os.PathLike, *, kind: str, stage: str, params: dict,
                 inputs: dict[str, str], classes: list[str], manifest: str, shard_size: int = 256,
                 derived: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        if kind not in KINDS:
            raise StoreError(f"{self.path}: unknown store kind {kind!r} — use one of {', '.join(KINDS)}")
        if shard_size < 1:
            raise StoreError(f"{self.path}: shard_size {shard_size} — use a positive number of images per shard")
        try:
            digest = params_sha256(params)
            params = json.loads(json.dumps(params))  # a copy: later edits by the caller cannot reach meta
        except TypeError as e:
            raise StoreError(f"{self.path}: params are not JSON-serialisable ({e}) — pass plain dicts/lists/numbers/strings") from None
        self.shard_size = shard_size
        self.meta = {"schema_version": SCHEMA_VERSION, "kind": kind, "stage": stage, "params": params,
                     "params_sha256": digest, "inputs": dict(inputs), "manifest_sha256": manifest,
                     "classes": list(classes), **({"derived": dict(derived)} if derived else {}),
                     "ids": {}, "shards": {}, "code_version": __version__}
        self._tmp = temp_path(self.path)
        self._shard: h5py.File | None = None
        self._open = False

    def __enter__(self) -> StoreWriter:
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp.mkdir(parents=True)
        self._open = True
        return self

    def add(self, image_id: str, array: np.ndarray, classes: Sequence[int] | None = None) -> None:
        """Store one image: mask uint8 H×W (255 = ignore); saliency float H×W in [0, 1] (kept as
        float16); cam float K×H×W (float16) and region bool/0-1 K×H×W, both with `classes`, the K
        labelled class indices."""
        where = f"{self.path}: image {image_id!r}"
        if not self._open:
            raise StoreError(f"{where}: add() outside the writer — use `with StoreWriter(...) as w:`")
        ids = self.meta["ids"]
        if not isinstance(image_id, str) or not image_id or "/" in image_id or image_id in (".", ".."):
            raise StoreError(f"{where}: invalid id — use a non-empty name without '/'")
        if image_id in ids:
            raise StoreError(f"{where}: added twice — ids must be unique")
        data, labels = _encode(where, self.meta["kind"], array, classes, len(self.meta["classes"]))
        shard = f"shard-{len(ids) // self.shard_size:05d}.h5"
        if len(ids) % self.shard_size == 0:
            self._close_shard()
            self._shard = h5py.File(self._tmp / shard, "w")
        ds = self._shard.create_dataset(image_id, data=data, chunks=True, compression="gzip",
                                        compression_opts=4, shuffle=True, track_times=False)
        if labels is not None:
            ds.attrs["classes"] = labels
        ids[image_id] = shard

    def _close_shard(self) -> None:
        if self._shard is not None:
            name = Path(self._shard.filename)
            self._shard.close()
            self._shard = None
            _fsync(name)
            self.meta["shards"][name.name] = name.stat().st_size

    def __exit__(self, exc_type, exc, tb) -> None:
        self._open = False
        try:
            if exc_type is None:
                self._commit()
        finally:
            if self._shard is not None:
                self._shard.close()
            shutil.rmtree(self._tmp, ignore_errors=True)

    def _commit(self) -> None:
        self._close_shard()
        meta = self._tmp / META
        meta.write_text(json.dumps(self.meta, indent=2) + "\n")
        _fsync(meta)
        _swap_in(self._tmp, self.path)


class StoreReader:
    """A store opened for reading; images are read by id, their shard opened on use (one at a time)."""

    def __init__(self, path: Path, meta: dict) -> None:
        self.path = path
        self.meta = meta
        self.kind: str = meta["kind"]
        self.classes: list[str] = meta["classes"]
        self.ids: list[str] = list(meta["ids"])
        self.params: dict = meta["params"]
        self.manifest_sha256: str = meta["manifest_sha256"]
        self._files: dict[str, h5py.File] = {}

    @contextlib.contextmanager
    def _dataset(self, image_id: str) -> Iterator[h5py.Dataset]:
        shard = self.meta["ids"].get(image_id)
        if shard is None:
            raise StoreError(f"{self.path}: no image {image_id!r} among its {len(self.ids)} ids"
                             " — check the split, or re-run the stage that writes this store")
        try:
            if shard not in self._files:
                # One shard open at a time: an open HDF5 file keeps the metadata of every image read
                # from it (~36 KiB each, for CAMs) until it is closed, so with every shard left open a
                # reader's memory grew with the store (10.8 MiB per 300 CAMs read). Readers go through
                # a store in id order, shard by shard, so each shard is still opened once.
                self.close()
                self._files[shard] = h5py.File(self.path / shard, "r")
            yield self._files[shard][image_id]
        except (OSError, KeyError) as e:
            raise StoreError(f"{self.path / shard}: cannot read image {image_id!r} ({e}) — {_RERUN}") from None

    def __getitem__(self, image_id: str) -> np.ndarray:
        """The image: uint8 masks, float32 cams/saliency, bool regions."""
        with self._dataset(image_id) as ds:
            data = ds[()]
        if data.dtype == np.float16:
            return data.astype(np.float32)
        return data.astype(bool) if self.kind == "region" else data

    def label_classes(self, image_id: str) -> np.ndarray | None:
        """The labelled class indices of a cam/region image (one per channel); None for other kinds."""
        with self._dataset(image_id) as ds:
            return ds.attrs["classes"] if self.kind in _PER_CLASS else None

    def __contains__(self, image_id: object) -> bool:
        return image_id in self.meta["ids"]

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_store(path: str | os.PathLike, kind: str | None = None, manifest: Manifest | None = None) -> StoreReader:
    """Open a store for reading, checking schema version, kind and shard sizes, and, given the
    `manifest` it is used with, that it was made from that manifest (see `same_manifest`).

    A store written by several jobs is a folder of parts `part-<i>-of-<n>/`, each a store of
    its own id range; it opens as one store once all n parts are there and agree."""
    reader = _open(Path(path), kind)
    if manifest is not None and reader.manifest_sha256 != manifest.sha256:
        raise StoreError(f"{reader.path}: made from another dataset manifest (sha256 {reader.manifest_sha256[:12]}, "
                         f"{manifest.path} is {manifest.sha256[:12]}) — re-run `{reader.meta['stage']}` (and the "
                         "stages before it) after prepare, or pass the store made from this manifest")
    return reader


def check_existing(paths: Sequence[str | os.PathLike]) -> None:
    """Open each of `paths` that exists as a store (meta, schema version, shard sizes): for an
    engine that cannot see inside a folder output (Snakemake), before it plans anything or deletes
    a downstream output. StoreError on the first damaged one, saying how to rebuild it."""
    for path in paths:
        if Path(path).exists():
            try:
                _open(Path(path), None).close()
            except StoreError as exc:
                raise StoreError(f"{exc}; Snakemake cannot see this: `rm -r {path}` and rerun it (it rebuilds "
                                 "the store and what reads it)") from None


def same_manifest(*stores: StoreReader) -> str:
    """The manifest fingerprint that all `stores` were made from (what a store written from
    them records); StoreError naming the odd one out if they differ."""
    first = stores[0]
    for other in stores[1:]:
        if other.manifest_sha256 != first.manifest_sha256:
            raise StoreError(f"{other.path}: made from another dataset manifest than {first.path} (sha256 "
                             f"{other.manifest_sha256[:12]} vs {first.manifest_sha256[:12]}) — re-run "
                             f"`{other.meta['stage']}` (and the stages before it) after the same prepare")
    return first.manifest_sha256


def _open(path: Path, kind: str | None) -> StoreReader:
    if _TMP_NAME.search(path.name):
        raise StoreError(f"{path}: unfinished temporary store left by an interrupted writer — delete it and re-run the stage")
    parts = sorted(p.name for p in path.iterdir() if PART.match(p.name)) if path.is_dir() else []
    if parts:
        if (path / META).exists():
            raise StoreError(f"{path}: both a whole store and parts ({parts[0]}, …) — delete the stale one and re-run")
        return StoreReader(path, _merged_parts(path, parts, kind))
    if not (path / META).is_file():
        raise StoreError(f"{path}: not a mask store (no {META}) — pass a store directory written by maskforge")
    return StoreReader(path, _read_meta(path, kind))


def _read_meta(path: Path, kind: str | None) -> dict:
    try:
        meta = json.loads((path / META).read_text())
    except FileNotFoundError:
        raise StoreError(f"{path}: not a mask store (no {META}) — pass a store directory written by maskforge") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StoreError(f"{path / META}: not valid JSON ({e}) — {_RERUN}") from None
    version = meta.get("schema_version") if isinstance(meta, dict) else None
    if version != SCHEMA_VERSION:
        raise StoreError(f"{path}: store schema version {version}, this maskforge reads {SCHEMA_VERSION}"
                         f" — {_RERUN} with this maskforge version")
    if kind is not None and meta["kind"] != kind:
        raise StoreError(f"{path}: a {meta['kind']} store, expected a {kind} store — pass a {kind} store")
    for shard, size in meta["shards"].items():
        actual = (path / shard).stat().st_size if (path / shard).is_file() else None
        if actual != size:
            found = "missing" if actual is None else f"{actual} bytes"
            raise StoreError(f"{path / shard}: {found}, {META} says {size} bytes (truncated or modified) — {_RERUN}")
    return meta


def _merged_parts(path: Path, parts: list[str], kind: str | None) -> dict:
    """One meta over all parts: ids and shards addressed as `part-…/shard-….h5`."""
    counts = {int(PART.match(name).group(2)) for name in parts}
    if len(counts) != 1:
        raise StoreError(f"{path}: parts of {sorted(counts)} jobs — delete the stale parts and re-run the stage")
    count = counts.pop()
    missing = [part_name(i, count) for i in range(count) if part_name(i, count) not in parts]
    if missing:
        raise StoreError(f"{path / missing[0]}: missing ({len(missing)} of {count} parts) — run the remaining jobs")
    metas = [_read_meta(path / part_name(i, count), kind) for i in range(count)]
    merged = {**metas[0], "ids": {}, "shards": {}}
    for i, meta in enumerate(metas):
        name = part_name(i, count)
        for key in ("kind", "stage", "params", "inputs", "manifest_sha256", "classes"):
            if meta[key] != metas[0][key]:
                raise StoreError(f"{path / name}: its {key} differ from {part_name(0, count)}'s — re-run every part with one config")
        for image_id, shard in meta["ids"].items():
            if image_id in merged["ids"]:
                raise StoreError(f"{path / name}: image {image_id!r} is also in another part — re-run every part")
            merged["ids"][image_id] = f"{name}/{shard}"
        merged["shards"].update({f"{name}/{shard}": size for shard, size in meta["shards"].items()})
    return merged
