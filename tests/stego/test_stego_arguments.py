"""Wrong argument types in the public stego API: a typed EmbedError naming the argument, never a Python error."""

from __future__ import annotations

import inspect
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from v4runtime import stego
from v4runtime.errors import EmbedError, ExtractError
from v4runtime.stego import capacity, check_method, cover_samples, embed, extract
from v4runtime.stego.exif_block import MAKE
from v4runtime.stego.framing import unframe

COVER = Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8))


def _jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG")
    return buf.getvalue()


THUMB = _jpeg(COVER.resize((8, 6)))
STEGO = embed(COVER, b"hi", "exif", "JPEG")

#: Every public function with a valid call (every argument given), which each case spoils once.
CALLS: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
    "check_method": (check_method, {"method": "raw", "fmt": "PNG"}),
    "cover_samples": (cover_samples, {"cover": COVER, "method": "lsb.rgb"}),
    "capacity": (capacity, {"cover": COVER, "method": "exif", "fmt": "JPEG", "marker": True, "terminator": True,
                            "exif_tags": {MAKE: "Canon"}, "thumbnail": THUMB}),
    "embed": (embed, {
        "cover": COVER, "payload": b"hi", "method": "exif", "fmt": "JPEG", "bit_order": "lsb-first", "marker": True,
        "terminator": True, "exif_tags": {MAKE: "Canon"}, "thumbnail": THUMB, "lossless": False, "quality": 90,
    }),
    "extract": (extract, {"image": STEGO, "method": "exif", "bit_order": "lsb-first", "marker": True, "length": 2}),
}

_TEXT = (None, 1, True, b"PNG", ["raw"])
_FLAG = (None, "yes", 1, 0.0)
#: Wrong values by argument, with the words the message must use for the type it needs.
WRONG: dict[str, tuple[tuple[object, ...], str]] = {
    "cover": ((None, 1, 3.0, ["c.png"], object()), "a PIL image, bytes, bytearray, memoryview, str or os.PathLike"),
    "image": ((None, 1, COVER, [STEGO]), "bytes, bytearray, memoryview, str or os.PathLike"),
    "payload": ((None, 1, 1.5, ["hi"]), "bytes, bytearray, memoryview or str"),
    "method": (_TEXT, "a str"),
    "fmt": (_TEXT, "a str"),
    "bit_order": (_TEXT, "a str"),
    "marker": (_FLAG, "a bool"),
    "terminator": (_FLAG, "a bool"),
    "lossless": (_FLAG, "a bool"),
    "quality": (("90", 1.5, True, None), "an int 0 to 100"),
    "length": ((1.5, True, "2", b"2", -1, np.int64(-3)), "an int >= 0 or None"),
    "thumbnail": (("x", 1, [THUMB]), "bytes, bytearray, memoryview or None"),
    "exif_tags": (([(MAKE, "Canon")], "Make=Canon", 1), "a mapping of tag numbers to values, or None"),
}
REASONS = {"cover": "bad_cover", "payload": "bad_payload", "method": "bad_method", "fmt": "bad_format",
           "bit_order": "bad_bit_order"}


def _given(value: object) -> str:
    return "None" if value is None else type(value).__name__


CASES = [
    pytest.param(function, name, value, id=f"{function}-{name}-{_given(value)}")
    for function, (_, arguments) in CALLS.items()
    for name in arguments
    for value in WRONG[name][0]
]


def test_cases_cover_every_public_function_and_argument() -> None:
    public = {name for name in stego.__all__ if inspect.isfunction(getattr(stego, name))}
    assert public == set(CALLS) | {"valid_combinations"}
    assert not inspect.signature(stego.valid_combinations).parameters
    for function, arguments in CALLS.values():
        assert list(inspect.signature(function).parameters) == list(arguments)


@pytest.mark.parametrize(("function", "arguments"), list(CALLS.values()), ids=list(CALLS))
def test_the_valid_calls_work(function: Callable[..., Any], arguments: dict[str, Any]) -> None:
    function(**arguments)


@pytest.mark.parametrize(("function", "name", "value"), CASES)
def test_wrong_type_is_a_typed_error_naming_the_argument(function: str, name: str, value: object) -> None:
    call, arguments = CALLS[function]
    with pytest.raises(EmbedError) as info:
        call(**{**arguments, name: value})
    expected = WRONG[name][1]
    assert str(info.value).startswith(f"{name} must be {expected}, not {_given(value)}"), str(info.value)
    assert info.value.reason == REASONS.get(name, "bad_argument")


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ({"Make": "Canon"}, "an exif_tags key must be a tag number (an int, 0 to 65535), not str 'Make'"),
        ({70_000: "x"}, "an exif_tags key must be a tag number (an int, 0 to 65535), not int 70000"),
        ({-1: "x"}, "an exif_tags key must be a tag number"),
        ({True: "x"}, "an exif_tags key must be a tag number"),
        ({MAKE: 1.5}, "exif_tags[0x010f] must be a str, bytes, an int 0 to 2**32-1 or a pair of such ints, not float 1.5"),
        ({MAKE: None}, "exif_tags[0x010f] must be"),
        ({MAKE: True}, "exif_tags[0x010f] must be"),
        ({MAKE: -1}, "exif_tags[0x010f] must be"),
        ({MAKE: 2**32}, "exif_tags[0x010f] must be"),
        ({MAKE: bytearray(b"x")}, "exif_tags[0x010f] must be"),
        ({MAKE: (72,)}, "exif_tags[0x010f] must be"),
        ({MAKE: (72, 1.0)}, "exif_tags[0x010f] must be"),
        ({MAKE: [72, 1]}, "exif_tags[0x010f] must be"),
    ],
)
def test_exif_tags_content_is_checked(tags: dict[object, object], message: str) -> None:
    """Wrong keys and values raised TypeError or struct.error from the EXIF writer."""
    with pytest.raises(EmbedError) as info:
        embed(COVER, b"x", "exif", "JPEG", exif_tags=tags)
    assert str(info.value).startswith(message), str(info.value)
    assert info.value.reason == "bad_argument"


