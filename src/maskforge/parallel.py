"""Per-image work in worker processes: `map_in_pool` (in order, bounded memory) and
`map_into_store`, which writes each image's result into a new store (used by the dense-CRF and
IR-label stages)."""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np

from maskforge.progress import track
from maskforge.store import StoreWriter

__all__ = ["map_in_pool", "map_into_store"]

# Thread-count variables of numpy/BLAS/OpenMP-style libraries; workers start with all of them = 1.
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                "NUMEXPR_NUM_THREADS", "BLIS_NUM_THREADS")

T = TypeVar("T")
R = TypeVar("R")


def map_into_store(path: str | os.PathLike, fn: Callable[[T], np.ndarray], ids: Sequence[str], items: Iterable[T],
                   workers: int, *, kind: str, stage: str, params: Mapping[str, Any], inputs: Mapping[str, str],
                   manifest: str, classes: Sequence[str]) -> None:
    """The store at `path` holding fn(item) as image ids[i] for the i-th item, computed by
    `map_in_pool` with `workers` processes and written in order (atomically, as every store)."""
    with StoreWriter(path, kind=kind, stage=stage, params=dict(params), inputs=dict(inputs), manifest=manifest,
                     classes=list(classes)) as writer:
        results = track(map_in_pool(fn, items, workers), len(ids), f"{stage} -> {Path(path).name}")
        for image_id, result in zip(ids, results, strict=True):
            writer.add(image_id, result)


def map_in_pool(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """fn(item) for every item, in order. `workers` == 1: a lazy in-process map. Otherwise a pool
    of `workers` fresh (spawned) processes, each started with one thread for numpy/BLAS/OpenMP
    (and torch/OpenCV set to one thread if loaded); `fn` must be picklable (module level). Items
    are submitted one per task and at most 2 × workers are in flight, so neither the inputs nor
    unconsumed results pile up in memory. An exception in `fn` is raised here; the pool stops
    when the iterator is exhausted, closed or raises."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if workers == 1:
        yield from map(fn, items)
        return
    with _single_threaded_environment():
        pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker)
    try:
        pending: deque = deque()
        for item in items:
            pending.append(pool.apply_async(fn, (item,)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
        pool.close()
    finally:
        pool.terminate()
        pool.join()


@contextmanager
def _single_threaded_environment() -> Iterator[None]:
    """Set the thread-count variables to 1 while worker processes start (they inherit the
    environment, and the libraries read it at import), then restore them."""
    saved = {name: os.environ.get(name) for name in _THREAD_VARS}
    os.environ.update({name: "1" for name in _THREAD_VARS})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _init_worker() -> None:
    """Pool initializer: one thread for libraries the spawned worker has already imported
    (the main module's imports run before this)."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    if "cv2" in sys.modules:
        sys.modules["cv2"].setNumThreads(1)
