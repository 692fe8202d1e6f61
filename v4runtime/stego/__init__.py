"""Embedding and extraction for the five stego methods the detector must catch.

``embed(cover, payload, method, fmt)`` returns the stego file's bytes; ``extract(data, method)``
recovers the payload. A frame is ``[AI42] payload [NUL]``; bit-plane methods write it LSB-first
or MSB-first from the top-left sample, row by row.
"""

from v4runtime.stego.api import (
    BIT_METHODS,
    METHOD_FORMATS,
    capacity,
    check_method,
    cover_samples,
    embed,
    extract,
    valid_combinations,
)
from v4runtime.stego.framing import BIT_ORDERS, MARKER

__all__ = [
    "BIT_METHODS",
    "BIT_ORDERS",
    "MARKER",
    "METHOD_FORMATS",
    "capacity",
    "check_method",
    "cover_samples",
    "embed",
    "extract",
    "valid_combinations",
]
