"""Benchmarks behind ``v4runtime bench NAME``.

Each benchmark module exposes ``add_arguments(parser)`` and ``run(args) -> int``. Benchmarks print
figures with a baseline measured in the same run; they are never timed tests.

Options are checked before anything is measured (:func:`require`, :func:`check_output_dir`,
:func:`check_output_file`), and reports are written with :func:`write_reports`: all files of a report
or none, so a failed or interrupted run leaves the previous report in place.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import tempfile
from pathlib import Path

from v4runtime.errors import ConfigError
from v4runtime.files import check_output_dir, check_output_file

__all__ = ["BENCHMARKS", "check_output_dir", "check_output_file", "register", "require", "write_reports"]

#: Benchmark name -> module implementing it.
BENCHMARKS: dict[str, str] = {
    "streams": "v4runtime.bench.streams",
    "scan": "v4runtime.bench.scan",
    "monitor": "v4runtime.bench.monitor",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``v4runtime bench`` and one sub-command per benchmark."""
    parser = subparsers.add_parser("bench", help="run a benchmark and print its figures")
    bench_sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name, module_name in BENCHMARKS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # pragma: no cover - only while a benchmark is being built
            if exc.name != module_name:
                raise
            continue
        sub = bench_sub.add_parser(name, help=(module.__doc__ or name).strip().splitlines()[0])
        module.add_arguments(sub)
        sub.set_defaults(func=module.run)


def require(condition: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``condition`` holds (option checks)."""
    if not condition:
        raise ConfigError(message)


def write_reports(files: dict[Path, str]) -> None:
    """Write every file of a report, or none of them.

    Each text goes to a temporary file beside its target; only when all are written are they renamed
    into place, so an error or an interrupt leaves the previous report (or no report), never half of one.
    """
    for path in files:  # a rename onto a folder fails: find out before the first file is replaced
        if path.is_dir():
            raise ConfigError(f"cannot write {path}: it is a folder")
    staged: list[tuple[str, Path]] = []
    current: Path | None = None
    try:
        for path, text in files.items():
            current = path
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            staged.append((tmp, path))
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(tmp, 0o644)
        for tmp, path in staged:
            current = path
            os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"cannot write {current}: {exc.strerror or exc}") from exc
    finally:
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
