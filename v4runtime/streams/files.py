"""Read an image file from disk: regular files only, a byte cap, typed errors, never a hang.

``Path.read_bytes`` blocks forever on a named pipe with no writer and reads ``/dev/zero`` until
memory runs out; a file that grows while it is read gets past a size check made beforehand.
:func:`read_file` opens without blocking, checks the opened file itself (not the name, which may
be swapped in between) and reads at most one byte over the cap.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from v4runtime.errors import ImageError

#: Files larger than this are refused before reading (bytes).
DEFAULT_MAX_BYTES = 256 * 1024 * 1024

_CHUNK = 1 << 20
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def read_file(path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Return the bytes of the regular file at ``path``.

    Raises:
        ImageError: ``not_found``; ``not_a_file`` (a directory, pipe, socket or device);
            ``too_large`` (over ``max_bytes``, checked before and while reading); ``unreadable``
            (permissions, I/O error).
    """
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)  # O_NONBLOCK: opening a pipe with no writer returns at once
    except FileNotFoundError as exc:
        raise ImageError(f"{path}: no such file", reason="not_found") from exc
    except IsADirectoryError as exc:
        raise ImageError(f"{path} is a directory", reason="not_a_file") from exc
    except OSError as exc:
        raise ImageError(f"{path}: cannot read: {exc.strerror or exc}", reason="unreadable") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImageError(f"{path} is {_kind(info.st_mode)}, not a file", reason="not_a_file")
        if info.st_size > max_bytes:
            raise ImageError(f"{path}: {info.st_size} bytes is over the limit of {max_bytes}", reason="too_large")
        return _read_capped(fd, path, max_bytes)
    except ImageError:
        raise
    except OSError as exc:
        raise ImageError(f"{path}: cannot read: {exc.strerror or exc}", reason="unreadable") from exc
    finally:
        os.close(fd)


def _read_capped(fd: int, path: Path, max_bytes: int) -> bytes:
    """Read to the end, or refuse once more than ``max_bytes`` arrived (the file grew)."""
    parts: list[bytes] = []
    total = 0
    while chunk := os.read(fd, min(_CHUNK, max_bytes + 1 - total)):
        parts.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            raise ImageError(f"{path}: more than the limit of {max_bytes} bytes", reason="too_large")
    return b"".join(parts)
