"""Repository-root conftest: registers the docs harness plugin for every pytest run.

It lives at the root so that it is loaded whatever the arguments (``pytest docs/page.md`` too),
and registers the plugin globally because the plugin must see ``docs/``, outside ``tests/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tests" / "docs"))

from docharness.plugin import DocsPlugin  # noqa: E402

PLUGIN_NAME = "v4-docharness"


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin(PLUGIN_NAME):
        config.pluginmanager.register(DocsPlugin(config), PLUGIN_NAME)
