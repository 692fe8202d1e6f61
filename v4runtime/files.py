"""Read a file from disk: regular files only, a byte cap, typed errors, never a hang.

``Path.read_bytes`` blocks forever on a named pipe with no writer and reads ``/dev/zero`` until
memory runs out; a file that grows while it is read gets past a size check made beforehand.
:func:`read_file` opens without blocking, checks the opened file itself (not the name, which may
be swapped in between) and reads at most one byte over the cap. Images, settings files and
model cards are all read this way; each caller names its own error type. Results written to
standard output go through :func:`write_line`, so a full disk is a typed error too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TextIO

from v4runtime.errors import ConfigError, ImageError, V4Error

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


def read_file(
    path: str | os.PathLike[str],
    max_bytes: int = DEFAULT_MAX_BYTES,
    *,
    error: type[V4Error] = ImageError,
    what: str = "",
) -> bytes:
    """Return the bytes of the regular file at ``path``.

    Args:
        path: The file.
        max_bytes: Refuse files larger than this, checked before and while reading.
        error: The error type raised, with the ``reason`` below.
        what: Words put before the path in messages, e.g. ``"config file "``.

    Raises:
        V4Error: Of type ``error``, ``reason`` one of ``not_found`` (an empty path too); ``not_a_file`` (a directory,
            pipe, socket or device); ``too_large``; ``unreadable`` (permissions, I/O error).
    """
    if not os.fspath(path):  # Path("") is ".": an unset variable in a script would read the folder
        raise error(f"{what}'': empty path, no such file", reason="not_found")
    path = Path(path)
    name = f"{what}{path}"
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)  # O_NONBLOCK: opening a pipe with no writer returns at once
    except FileNotFoundError as exc:
        raise error(f"{name}: no such file", reason="not_found") from exc
    except IsADirectoryError as exc:
        raise error(f"{name} is a directory, not a file", reason="not_a_file") from exc
    except OSError as exc:
        raise error(f"{name}: cannot read: {exc.strerror or exc}", reason="unreadable") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{name} is {_kind(info.st_mode)}, not a file", reason="not_a_file")
        if info.st_size > max_bytes:
            raise error(f"{name}: {info.st_size} bytes is over the limit of {max_bytes}", reason="too_large")
        return _read_capped(fd, name, max_bytes, error)
    except V4Error:
        raise
    except OSError as exc:
        raise error(f"{name}: cannot read: {exc.strerror or exc}", reason="unreadable") from exc
    finally:
        os.close(fd)


def _read_capped(fd: int, name: str, max_bytes: int, error: type[V4Error] = ImageError) -> bytes:
    """Read to the end, or refuse once more than ``max_bytes`` arrived (the file grew)."""
    parts: list[bytes] = []
    total = 0
    while chunk := os.read(fd, min(_CHUNK, max_bytes + 1 - total)):
        parts.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            raise error(f"{name}: more than the limit of {max_bytes} bytes", reason="too_large")
    return b"".join(parts)


class OutputError(V4Error):
    """A command's results could not be written (standard output on a full disk, a closed terminal)."""


def write_line(line: str, stream: TextIO, *, flush: bool = False) -> None:
    """Print ``line`` on ``stream``; a write that fails is an :class:`OutputError`, reason ``output``.

    ``BrokenPipeError`` passes through: the reader went away, which the CLI ends quietly.
    """
    try:
        print(line, file=stream, flush=flush)
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise output_error(exc) from exc


def output_error(exc: OSError) -> OutputError:
    """The :class:`OutputError` for a failed write to standard output."""
    return OutputError(f"cannot write the results to standard output: {exc.strerror or exc}", reason="output")


def check_output_dir(
    path: str | os.PathLike[str], option: str, shown: str | os.PathLike[str] | None = None,
    *, error: type[V4Error] = ConfigError,
) -> None:
    """Fail now, not after the work, when ``path`` cannot become (or is not) a writable folder.

    ``option`` starts the message (e.g. ``"--out-dir"``); ``shown`` is the path it names (default ``path``).
    """
    probe = Path(path)
    target = Path(shown) if shown is not None else probe
    while not probe.exists() and probe != probe.parent:  # the nearest part of the path that exists
        if probe.is_symlink():  # a dangling link
            raise error(f"{option} {target}: {probe} is a broken link")
        probe = probe.parent
    if not probe.is_dir():
        raise error(f"{option} {target}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise error(f"{option} {target}: {probe} is not writable")


def check_output_file(path: str | os.PathLike[str], option: str, *, error: type[V4Error] = ConfigError) -> None:
    """Fail now when ``path`` is a folder, or its folder cannot be made or written."""
    target = Path(path)
    if target.is_dir():
        raise error(f"{option} {target} is a folder, not a file")
    check_output_dir(target.parent, option, shown=target, error=error)
