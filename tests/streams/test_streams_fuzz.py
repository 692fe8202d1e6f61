"""Mutation fuzzing of extract_streams over every format: Streams or ImageError, nothing else.

Seeds are real files of every format (with tails, EXIF thumbnails, animation, progressive
scans); each round applies random mutations (bit flips, byte overwrites with boundary values,
truncation, insertion, duplicated slices, large integers over header fields). The run is
bounded by time (``V4_FUZZ_SECONDS``, default 20) and prints how many inputs it tried and the
longest time one took.
"""

from __future__ import annotations

import io
import os
import struct
import time

import numpy as np
import pytest
from PIL import Image
from v4_stream_images import ALL_FORMATS, encode, image_bytes, natural

from v4runtime.errors import ImageError
from v4runtime.stego import embed
from v4runtime.stego.exif_block import MAKE, build_exif
from v4runtime.streams import STREAM_SPECS, extract_streams

FUZZ_SECONDS = float(os.environ.get("V4_FUZZ_SECONDS", "20"))


def _seeds() -> list[bytes]:
    seeds = [image_bytes(fmt, mode, size=(24, 20)) for fmt, mode in ALL_FORMATS]
    thumb = encode(Image.fromarray(natural(16, 12)), "JPEG")
    seeds.append(encode(Image.fromarray(natural(24, 20)), "JPEG", exif=b"Exif\x00\x00" + build_exif({MAKE: "C"}, {}, thumb)))
    seeds.append(encode(Image.fromarray(natural(24, 20)), "JPEG", progressive=True) + b"tail;")
    frames = [Image.fromarray(natural(16, 16, seed=i)).quantize(8) for i in range(3)]
    seeds.append(encode(frames[0], "GIF", save_all=True, append_images=frames[1:]))
    buf = io.BytesIO()
    frames[0].convert("RGB").save(buf, "WEBP", save_all=True, append_images=[f.convert("RGB") for f in frames[1:]])
    seeds.append(buf.getvalue())
    cover = Image.fromarray(natural(24, 20))
    seeds.append(embed(cover, b"hi", "exif", "PNG"))
    seeds.append(embed(cover, b"hi", "raw", "WEBP"))
    return seeds


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        if not buf:
            break
        op = int(rng.integers(7))
        pos = int(rng.integers(len(buf)))
        if op == 0:
            buf[pos] ^= 1 << int(rng.integers(8))
        elif op == 1:
            buf[pos] = int(rng.choice([0x00, 0xFF, 0x7F, 0x80, 0x3B, 0xD9, 0x01]))
        elif op == 2:
            del buf[int(rng.integers(1, len(buf) + 1)) :]
        elif op == 3:
            buf[pos:pos] = rng.bytes(int(rng.integers(1, 16)))
        elif op == 4:
            end = min(len(buf), pos + int(rng.integers(1, 64)))
            buf[pos:pos] = buf[pos:end]
        elif op == 5 and pos + 4 <= len(buf):
            value = int(rng.choice([0, 1, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 65500]))
            buf[pos : pos + 4] = struct.pack(rng.choice([">I", "<I"]), value)
        elif op == 6 and pos + 2 <= len(buf):
            buf[pos : pos + 2] = struct.pack(">H", int(rng.integers(0, 65536)))
    return bytes(buf)


@pytest.mark.timeout(FUZZ_SECONDS * 6 + 60)
def test_fuzz_every_format(capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(1234)
    seeds = _seeds()
    tried = errors = ok = 0
    slowest = 0.0
    failures: list[str] = []
    deadline = time.perf_counter() + FUZZ_SECONDS
    while time.perf_counter() < deadline:
        seed_index = tried % len(seeds)
        data = _mutate(seeds[seed_index], rng)
        start = time.perf_counter()
        try:
            streams = extract_streams(data)
        except ImageError as exc:
            errors += 1
            assert exc.reason and str(exc)
        except Exception as exc:  # noqa: BLE001 - the point of the test: nothing else may escape
            failures.append(f"seed {seed_index}: {type(exc).__name__}: {exc}")
        else:
            ok += 1
            for spec in STREAM_SPECS:
                assert getattr(streams, spec.name).shape == spec.shape
        slowest = max(slowest, time.perf_counter() - start)
        tried += 1
    with capsys.disabled():
        print(
            f"\nfuzz: {tried} inputs from {len(seeds)} seeds in {FUZZ_SECONDS:.0f} s: {ok} parsed, "
            f"{errors} ImageError, {len(failures)} other; longest input {slowest * 1000:.1f} ms"
        )
    assert not failures, failures[:5]
    assert tried > 100
