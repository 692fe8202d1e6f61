"""How much LSB structure a sequential payload overwrites in its cover (manifest ``cover_lsb_z``).

A bit-plane embedder replaces the LSBs of the cover's first samples with the frame's bits. Where
those LSBs were smooth (close neighbour pairs mostly equal), random bits leave a mark; where the
cover's own LSBs were already noise, random bits replace noise with noise and leave no mark in
the neighbour pairs (other views, such as the weighted-stego estimate, may still see one). The
builder records, per stego item, how many
standard errors below 0.5 the cover's LSB flip ratio lay over the samples the frame overwrote
(:func:`v4runtime.streams.content.lsb_flip_z`): the size of the structure the payload erased.
The evaluation breaks the TPR of unsignalled payloads down by it, and by the same statistic over
the samples after the frame (:func:`remaining_lsb_z`, measured on the stego file, whose samples
there are the cover's): whether the cover is noise-like only where the payload went, or all through.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from v4runtime.errors import V4Error
from v4runtime.files import read_file
from v4runtime.stego import BIT_METHODS, cover_samples
from v4runtime.streams.content import lsb_flip_z


def overwritten_lsb_z(cover: Image.Image, method: str, frame_bytes: int) -> float | None:
    """:func:`~v4runtime.streams.content.lsb_flip_z` of ``cover`` over the first ``8 * frame_bytes``
    samples that ``method`` writes; ``None`` for methods that write no sample plane."""
    if method not in BIT_METHODS:
        return None
    samples, row_length, step = cover_samples(cover, method)
    return lsb_flip_z(samples[: 8 * frame_bytes], row_length, step)


def remaining_lsb_z(path: str | Path, method: str, frame_bytes: int) -> float | None:
    """:func:`~v4runtime.streams.content.lsb_flip_z` of the stego file at ``path`` over the samples
    ``method`` writes after the first ``8 * frame_bytes``; ``None`` where fewer than a row of them
    is left, for methods that write no sample plane, or when the file cannot be read."""
    if method not in BIT_METHODS:
        return None
    try:
        samples, row_length, step = cover_samples(read_file(path), method)
    except V4Error:
        return None
    rest = samples[8 * frame_bytes :]
    if len(rest) <= row_length:
        return None
    return lsb_flip_z(rest, row_length, step)
