"""Fixtures of the docs tests: the strict site build, done once per run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from docharness.site import build_site

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class SiteBuild:
    """The outcome of ``mkdocs build --strict`` of the real site."""

    site_dir: Path
    returncode: int
    output: str

    def require_ok(self) -> None:
        """Fail (with mkdocs' output) unless the build succeeded."""
        if self.returncode != 0:
            pytest.fail(f"mkdocs build --strict failed ({self.returncode}):\n{self.output[-6000:]}", pytrace=False)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> SiteBuild:
    site_dir = tmp_path_factory.mktemp("site")
    proc = build_site(REPO / "mkdocs.yml", site_dir, cwd=REPO)
    return SiteBuild(site_dir, proc.returncode, proc.stdout)
