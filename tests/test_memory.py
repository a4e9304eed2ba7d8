"""maskforge.memory: glibc's malloc_trim gives freed heap pages back (RSS falls), elsewhere a no-op."""

import ctypes
import ctypes.util
import sys

import pytest

from maskforge.memory import return_free_memory


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim and /proc are Linux's")
def test_return_free_memory_gives_back_freed_heap_pages():
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    if not hasattr(libc, "malloc_trim"):
        assert return_free_memory() is False
        return
    # 64 MiB in 64 KiB blocks (below the mmap threshold: heap memory), touched; then every block but
    # the last freed: the live last block pins the heap top, so only malloc_trim can give the rest back.
    blocks = [libc.malloc(1 << 16) for _ in range(1024)]
    for b in blocks:
        ctypes.memset(b, 1, 1 << 16)
    for b in blocks[:-1]:
        libc.free(b)
    before = _rss_kib()
    assert return_free_memory() is True
    after = _rss_kib()
    libc.free(blocks[-1])
    assert before - after > 32 * 1024                      # most of the 64 MiB is back with the OS
