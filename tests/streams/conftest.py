"""Fixtures for the streams tests.

Importing the helper module here also puts this directory on ``sys.path`` before the test
modules are imported (pytest-markdown-docs imports them on its own to read their docstrings).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from v4_stream_images import image_bytes


@pytest.fixture
def make_image() -> Callable[..., bytes]:
    """Return :func:`v4_stream_images.image_bytes` (an encoded, natural-looking test image)."""
    return image_bytes
