"""Type checks for the arguments of the public stego API.

A wrong type is an :class:`~v4runtime.errors.EmbedError` that names the argument, the type it
needs and what it got, instead of whatever Python error the wrong value would hit deep inside
(``AttributeError`` on ``fmt=None``, ``TypeError`` on ``length=1.5``). Its ``reason`` is the one
bad values of that argument already had (``bad_cover``, ``bad_payload``, ``bad_method``,
``bad_format``, ``bad_bit_order``); ``bad_argument`` for the options. Options with a range
(``quality``, ``length``, EXIF tag numbers and values) are checked against it the same way, and
``exif_tags`` may not set the tags the EXIF writer lays out itself.
"""

from __future__ import annotations

import numbers
import os
import reprlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from PIL import Image

from v4runtime.errors import EmbedError
from v4runtime.stego.exif_block import LAYOUT_TAGS

_BYTES_LIKE = (bytes, bytearray, memoryview)
_PATH_LIKE = (str, os.PathLike)
_REASONS = {
    "cover": "bad_cover",
    "payload": "bad_payload",
    "method": "bad_method",
    "fmt": "bad_format",
    "bit_order": "bad_bit_order",
}
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxlong = _SHORT.maxother = 24
#: EXIF values are written as 16-bit tags with up to 32-bit unsigned numbers.
_MAX_TAG, _MAX_LONG = 0xFFFF, 0xFFFF_FFFF
#: JPEG and lossy WebP quality: Pillow's JPEG scale runs 0 (worst) to 95 (best) with 100 allowed,
#: libwebp's 0 to 100. Outside it JPEG silently clamps (500 is 100, -1 Pillow's default 75) and
#: WebP fails with a bare ValueError.
_MIN_QUALITY, _MAX_QUALITY = 0, 100


def _is_bool(value: object) -> bool:
    return isinstance(value, bool | np.bool_)


def _is_int(value: object) -> bool:
    # bool is an int subclass, but quality=True or length=False is a mistake, not a number
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_quality(value: object) -> bool:
    return _is_int(value) and _MIN_QUALITY <= value <= _MAX_QUALITY


def _is_length(value: object) -> bool:
    # A negative length used to reach unframe and fail as a "short" carrier, blaming the image.
    return _is_int(value) and value >= 0


def _or_none(accepts: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda value: value is None or accepts(value)


def _of(*types: type) -> Callable[[object], bool]:
    return lambda value: isinstance(value, types)


#: Each argument name of the API: what it accepts, and how the message spells that.
_RULES: dict[str, tuple[Callable[[object], bool], str]] = {
    "cover": (_of(Image.Image, *_BYTES_LIKE, *_PATH_LIKE), "a PIL image, bytes, bytearray, memoryview, str or os.PathLike"),
    "image": (_of(*_BYTES_LIKE, *_PATH_LIKE), "bytes, bytearray, memoryview, str or os.PathLike"),
    "payload": (_of(*_BYTES_LIKE, str), "bytes, bytearray, memoryview or str"),
    "method": (_of(str), "a str"),
    "fmt": (_of(str), "a str"),
    "bit_order": (_of(str), "a str"),
    "marker": (_is_bool, "a bool"),
    "terminator": (_is_bool, "a bool"),
    "lossless": (_is_bool, "a bool"),
    "quality": (_is_quality, f"an int {_MIN_QUALITY} to {_MAX_QUALITY}"),
    "length": (_or_none(_is_length), "an int >= 0 or None"),
    "thumbnail": (_or_none(_of(*_BYTES_LIKE)), "bytes, bytearray, memoryview or None"),
    "exif_tags": (_or_none(_of(Mapping)), "a mapping of tag numbers to values, or None"),
}


def _given(value: object) -> str:
    """What the caller passed: its type, with a short repr for plain values."""
    if value is None:
        return "None"
    if isinstance(value, str | bytes | int | float):
        return f"{type(value).__name__} {_SHORT.repr(value)}"
    if isinstance(value, numbers.Integral):  # numpy integers: the number, not its np.int64(...) repr
        return f"{type(value).__name__} {int(value)}"
    return type(value).__name__


def _wrong(name: str, expected: str, value: object) -> EmbedError:
    return EmbedError(f"{name} must be {expected}, not {_given(value)}", reason=_REASONS.get(name, "bad_argument"))


def _is_long(value: object) -> bool:
    return _is_int(value) and 0 <= value <= _MAX_LONG


def _is_exif_value(value: object) -> bool:
    if isinstance(value, tuple):  # a RATIONAL: numerator, denominator
        return len(value) == 2 and all(_is_long(v) for v in value)
    return isinstance(value, str | bytes) or _is_long(value)


def _check_exif_tags(tags: Mapping[Any, Any]) -> None:
    for tag, value in tags.items():
        if not (_is_int(tag) and 0 <= tag <= _MAX_TAG):
            raise _wrong("an exif_tags key", "a tag number (an int, 0 to 65535)", tag)
        if tag in LAYOUT_TAGS:
            raise EmbedError(
                f"exif_tags[{tag:#06x}] ({LAYOUT_TAGS[tag]}) cannot be given: it holds an offset or size within "
                "the EXIF block, which the writer lays out itself (a value here would be overwritten or point at "
                "the wrong bytes)",
                reason="bad_argument",
            )
        if not _is_exif_value(value):
            expected = "a str, bytes, an int 0 to 2**32-1 or a pair of such ints"
            raise _wrong(f"exif_tags[{tag:#06x}]", expected, value)


def check_arguments(**arguments: Any) -> None:
    """Raise :class:`EmbedError` for the first argument (by keyword name) of a wrong type.

    Raises:
        EmbedError: ``reason`` ``bad_cover``, ``bad_payload``, ``bad_method``, ``bad_format`` or
            ``bad_bit_order`` for those arguments, ``bad_argument`` for the others.
    """
    for name, value in arguments.items():
        accepts, expected = _RULES[name]
        if not accepts(value):
            raise _wrong(name, expected, value)
    if arguments.get("exif_tags") is not None:
        _check_exif_tags(arguments["exif_tags"])
