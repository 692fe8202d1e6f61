"""A reproducible image corpus: clean photos and procedural images, hard negatives, stego images.

``build_corpus(out, clean=N, stego=N, seed=S)`` (or ``v4runtime dataset build``) writes the images
and a JSONL manifest (path, label, method, format, mode, payload size, bit order, sha256, ...).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["HARD_NEGATIVES", "MANIFEST", "CorpusSummary", "build_corpus", "clean_item", "read_manifest", "stego_item"]

if TYPE_CHECKING:  # pragma: no cover
    from v4runtime.datasets.corpus import (
        HARD_NEGATIVES,
        MANIFEST,
        CorpusSummary,
        build_corpus,
        clean_item,
        read_manifest,
        stego_item,
    )


def __getattr__(name: str) -> Any:
    # Lazy: the CLI imports v4runtime.datasets.commands and must not pay for NumPy and Pillow.
    if name in __all__:
        return getattr(importlib.import_module("v4runtime.datasets.corpus"), name)
    raise AttributeError(name)
