"""A reproducible image corpus: clean photos and procedural images, hard negatives, stego images.

``build_corpus(out, clean=N, stego=N, seed=S)`` (or ``v4runtime dataset build``) writes the images
and a JSONL manifest (path, label, method, format, mode, payload size, bit order, sha256, ...).
"""

from v4runtime.datasets.corpus import (
    HARD_NEGATIVES,
    MANIFEST,
    CorpusSummary,
    build_corpus,
    clean_item,
    read_manifest,
    stego_item,
)

__all__ = ["HARD_NEGATIVES", "MANIFEST", "CorpusSummary", "build_corpus", "clean_item", "read_manifest", "stego_item"]
