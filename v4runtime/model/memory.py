"""Will a corpus's streams fit in memory? Checked before training starts, not after an OOM kill.

Training holds every image's streams in memory (plane streams as uint8 codes, vectors as float32;
:func:`stream_bytes_per_image` per image). A corpus too large for the machine used to run for
minutes (the corpus build, then most of the extraction) before the kernel killed the process
without a message.
"""

from __future__ import annotations

import math
from pathlib import Path

from v4runtime.errors import ConfigError
from v4runtime.streams.spec import STREAM_SPECS

#: Share of the available memory the streams may take: the model, the optimiser, a batch and the
#: interpreter need the rest.
HEADROOM = 0.85


def stream_bytes_per_image() -> int:
    """Bytes one image's streams take in a training corpus (see ``data.extract_all``)."""
    return sum(math.prod(spec.shape) * (1 if len(spec.shape) >= 2 else 4) for spec in STREAM_SPECS)


def _meminfo_available(meminfo: Path) -> int | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_room(cgroup: Path) -> int | None:
    """Memory left under this process's cgroup v2 limit, or None when unlimited or unknown."""
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int((cgroup / "memory.current").read_text().strip())
    except (OSError, ValueError):
        return None


def available_memory(meminfo: Path = Path("/proc/meminfo"), cgroup: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Bytes this process can still allocate: the smaller of the kernel's ``MemAvailable`` and the
    room under a cgroup limit; None where neither can be read (not Linux)."""
    known = [v for v in (_meminfo_available(meminfo), _cgroup_room(cgroup)) if v is not None]
    return min(known) if known else None


def check_fits(images: int, available: int | None = None) -> None:
    """Raise :class:`ConfigError` (reason ``out_of_memory``) when the streams of ``images`` images
    would not fit in memory.

    ``available`` defaults to :func:`available_memory`; an unknown amount passes.
    """
    available = available_memory() if available is None else available
    if available is None:
        return
    per_image = stream_bytes_per_image()
    need = images * per_image
    if need > HEADROOM * available:
        most = int(HEADROOM * available // per_image)
        raise ConfigError(
            f"the streams of {images:,} images need {need / 2**30:.1f} GiB of memory, and "
            f"{available / 2**30:.1f} GiB is available: train on at most about {most:,} images here, "
            f"or on a machine with more memory", reason="out_of_memory")
