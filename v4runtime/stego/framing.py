"""Payload framing and bit packing shared by every embedding method.

A frame is: an optional ``AI42`` marker, the payload, and an optional NUL terminator. Bit-plane
methods write the frame's bits in order; ``lsb-first`` writes bit 0 of each byte first,
``msb-first`` writes bit 7 first.
"""

from __future__ import annotations

import numpy as np

from v4runtime.errors import EmbedError, ExtractError
from v4runtime.stego.arguments import check_arguments

MARKER = b"AI42"
TERMINATOR = b"\x00"
#: Bit orders, as accepted by ``embed``/``extract``.
BIT_ORDERS: tuple[str, ...] = ("lsb-first", "msb-first")
_NUMPY_ORDER = {"lsb-first": "little", "msb-first": "big"}


def check_bit_order(bit_order: str) -> str:
    """Return numpy's name for ``bit_order`` or raise :class:`EmbedError`."""
    try:
        return _NUMPY_ORDER[bit_order]
    except KeyError:
        raise EmbedError(
            f"unknown bit order {bit_order!r}; use one of {', '.join(BIT_ORDERS)}", reason="bad_bit_order"
        ) from None


def as_payload(payload: bytes | bytearray | str) -> bytes:
    """Return the payload as bytes (text is UTF-8 encoded)."""
    if isinstance(payload, str):
        return payload.encode("utf-8")
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload)
    raise EmbedError(f"payload must be bytes or str, not {type(payload).__name__}", reason="bad_payload")


def frame(payload: bytes, *, marker: bool = True, terminator: bool = True) -> bytes:
    """Wrap ``payload`` as ``[AI42] payload [NUL]``."""
    if not payload:
        raise EmbedError("payload is empty", reason="empty_payload")
    return (MARKER if marker else b"") + payload + (TERMINATOR if terminator else b"")


def unframe(data: bytes, *, marker: bool = True, length: int | None = None) -> bytes:
    """Recover the payload from carrier bytes that start with a frame.

    Args:
        data: Bytes read from the carrier, starting at the frame.
        marker: The frame starts with ``AI42``.
        length: Payload length when known (binary payloads may contain NUL); otherwise the
            payload ends at the first NUL terminator.

    Raises:
        ExtractError: Marker missing, no terminator, or fewer bytes than ``length``.
        EmbedError: ``length`` is not None nor an int >= 0 (``reason`` ``bad_argument``).
    """
    check_arguments(length=length)
    if marker:
        if not data.startswith(MARKER):
            raise ExtractError("no AI42 marker at the start of the carrier", reason="no_marker")
        data = data[len(MARKER) :]
    if length is not None:
        if len(data) < length:
            raise ExtractError(f"carrier holds {len(data)} bytes, fewer than the {length} asked", reason="short")
        return data[:length]
    end = data.find(TERMINATOR)
    if end < 0:
        raise ExtractError("no NUL terminator found in the carrier", reason="no_terminator")
    return data[:end]


def to_bits(data: bytes, bit_order: str) -> np.ndarray:
    """Return the bits of ``data`` (uint8 0/1) in the embedding order."""
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder=check_bit_order(bit_order))


def from_bits(bits: np.ndarray, bit_order: str) -> bytes:
    """Pack LSBs (a 1-D uint8 array, any length) into bytes; a trailing partial byte is dropped."""
    usable = (len(bits) // 8) * 8
    return np.packbits(bits[:usable] & 1, bitorder=check_bit_order(bit_order)).tobytes()


def write_lsbs(samples: np.ndarray, data: bytes, bit_order: str, *, what: str) -> np.ndarray:
    """Return a copy of 1-D ``samples`` (uint8) whose first LSBs carry ``data``.

    Raises:
        EmbedError: ``data`` needs more bits than there are samples.
    """
    bits = to_bits(data, bit_order)
    if len(bits) > len(samples):
        raise EmbedError(
            f"payload does not fit: the frame needs {len(bits)} bits ({len(data)} bytes) but the cover has "
            f"{len(samples)} {what} samples (capacity {len(samples) // 8} bytes including framing)",
            reason="does_not_fit",
        )
    out = samples.copy()
    head = out[: len(bits)]
    np.bitwise_or(head & 0xFE, bits, out=head)
    return out