@pytest.mark.parametrize(("method", "fmt", "lossless"), [("raw", "JPEG", False), ("exif", "WEBP", False),
                                                        ("raw", "PNG", False), ("exif", "WEBP", True)])
@pytest.mark.parametrize("quality", [-1, 101, 500, np.int64(1000)])
def test_quality_out_of_range_is_refused(method: str, fmt: str, lossless: bool, quality: int) -> None:
    """JPEG clamped it silently (500 became 100, -1 Pillow's default 75); lossy WebP raised a bare ValueError."""
    with pytest.raises(EmbedError) as info:
        embed(COVER, b"x", method, fmt, lossless=lossless, quality=quality)
    assert str(info.value) == f"quality must be an int 0 to 100, not {type(quality).__name__} {int(quality)}"
    assert info.value.reason == "bad_argument"


@pytest.mark.parametrize(("method", "fmt", "lossless"), [("raw", "JPEG", False), ("exif", "WEBP", False)])
def test_quality_range_ends_are_accepted_and_used(method: str, fmt: str, lossless: bool) -> None:
    worst, best = (embed(COVER, b"x", method, fmt, lossless=lossless, quality=q) for q in (0, 100))
    assert len(worst) < len(best)
    assert extract(worst, method) == extract(best, method) == b"x"


@pytest.mark.parametrize(
    ("tag", "name"),
    [
        (0x8769, "ExifIFDPointer"),
        (0x8825, "GPSInfoIFDPointer"),
        (0xA005, "InteroperabilityIFDPointer"),
        (0x0201, "JPEGInterchangeFormat"),
        (0x0202, "JPEGInterchangeFormatLength"),
        (0x0111, "StripOffsets"),
        (0x0117, "StripByteCounts"),
        (0x0144, "TileOffsets"),
        (0x0145, "TileByteCounts"),
        (0x014A, "SubIFDs"),
    ],
)
@pytest.mark.parametrize("value", [8, "x"])
def test_layout_tags_in_exif_tags_are_refused(tag: int, name: str, value: object) -> None:
    """The writer sets these offsets and sizes: a caller's value was overwritten (0x8769) or pointed anywhere."""
    with pytest.raises(EmbedError) as info:
        embed(COVER, b"x", "exif", "JPEG", exif_tags={MAKE: "Canon", tag: value}, thumbnail=THUMB)
    assert str(info.value).startswith(f"exif_tags[{tag:#06x}] ({name}) cannot be given: it holds an offset or size")
    assert info.value.reason == "bad_argument"


@pytest.mark.parametrize("method", ["alpha", "palette", "lsb.rgb", "exif", "raw"])
@pytest.mark.parametrize("length", [-1, -(2**70), np.int64(-1)])
def test_negative_length_is_an_argument_error_not_a_short_carrier(method: str, length: int) -> None:
    """extract(length=-1) was ExtractError 'short' ("fewer than the -1 asked"), blaming a good image."""
    fmt = "PNG" if method in ("alpha", "lsb.rgb", "raw") else "GIF" if method == "palette" else "JPEG"
    data = embed(COVER.convert("RGBA") if method == "alpha" else COVER, b"hi", method, fmt)
    with pytest.raises(EmbedError) as info:
        extract(data, method, length=length)
    assert not isinstance(info.value, ExtractError)
    assert str(info.value) == f"length must be an int >= 0 or None, not {type(length).__name__} {int(length)}"
    assert info.value.reason == "bad_argument"
    with pytest.raises(EmbedError, match="^length must be an int >= 0 or None, not int -1$"):
        unframe(b"AI42hi\x00", length=-1)  # the framing helper refuses it too, instead of slicing data[:-1]
    assert extract(data, method, length=2) == b"hi"


def test_types_are_checked_before_any_work() -> None:
    """capacity used to ignore the cover of byte methods, and embed read the cover before the payload."""
    with pytest.raises(EmbedError, match="^cover must be") as cover:
        capacity(123, "raw", "PNG")  # type: ignore[arg-type]
    assert cover.value.reason == "bad_cover"
    with pytest.raises(EmbedError, match="^payload must be") as payload:
        embed(b"not an image", None, "raw", "PNG")  # type: ignore[arg-type]
    assert payload.value.reason == "bad_payload"


def test_other_valid_types_are_still_accepted(tmp_path: Path) -> None:
    """numpy scalars, paths and bytes-like objects are the types the hints name (or their registered kin)."""
    path = tmp_path / "cover.png"
    COVER.save(path)
    data = embed(path, memoryview(b"hi\x00yo"), "lsb.rgb", "PNG", marker=np.True_, terminator=np.False_)
    assert extract(str(path.with_name("cover.png")), "lsb.rgb", marker=False, length=0) == b""
    assert extract(bytearray(data), "lsb.rgb", marker=np.True_, length=np.int64(5)) == b"hi\x00yo"
    tags = {MAKE: b"raw", 0x0110: "Model", 0x0112: np.uint16(1), 0x011A: (72, 1), 0x9999: 70_000}
    jpeg = embed(str(path), "é", "exif", "JPEG", exif_tags=tags, thumbnail=bytearray(THUMB), quality=np.int64(80))
    assert extract(jpeg, "exif", length=None) == "é".encode()
    assert capacity(bytearray(path.read_bytes()), "alpha", "PNG", marker=False, terminator=np.bool_(True)) == 95
