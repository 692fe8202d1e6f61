"""Root conftest: registers the docs harness plugin for the whole run.

The plugin must see ``docs/`` (outside ``tests/``), which a conftest's own hooks would not, so it is
registered as a global plugin here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "docs"))

from docharness.plugin import DocsPlugin  # noqa: E402

PLUGIN_NAME = "v4-docharness"


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin(PLUGIN_NAME):
        config.pluginmanager.register(DocsPlugin(config), PLUGIN_NAME)
