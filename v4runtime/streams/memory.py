"""Keep freed memory in the process between extractions, so they stop page-faulting (glibc only).

One extraction allocates about 3.4 MB of float32 planes plus Pillow's decode buffers, in
blocks of 256 KB to 1 MB. With glibc's defaults, a loop that only extracts streams (a stream
cache, a benchmark) hands those blocks back to the kernel after each file and page-faults them
in again for the next: about 800 faults per 256x256 file, a third of the extraction time
measured on a VM. Raising the two thresholds once per process lets later files reuse the memory
of earlier ones, whatever else the process allocates.

The cost is that a process keeps up to :data:`TRIM_THRESHOLD` bytes of freed memory for reuse
instead of returning it. Set ``V4_KEEP_FREED_MEMORY=0`` to leave the allocator untouched.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: Blocks up to this size come from the heap instead of fresh ``mmap`` pages (bytes).
MMAP_THRESHOLD = 16 * 1024 * 1024
#: Freed memory at the top of the heap is returned to the kernel only beyond this (bytes).
TRIM_THRESHOLD = 64 * 1024 * 1024
#: Environment variable that turns the tuning off when set to ``0``, ``false``, ``no`` or ``off``.
OPT_OUT_ENV = "V4_KEEP_FREED_MEMORY"

# glibc's mallopt parameter numbers (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_state: dict[str, bool] = {}


def keep_freed_memory(environ: dict[str, str] | None = None) -> bool:
    """Raise glibc's mmap and trim thresholds once per process; return whether they are raised.

    Returns ``False`` (and changes nothing) off Linux, on a C library without ``mallopt`` (musl),
    or when ``V4_KEEP_FREED_MEMORY`` opts out. Safe to call any number of times.
    """
    if "done" in _state:
        return _state["done"]
    env = os.environ if environ is None else environ
    opted_out = env.get(OPT_OUT_ENV, "").strip().lower() in {"0", "false", "no", "off"}
    _state["done"] = False if opted_out else _mallopt_thresholds()
    return _state["done"]


def _mallopt_thresholds() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; the mmap one also pins the threshold (no dynamic resizing).
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
