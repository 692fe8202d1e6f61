"""Checks of page content that must track the code (stale pages fail here)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _code_map() -> set[str]:
    text = (REPO / "docs" / "architecture" / "index.md").read_text()
    start, end = text.index("<!-- code-map:start -->"), text.index("<!-- code-map:end -->")
    return set(re.findall(r"^\| `([a-z_]+)` \|", text[start:end], flags=re.M))


def _package_parts() -> set[str]:
    package = REPO / "v4runtime"
    modules = {p.stem for p in package.glob("*.py") if p.stem not in {"__init__", "__main__"}}
    packages = {p.parent.name for p in package.glob("*/__init__.py")}
    data = {"models"} if (package / "models").is_dir() else set()
    return modules | packages | data


def test_architecture_code_map_matches_the_package() -> None:
    listed, actual = _code_map(), _package_parts()
    assert not actual - listed, f"modules missing from the code map in docs/architecture/index.md: {sorted(actual - listed)}"
    assert not listed - actual, f"code map lists modules that do not exist: {sorted(listed - actual)}"


def test_readme_quick_start_has_exactly_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^(?:\$ )?(make \w+)\s*$", "\n".join(re.findall(r"```(?:bash|console)?\n(.*?)```", section, re.S)), re.M)
    assert commands == ["make run", "make test"]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert "set -euo pipefail" in ci
    assert re.search(r"^make test$", ci, re.M)


def test_troubleshooting_default_ports_match_the_code() -> None:
    from v4runtime.cli import build_parser
    from v4runtime.config import Settings

    parser = build_parser()
    up = parser._subparsers._group_actions[0].choices["up"]  # the `up` sub-parser
    defaults = {a.dest: a.default for a in up._actions}
    settings = Settings()
    assert defaults["monitor_port"] == settings.monitor.port and defaults["scan_port"] == settings.scanner.port
    page = " ".join((REPO / "docs" / "operations" / "troubleshooting.md").read_text().split())
    expected = (
        f"(site {defaults['site_port']}, monitoring API {defaults['monitor_port']}, "
        f"scan service {defaults['scan_port']})"
    )
    assert expected in page, f"troubleshooting.md should say {expected!r}"


def test_ci_fails_when_pytest_collects_nothing(tmp_path: Path) -> None:
    """pytest's exit status 5 (no tests collected) must fail `make test` and so `.ci/run`."""
    import os
    import subprocess
    import sys

    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    (venv / ".installed-dev").touch()  # newer than pyproject.toml: no install
    (tmp_path / "empty").mkdir()
    env = dict(os.environ, VENV=str(venv), TEST_PATHS=str(tmp_path / "empty"), PYTEST_ARGS="-p no:cacheprovider")
    result = subprocess.run([str(REPO / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "no tests ran" in result.stdout, result.stdout + result.stderr
