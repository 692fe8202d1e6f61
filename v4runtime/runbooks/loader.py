"""Finding and loading runbook files (``runbooks/*.yml``)."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from v4runtime.errors import RunbookError
from v4runtime.runbooks.model import Runbook
from v4runtime.runbooks.schema import Problem, RunbookValidationError, validate

#: Environment variable that overrides where runbooks are looked up.
DIR_ENV = "V4_RUNBOOK_DIR"
SUFFIXES = (".yml", ".yaml")


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


def load_file(path: Path) -> Runbook:
    """Load and validate one runbook file.

    Raises:
        RunbookValidationError: the file is not valid YAML or does not match the schema.
    """
    file = _display(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RunbookError(f"{file}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise RunbookValidationError([Problem(file, None, where, f"not valid YAML: {problem}")]) from None
    return validate(data, file, path.stem)


def load(name: str, directory: Path | None = None) -> Runbook:
    """Load the runbook called ``name`` (a file stem in the runbook directory, or a path).

    Raises:
        RunbookError: no such runbook, or it is invalid.
    """
    candidate = Path(name)
    if candidate.suffix in SUFFIXES and candidate.is_file():
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
