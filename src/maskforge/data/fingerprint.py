"""The dataset as a dependency: the files prepare reads, and a content hash of them.

DVC lists `dataset_paths` as deps of prepare and hashes them itself. Snakemake compares mtimes
only, so its prepare rule reads `data/dataset.json`, which the Snakefile refreshes when it is
parsed (`write_fingerprint`) and rewrites only when the content hash changes: editing a mask, an
image, a split list or the label file reruns prepare; touching or copying them does not. Hashes of
unchanged files (same size, mtime and inode) come from a cache beside it, so a refresh costs one
stat per file. prepare records the same hash in the manifest (`dataset_sha256`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

from maskforge.atomic import atomic_write_text
from maskforge.store import file_sha256

FINGERPRINT = "data/dataset.json"               # Snakemake's input of prepare
CACHE = "data/.dataset_cache.json"              # path → [size, mtime_ns, inode, sha256] of the last refresh


def dataset_paths(dataset: Mapping[str, Any]) -> list[str]:
    """The files and folders prepare reads for the `dataset` params section, those that exist,
    as `dataset.root`-joined paths (none for the synthetic set: its params make it)."""
    root = dataset["root"]
    if root == "synthetic":
        return []
    base = Path(root)
    if (base / "annotations").is_dir() and not (base / "JPEGImages").is_dir():
        splits = (dataset["train_split"], dataset["val_split"])
        candidates = [*(f"annotations/instances_{s}.json" for s in splits), *splits]
    else:
        labels = dataset["label_file"] or "cls_labels.json"
        candidates = ["ImageSets/Segmentation", "JPEGImages", dataset["mask_dir"], "classes.json", labels]
    return [os.path.join(root, c) for c in dict.fromkeys(candidates) if (base / c).exists()]


def _files(root: str, paths: list[str]) -> Iterator[tuple[str, str]]:
    """(name relative to `root`, path) of every file under `paths` (each `root`-joined)."""
    skip = len(os.path.join(root, ""))
    for path in paths:
        if os.path.isdir(path):
            for folder, _, names in os.walk(path):
                yield from ((p[skip:], p) for p in (os.path.join(folder, n) for n in names))
        else:
            yield path[skip:], path


def dataset_sha256(dataset: Mapping[str, Any], cache_path: str | os.PathLike | None = CACHE) -> str:
    """sha256 over the relative names and contents of every file of `dataset_paths`, sorted; file
    hashes are reused from `cache_path` while size, mtime and inode match (None: no cache).
    Unreadable files count by name only: prepare reports them."""
    root = dataset["root"]
    cache: dict[str, list] = {}
    if cache_path is not None:
        try:
            cache = json.loads(Path(cache_path).read_text())
        except (OSError, ValueError):
            cache = {}
    fresh: dict[str, list] = {}
    h = hashlib.sha256()
    for name, path in sorted(_files(root, dataset_paths(dataset))):
        try:
            st = os.stat(path)
            key = [st.st_size, st.st_mtime_ns, st.st_ino]
            known = cache.get(path)
            digest = known[3] if known and known[:3] == key else file_sha256(path).hex()
            fresh[path] = [*key, digest]
        except OSError:
            digest = "unreadable"
        h.update(name.encode("utf-8", "surrogateescape") + b"\0" + digest.encode() + b"\n")
    if cache_path is not None and fresh != cache:
        atomic_write_text(cache_path, json.dumps(fresh, sort_keys=True))
    return h.hexdigest()


def write_fingerprint(dataset: Mapping[str, Any], path: str | os.PathLike = FINGERPRINT,
                      cache_path: str | os.PathLike | None = CACHE) -> bool:
    """Write {root, sha256} of the dataset to `path` unless it already holds exactly that (so its
    mtime moves only when the content does); True if it was written."""
    text = json.dumps({"root": dataset["root"], "sha256": dataset_sha256(dataset, cache_path)}, sort_keys=True) + "\n"
    try:
        if Path(path).read_text() == text:
            return False
    except OSError:
        pass
    atomic_write_text(path, text)
    return True
