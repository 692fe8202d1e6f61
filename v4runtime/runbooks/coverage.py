"""Fence-coverage integration: which runbook step commands CI executes for real.

``tests/runbooks/test_e2e.py`` discovers every runbook under ``runbooks/`` and runs each one end
to end (``--ci``: steps marked ``ci_exempt`` are skipped), then runs it again as a rollback drill
(``--rehearse-rollback``) when it has rollbacks, and fails unless every non-exempt step passed and
every rollback succeeded. So a step is *executed* exactly when it is not exempt and that test file
exists; the docs fence gate counts these entries beside the fences of the pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from v4runtime.runbooks.loader import load_file, runbook_files

#: The test that runs every runbook for real, relative to the repository root.
E2E_TEST = Path("tests") / "runbooks" / "test_e2e.py"


@dataclass(frozen=True)
class CoverageEntry:
    """One runbook step as the fence gate sees it."""

    file: str
    step: str
    executed: bool
    exempt: str | None
    commands: tuple[str, ...] = ("run",)


def coverage_entries(root: Path) -> list[CoverageEntry]:
    """One entry per step of every runbook in ``root/runbooks`` (invalid runbooks raise RunbookError).

    ``executed`` is true when the step is not ``ci_exempt`` (itself or its runbook) and the
    end-to-end test exists; ``commands`` lists the step's commands (run, verify, rollback).
    """
    directory = root / "runbooks"
    if not directory.is_dir():
        return []
    e2e = (root / E2E_TEST).is_file()
    entries = []
    for path in runbook_files(directory):
        book = load_file(path)
        for step in book.steps:
            exempt = step.ci_exempt or book.ci_exempt
            commands = ("run",) + (("verify",) if step.verify.run else ()) + (("rollback",) if step.rollback else ())
            entries.append(
                CoverageEntry(
                    file=path.relative_to(root).as_posix(),
                    step=step.id,
                    executed=e2e and exempt is None,
                    exempt=exempt,
                    commands=commands,
                )
            )
    return entries


def summary(entries: list[CoverageEntry]) -> dict[str, int]:
    """Counts for reports: runbooks, steps, executed steps, exempt steps, executed commands."""
    return {
        "runbooks": len({e.file for e in entries}),
        "steps": len(entries),
        "executed": sum(e.executed for e in entries),
        "exempt": sum(e.exempt is not None for e in entries),
        "commands_executed": sum(len(e.commands) for e in entries if e.executed),
    }
