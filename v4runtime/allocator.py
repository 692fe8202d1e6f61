"""Keep freed memory in the process heap, so every scanned file does not page-fault afresh.

Each file's streams are a few megabytes of new float32 planes. glibc serves blocks that large
with ``mmap`` and returns them to the kernel on ``free``, or trims them off the heap's top once
more than twice its (dynamic) mmap threshold lies free there: either way the next file's planes
are fresh pages, and the kernel zero-fills each one on first touch, a page fault per 4 KiB.
``tests/streams/test_allocator.py`` counts those faults in a fresh process with and without.

Whether a process pays this depends on its history: freeing one block larger than the planes
(a scanner frees the serialised model it rewrites at load) raises glibc's dynamic threshold
enough. Fresh extraction workers, such as training's, or a script calling ``extract_streams``
in a loop, have freed no such block. Setting both thresholds with ``mallopt`` makes the reuse a
decision rather than a side effect: :func:`v4runtime.streams.extract_streams` applies it on its
first call in a process, so every caller gets it.

The cost is memory held: up to :data:`TRIM_THRESHOLD` bytes of freed heap stay with the process.
Elsewhere than glibc (macOS, musl) :func:`keep_freed_memory` does nothing and says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

#: ``mallopt`` parameter numbers (glibc's ``malloc.h``).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Blocks below this come from the heap, so their memory can be reused (glibc's own ceiling for
#: its dynamic threshold; a batch of 8 files' planes stays under it).
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free memory at the heap's top kept rather than given back to the kernel.
TRIM_THRESHOLD = 64 * 1024 * 1024

_lock = threading.Lock()
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; True where they are set.

    Idempotent and thread-safe. Returns False without glibc (nothing is changed there).
    A forked worker inherits the setting; a spawned one must call this itself.
    """
    global _applied
    if _applied is not None:  # every extraction calls this: no lock once it is decided
        return _applied
    with _lock:
        if _applied is None:
            _applied = _mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and _mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        return _applied


def _mallopt(param: int, value: int) -> bool:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018 - glibc only: musl's mallopt is a stub, macOS has none
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt(param, value) == 1
