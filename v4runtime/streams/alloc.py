"""Optional allocator tuning for processes that extract many streams.

Each extraction allocates a few MB of fresh ``float32`` planes. With glibc's default dynamic
thresholds those blocks are often returned to the operating system between images and
page-faulted back in on the next one, which can cost more than the computation itself.
:func:`tune_allocator` raises glibc's mmap and trim thresholds so freed blocks are reused. It
is process-wide, so it is never called on import: long-running extractors (the scan service,
benchmarks, training data preparation) opt in once at start-up. The environment variables
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` do the same from outside.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Threshold set by :func:`tune_allocator` (bytes): blocks below it come from the reusable heap.
THRESHOLD = 64 * 1024 * 1024


def tune_allocator(threshold: int = THRESHOLD) -> bool:
    """Keep freed blocks below ``threshold`` bytes in the heap for reuse (glibc only).

    Returns:
        True when the thresholds were set, False where the C library is not glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, 2 * threshold))
