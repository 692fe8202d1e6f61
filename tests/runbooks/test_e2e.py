"""CI runs every runbook in runbooks/ end to end, for real, then rehearses its rollbacks.

The drill runs the steps up to the last one with a rollback and then every rollback in reverse
order, so each rollback undoes a live effect (e.g. stops the monitoring server the ``start`` step
left running).

This is the test :mod:`v4runtime.runbooks.coverage` relies on: a step counts as executed for the
docs fence gate because this file runs every runbook it finds (skipping only steps with a written
``ci_exempt`` reason) and fails unless each of those steps passed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from v4runtime.runbooks.loader import load_file, runbook_files

from .helpers import REPO, cli, events

RUNBOOKS = runbook_files(REPO / "runbooks")


@pytest.mark.slow
@pytest.mark.parametrize("path", RUNBOOKS, ids=[p.stem for p in RUNBOOKS])
def test_runbook_runs_end_to_end(path: Path, tmp_path: Path) -> None:
    book = load_file(path)
    log = tmp_path / "audit.jsonl"
    result = cli(["run", book.name, "--ci", "--yes"], cwd=REPO, log=log, timeout=900)
    assert result.returncode == 0, f"{book.name} failed:\n{result.stdout}\n{result.stderr}"
    rows = events(log)
    passed = {e["step"] for e in rows if e["event"] == "step" and e["status"] == "passed"}
    skipped = {e["step"]: e["reason"] for e in rows if e["event"] == "step_skipped"}
    for step in book.steps:
        exempt = step.ci_exempt or book.ci_exempt
        if exempt:
            assert skipped.get(step.id) == exempt
        else:
            assert step.id in passed, f"step {step.id!r} of {book.name} did not pass"
    assert rows[-1]["event"] == "run_end" and rows[-1]["status"] == "succeeded"
    live = [s for s in book.steps if not (s.ci_exempt or book.ci_exempt)]
    last = max((i for i, s in enumerate(live) if s.rollback), default=None)
    if last is None:
        return
    # Drill: run up to the last step that has a rollback (its effect still live), then roll back.
    only = [arg for s in live[: last + 1] for arg in ("--only", s.id)]
    drill = cli(["run", book.name, "--ci", "--yes", "--rehearse-rollback", *only], cwd=REPO, log=log, timeout=900)
    assert drill.returncode == 0, f"{book.name} rollback drill failed:\n{drill.stdout}\n{drill.stderr}"
    run_id = events(log)[-1]["run_id"]
    rolled = [e for e in events(log) if e["run_id"] == run_id and e["event"] == "rollback"]
    expected = [s.id for s in reversed(live[: last + 1]) if s.rollback]
    assert [e["step"] for e in rolled] == expected
    assert all(e["exit_code"] == 0 for e in rolled)
