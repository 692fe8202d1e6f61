"""The coverage gate over the real docs/ and runbooks/: every executable fence runs or is exempt."""

from __future__ import annotations

from pathlib import Path

import pytest
from docharness.gate import DOCHARNESS, MARKDOWN_DOCS, check_exemption_targets, collect_coverage
from docharness.plugin import COVERAGE_KEY, FenceItem


def test_every_executable_fence_runs_or_is_exempt(request: pytest.FixtureRequest, repo: Path) -> None:
    coverage = collect_coverage(repo)
    request.config.stash[COVERAGE_KEY] = coverage  # printed in the terminal summary
    problems = [f"{e.where} ({e.kind}): {e.error}" for e in coverage.errors]
    problems += check_exemption_targets(repo, coverage)
    assert not problems, "\n".join(["fences neither run nor exempt:", *problems])
    assert coverage.executed, "the gate found no executed fence at all: the walk is broken"


def test_collected_items_match_the_gate(request: pytest.FixtureRequest, repo: Path) -> None:
    """Each fence the gate counts as executed on a page collected in this run has a test item."""
    items = request.session.items
    ours = {f"{i.fence.where(repo)}" for i in items if isinstance(i, FenceItem)}
    md = {
        f"{Path(str(i.path)).resolve().relative_to(repo)}:{i.start_line}"
        for i in items
        if type(i).__name__ == "MarkdownInlinePythonItem" and Path(str(i.path)).suffix == ".md"
    }
    if not ours and not md:
        pytest.skip("docs/ pages not collected in this run (run `make test` for the full check)")
    collected_pages = {where.rsplit(":", 1)[0] for where in ours | md}
    executed = [
        e for e in collect_coverage(repo, with_runbooks=False).executed if e.where.rsplit(":", 1)[0] in collected_pages
    ]
    missing = [e.where for e in executed if e.runner == DOCHARNESS and e.where not in ours]
    if request.config.getoption("markdowndocs", False):
        missing += [e.where for e in executed if e.runner == MARKDOWN_DOCS and e.where not in md]
    else:
        missing += [f"{e.where} (run with --markdown-docs)" for e in executed if e.runner == MARKDOWN_DOCS]
    assert not missing, "fences the gate counts as executed but no collector collected:\n" + "\n".join(missing)
