"""Giving freed heap memory back to the operating system, so that streaming stages keep a flat RSS.

glibc's malloc serves tensors of a few MiB from its heap once the first ones are freed (its mmap
threshold rises to the largest freed block, up to 32 MiB), and it only shrinks the heap from the
top. A loop whose per-image buffers vary in size (refine_irn: the K×F×n random-walk gathers, K the
image's class count) leaves free holes below live blocks that the next image cannot always reuse,
so RSS grows with the image count although live memory does not. `malloc_trim(0)` returns every
free page of every arena (madvise), wherever it lies in the heap.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

__all__ = ["return_free_memory"]


@cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):         # not glibc (musl, macOS): nothing to call
        return None


def return_free_memory() -> bool:
    """glibc malloc_trim(0): free heap pages back to the OS. False where there is no glibc."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
