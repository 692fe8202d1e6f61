"""Finding and loading runbook files (``runbooks/*.yml``)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from v4runtime import strict_yaml
from v4runtime.errors import RunbookError
from v4runtime.runbooks.model import Runbook
from v4runtime.runbooks.schema import Problem, RunbookValidationError, validate

#: Environment variable that overrides where runbooks are looked up.
DIR_ENV = "V4_RUNBOOK_DIR"
SUFFIXES = (".yml", ".yaml")
#: Largest runbook file accepted (bytes); real ones are a few KiB.
MAX_BYTES = 1 << 20
#: Most values (scalars, lists, mappings) a document may hold once YAML aliases are expanded.
MAX_NODES = 50_000


def _too_big(data: Any) -> bool:
    """True when ``data`` holds more than :data:`MAX_NODES` values (e.g. a YAML alias bomb)."""
    stack, count = [data], 0
    while stack:
        item = stack.pop()
        count += 1
        if count > MAX_NODES:
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def find_dir(start: Path | None = None) -> Path:
    """The runbook directory: ``$V4_RUNBOOK_DIR``, else ``runbooks/`` in the current or a parent directory.

    Raises:
        RunbookError: when no directory is found.
    """
    if os.environ.get(DIR_ENV):
        path = Path(os.environ[DIR_ENV])
        if not path.is_dir():
            raise RunbookError(f"{DIR_ENV}={path} is not a directory")
        return path
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "runbooks").is_dir():
            return folder / "runbooks"
    raise RunbookError(f"no runbooks/ directory in {here} or its parents (set {DIR_ENV} or pass --dir)")


def runbook_files(directory: Path) -> list[Path]:
    """Runbook files in ``directory``, sorted by name."""
    return sorted(p for p in directory.iterdir() if p.suffix in SUFFIXES and p.is_file())


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _read(path: Path, file: str) -> str:
    """The file's text; refuses directories, pipes, devices, oversized and non-UTF-8 files."""
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise RunbookError(f"{file}: cannot read: is a directory, not a runbook file")
        if not stat.S_ISREG(info.st_mode):  # a FIFO or device would block or never end
            raise RunbookError(f"{file}: cannot read: not a regular file")
        if info.st_size > MAX_BYTES:
            raise RunbookError(f"{file}: cannot read: {info.st_size} bytes is more than the {MAX_BYTES} allowed")
        raw = path.read_bytes()
    except OSError as exc:
        raise RunbookError(f"{file}: cannot read: {exc.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        raise RunbookValidationError([Problem(file, None, None, problem)]) from None


def load_file(path: Path) -> Runbook:
    """Load and validate one runbook file.

    Raises:
        RunbookError: the file cannot be read (missing, a directory, a pipe, too big).
        RunbookValidationError: the file is not UTF-8 YAML or does not match the schema.
    """
    file = _display(path)
    text = _read(path, file)
    try:
        data = strict_yaml.load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise RunbookValidationError([Problem(file, None, where, f"not valid YAML: {problem}")]) from None
    except RecursionError:
        raise RunbookValidationError([Problem(file, None, None, "not valid YAML: nested too deeply")]) from None
    if _too_big(data):
        problem = f"document expands to more than {MAX_NODES} values (YAML aliases?)"
        raise RunbookValidationError([Problem(file, None, None, problem)])
    return validate(data, file, path.stem)


def load(name: str, directory: Path | None = None) -> Runbook:
    """Load the runbook called ``name`` (a file stem in the runbook directory, or a path).

    Raises:
        RunbookError: no such runbook, or it is invalid.
    """
    candidate = Path(name)
    if candidate.suffix in SUFFIXES and os.path.lexists(candidate):  # a path: report why it cannot load
        return load_file(candidate)
    folder = directory or find_dir()
    for suffix in SUFFIXES:
        if (folder / f"{name}{suffix}").is_file():
            return load_file(folder / f"{name}{suffix}")
    known = ", ".join(p.stem for p in runbook_files(folder)) or "none"
    raise RunbookError(f"no runbook {name!r} in {_display(folder)} (available: {known})")


def load_all(directory: Path) -> list[Runbook]:
    """Load every runbook in ``directory``; raises on the first invalid one."""
    return [load_file(p) for p in runbook_files(directory)]
