"""coverage_entries: what the docs fence gate counts for runbooks."""

from __future__ import annotations

from pathlib import Path

from v4runtime.runbooks.coverage import coverage_entries, summary
from v4runtime.runbooks.loader import load_file, runbook_files

from .helpers import REPO, cli, write_runbook


def test_every_shipped_step_is_an_entry() -> None:
    entries = coverage_entries(REPO)
    expected = [(f"runbooks/{p.name}", s.id) for p in runbook_files(REPO / "runbooks") for s in load_file(p).steps]
    assert [(e.file, e.step) for e in entries] == expected
    for entry in entries:
        assert entry.executed == (entry.exempt is None)  # tests/runbooks/test_e2e.py exists


def test_exempt_steps_and_runbooks_are_not_executed(tmp_path: Path) -> None:
    step = "  - id: {id}\n    description: d\n    run: 'true'\n    verify: {{exit_code: 0}}\n    rollback: 'true'\n"
    write_runbook(
        tmp_path, "a", "title: A\npurpose: P\nsteps:\n" + step.format(id="one")
        + step.format(id="two") + "    ci_exempt: needs a Kubernetes cluster\n",
    )
    write_runbook(tmp_path, "b", "title: B\npurpose: P\nci_exempt: production only, by design\nsteps:\n" + step.format(id="x"))
    assert all(not e.executed for e in coverage_entries(tmp_path))  # no e2e test in this tree
    (tmp_path / "tests" / "runbooks").mkdir(parents=True)
    (tmp_path / "tests" / "runbooks" / "test_e2e.py").write_text("")
    entries = {(e.file, e.step): e for e in coverage_entries(tmp_path)}
    assert entries["runbooks/a.yml", "one"].executed and entries["runbooks/a.yml", "one"].exempt is None
    assert entries["runbooks/a.yml", "one"].commands == ("run", "rollback")
    assert entries["runbooks/a.yml", "two"].exempt == "needs a Kubernetes cluster"
    assert not entries["runbooks/a.yml", "two"].executed
    assert entries["runbooks/b.yml", "x"].exempt == "production only, by design"
    assert summary(list(entries.values())) == {
        "runbooks": 2, "steps": 3, "executed": 1, "exempt": 2, "commands_executed": 2,
    }
    shown = cli(["coverage", "--root", str(tmp_path)], cwd=tmp_path)
    assert "2 runbooks, 3 steps: 1 executed by CI (2 commands), 2 exempt" in shown.stdout
