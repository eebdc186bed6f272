"""Reuse of large freed buffers during a codec call (glibc), so that time per pixel stays flat.

Why: glibc's malloc serves blocks above its mmap threshold (dynamic, at most 32 MiB on
64-bit) with a fresh mmap and unmaps them on free. Every such block is page-faulted in and
zero-filled by the kernel on first touch. Below 32 MiB blocks come from the heap and are
reused. At 768x512 nearly every temporary of the network and of the float64 entropy path is
below the threshold; at 3840x2160 they are 100-750 MB (feature maps at H/2 and H/4, the
im2col buffers of the float64 ChARM convolutions), so a 4K encode had the kernel zero ~25 GB
of fresh pages: 40% of its CPU time was system time, and time per megapixel was 1.55x that
at 768x512 (results/bench-scaling.json keeps the measurement with this switched off).

What: while ``compress_image``/``decompress_image`` run, large blocks come from the heap
(``M_MMAP_MAX = 0``) and freed memory is not trimmed (``M_TRIM_THRESHOLD`` = max), so the
next temporary of the same size reuses pages that are already mapped. When the outermost
codec call returns, glibc's settings are put back to their steady state (mmap above 32 MiB,
trim above 64 MiB: where its dynamic thresholds end up) and, when more than 256 MiB of the
heap is free, ``malloc_trim(0)`` hands it back to the system, so the process does not keep a
large image's peak after the call (a small image's few hundred MB stay for the next call).

Cost: heap fragmentation makes the in-call peak higher than with mmap (numbers in
docs/results.md). Pixels and bytes are unaffected: only where memory comes from changes.
Does nothing off glibc (macOS, musl) or with ``SAMIC_REUSE_BUFFERS=0`` in the environment.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
import threading

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4  # <malloc.h>
DEFAULT_MMAP_MAX = 65536
STEADY_MMAP_THRESHOLD = 32 << 20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
STEADY_TRIM_THRESHOLD = 64 << 20  # glibc keeps trim = 2 x mmap threshold
KEEP_FREE_BYTES = 256 << 20  # up to this much free heap stays mapped for the next call (small images)
_INT_MAX = 2 ** 31 - 1

_lock = threading.Lock()
_depth = 0


@functools.lru_cache(maxsize=1)
def _glibc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):
        return None


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def _free_heap_bytes(libc) -> int:
    """Free bytes held by malloc (mallinfo2, glibc >= 2.33); older glibc: always trim."""
    try:
        libc.mallinfo2.restype = _MallInfo2
        return libc.mallinfo2().fordblks
    except AttributeError:
        return 1 << 62


def enabled() -> bool:
    """Whether codec calls switch glibc to buffer reuse (glibc, and SAMIC_REUSE_BUFFERS != 0)."""
    return _glibc() is not None and os.environ.get("SAMIC_REUSE_BUFFERS", "1") != "0"


@contextlib.contextmanager
def reuse_large_buffers():
    """Serve large blocks from the heap and keep freed memory until the outermost exit."""
    global _depth
    libc = _glibc() if enabled() else None
    if libc is None:
        yield
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            libc.mallopt(M_MMAP_MAX, 0)
            libc.mallopt(M_TRIM_THRESHOLD, _INT_MAX)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
                libc.mallopt(M_MMAP_THRESHOLD, STEADY_MMAP_THRESHOLD)
                libc.mallopt(M_TRIM_THRESHOLD, STEADY_TRIM_THRESHOLD)
                if _free_heap_bytes(libc) > KEEP_FREE_BYTES:
                    libc.malloc_trim(0)


def reusing_large_buffers(fn):
    """Decorator form of reuse_large_buffers."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with reuse_large_buffers():
            return fn(*args, **kwargs)
    return wrapper
