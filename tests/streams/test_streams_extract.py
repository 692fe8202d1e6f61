"""extract_streams: the spec's shapes, windows, masks, palette indices, alpha, capability."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from v4_stream_images import ALL_FORMATS, encode, image_bytes, natural

from v4runtime.streams import STREAM_SPECS, extract_streams, stack_streams
from v4runtime.streams.content import feature_names
from v4runtime.streams.features import FORMAT_FEATURE_NAMES
from v4runtime.streams.spec import METHODS, VIEW, input_shapes, stack_inputs, zero_inputs


@pytest.mark.parametrize(("fmt", "mode"), ALL_FORMATS)
def test_every_format_gives_the_spec_shapes(fmt: str, mode: str) -> None:
    streams = extract_streams(image_bytes(fmt, mode, size=(300, 200)))
    inputs = streams.as_inputs()
    assert list(inputs) == [s.name for s in STREAM_SPECS]
    for spec in STREAM_SPECS:
        assert inputs[spec.name].shape == spec.shape and inputs[spec.name].dtype == np.float32
        assert np.isfinite(inputs[spec.name]).all()
        assert inputs[spec.name].min() >= 0.0 and inputs[spec.name].max() <= 1.0, spec.name
    assert streams.info.format == fmt
    np.testing.assert_array_equal(streams.capability, streams.format[:5])


def test_reads_paths_too(tmp_path, make_image) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(make_image("PNG"))
    assert extract_streams(path).info.size == (64, 48)


def test_top_left_window_sees_the_embedding_origin() -> None:
    """A 1024x1024 image: the lsb plane's first row holds the first embedded bits."""
    rgb = natural(1024, 1024)
    bits = np.random.default_rng(1).integers(0, 2, 300, dtype=np.uint8)
    flat = rgb.reshape(-1)
    flat[:300] = (flat[:300] & 0xFE) | bits
    streams = extract_streams(encode(Image.fromarray(rgb), "PNG"))
    interleaved = streams.lsb[:3, 0, :100].T.reshape(-1)  # R, G, B of pixels 0..99
    np.testing.assert_array_equal(interleaved, bits)
    assert streams.lsb[3].all()


def test_small_image_has_a_validity_mask_not_silent_padding() -> None:
    streams = extract_streams(image_bytes("PNG", "RGBA", size=(40, 30)))
    for name, mask in (("pixel", streams.pixel[3]), ("lsb", streams.lsb[3]), ("alpha", streams.alpha[2])):
        assert mask[:30, :40].all(), name
        assert not mask[30:, :].any() and not mask[:, 40:].any(), name
    assert "small" in streams.info.flags
    assert streams.format[FORMAT_FEATURE_NAMES.index("window_coverage")] == pytest.approx(40 * 30 / VIEW**2)


@pytest.mark.parametrize("size", [(300, 40), (40, 300), (40, 30)])
@pytest.mark.parametrize("mode", ["RGBA", "P"])
def test_every_plane_is_zero_outside_the_window(size: tuple[int, int], mode: str) -> None:
    """Planes are allocated uninitialised and only their padding is cleared: no stale values leak."""
    noisy = np.random.default_rng(3).integers(1, 256, (VIEW, VIEW, 4), dtype=np.uint8)
    extract_streams(encode(Image.fromarray(noisy, "RGBA"), "PNG"))  # leave non-zero planes to be reused
    width, height = size
    rgba = Image.fromarray(np.full((height, width, 4), 255, np.uint8), "RGBA")
    im = rgba if mode == "RGBA" else rgba.convert("RGB").quantize(4)
    streams = extract_streams(encode(im, "PNG"))
    h, w = min(height, VIEW), min(width, VIEW)
    present = {"pixel": True, "lsb": True, "alpha": mode == "RGBA", "palette_lsb": mode == "P"}
    for name, has_pixels in present.items():
        plane = getattr(streams, name)
        assert not plane[:, h:, :].any() and not plane[:, :h, w:].any(), name
        assert plane[-1, :h, :w].all() == has_pixels, name  # the validity mask


def test_palette_lsb_comes_from_indices_not_luminance() -> None:
    # Palette whose entry i is a grey of value 255 - i: luminance LSB is the opposite of index LSB.
    indices = np.random.default_rng(2).integers(0, 256, (64, 64), dtype=np.uint8)
    im = Image.fromarray(indices, "P")
    im.putpalette([v for i in range(256) for v in (255 - i,) * 3])
    for fmt in ("PNG", "GIF", "BMP"):
        streams = extract_streams(encode(im, fmt))
        np.testing.assert_array_equal(streams.palette_lsb[0, :64, :64], indices & 1)
        assert streams.palette_lsb[1, :64, :64].all() and not streams.palette_lsb[1, 64:].any()
        assert streams.palette[3].sum() == 256
        assert streams.capability[METHODS.index("palette")] == 1.0


@pytest.mark.parametrize(
    ("fmt", "mode", "extra"),
    [("PNG", "RGBA", {}), ("PNG", "LA", {}), ("PNG", "P+tRNS", {}), ("GIF", "P+tRNS", {}), ("WEBP", "RGBA", {})],
)
def test_alpha_means_any_transparency(fmt: str, mode: str, extra: dict) -> None:
    if mode == "P+tRNS":
        im = Image.fromarray(natural(64, 64)).quantize(32)
        data = encode(im, fmt, transparency=3)
    else:
        data = image_bytes(fmt, mode, size=(64, 64))
    streams = extract_streams(data)
    assert streams.info.has_alpha
    assert streams.alpha[2, :64, :64].all()
    assert streams.format[FORMAT_FEATURE_NAMES.index("has_alpha")] == 1.0


def test_no_transparency_means_empty_alpha_stream() -> None:
    streams = extract_streams(image_bytes("JPEG"))
    assert not streams.info.has_alpha and not streams.alpha.any()


@pytest.mark.parametrize(
    ("fmt", "mode", "options", "expected"),
    [
        ("PNG", "RGBA", {}, {"alpha", "lsb.rgb", "exif", "raw"}),
        ("PNG", "P", {}, {"palette", "exif", "raw"}),
        ("PNG", "L", {}, {"exif", "raw"}),
        ("JPEG", "RGB", {}, {"exif", "raw"}),
        ("GIF", "P", {}, {"palette", "raw"}),
        ("BMP", "RGB", {}, {"lsb.rgb", "raw"}),
        ("BMP", "P", {}, {"palette", "raw"}),
        ("WEBP", "RGBA", {"lossless": True}, {"alpha", "lsb.rgb", "exif", "raw"}),
        ("WEBP", "RGB", {"quality": 80}, {"exif", "raw"}),
    ],
)
def test_capability_mask(fmt: str, mode: str, options: dict, expected: set[str]) -> None:
    streams = extract_streams(image_bytes(fmt, mode, **options))
    assert {m for m, v in zip(METHODS, streams.capability, strict=True) if v} == expected


def test_multi_frame_gif_uses_the_first_frame_and_is_flagged() -> None:
    frames = [Image.fromarray(natural(32, 32, seed=i)).quantize(16) for i in range(3)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    streams = extract_streams(data)
    assert streams.info.multi_frame and streams.info.frames == 3 and "multi_frame" in streams.info.flags
    single = extract_streams(encode(frames[0], "GIF"))
    np.testing.assert_array_equal(streams.palette_lsb, single.palette_lsb)


def test_content_features_detect_text_payload_in_both_packings() -> None:
    names = feature_names()
    rgb = natural(128, 128)
    payload = b"AI42" + b"attack at dawn, bring the documents " * 3 + b"\x00"
    for order, key in (("little", "lsb_first"), ("big", "msb_first")):
        bits = np.unpackbits(np.frombuffer(payload, np.uint8), bitorder=order)
        img = rgb.copy().reshape(-1)
        img[: len(bits)] = (img[: len(bits)] & 0xFE) | bits
        streams = extract_streams(encode(Image.fromarray(img.reshape(rgb.shape)), "PNG"))
        c = dict(zip(names, streams.content.tolist(), strict=True))
        assert c[f"lsb.{key}.marker_at_start"] == 1.0
        assert c[f"lsb.{key}.nul_terminated"] == 1.0
        assert c[f"lsb.{key}.printable_head"] == 1.0
        other = "msb_first" if key == "lsb_first" else "lsb_first"
        assert c[f"lsb.{other}.marker_at_start"] == 0.0
    clean = dict(zip(names, extract_streams(encode(Image.fromarray(rgb), "PNG")).content.tolist(), strict=True))
    assert clean["lsb.lsb_first.marker_anywhere"] == 0.0 and clean["lsb.lsb_first.printable_head"] < 0.9


def test_chi_square_and_sample_pairs_rise_with_full_embedding() -> None:
    names = feature_names()
    rng = np.random.default_rng(3)
    rgb = natural(256, 256)
    full = (rgb & 0xFE) | rng.integers(0, 2, rgb.shape, dtype=np.uint8)
    clean = dict(zip(names, extract_streams(encode(Image.fromarray(rgb), "PNG")).content.tolist(), strict=True))
    stego = dict(zip(names, extract_streams(encode(Image.fromarray(full), "PNG")).content.tolist(), strict=True))
    assert stego["chi2.lsb.image"] > clean["chi2.lsb.image"]
    assert stego["spa.lsb"] > clean["spa.lsb"] + 0.2


def test_format_features_are_bounded_and_named() -> None:
    big = encode(Image.new("RGBA", (1100, 1000), (10, 200, 30, 128)), "PNG")
    streams = extract_streams(big + b"x" * 100000)
    assert len(FORMAT_FEATURE_NAMES) == streams.format.shape[0]
    assert streams.format.min() >= 0.0 and streams.format.max() <= 1.0
    f = dict(zip(FORMAT_FEATURE_NAMES, streams.format.tolist(), strict=True))
    assert f["format.png"] == 1.0 and f["has_tail"] == 1.0 and f["size.large"] == 1.0
    assert 0 < f["tail_length_log"] < 1


def test_stacking_into_batches() -> None:
    items = [extract_streams(image_bytes("PNG")), extract_streams(image_bytes("JPEG"))]
    batch = stack_streams(items)
    assert {k: v.shape for k, v in batch.items()} == input_shapes(2)
    assert {k: v.shape for k, v in zero_inputs(3).items()} == input_shapes(3)
    with pytest.raises(ValueError, match="shape"):
        stack_inputs([{**items[0].as_inputs(), "pixel": np.zeros((3, 4))}])
    with pytest.raises(ValueError):
        stack_inputs([])


def test_a_short_printable_run_before_a_nul_is_not_text() -> None:
    """Regression: clean WebP files whose LSBs began with 6 printable bytes and a NUL scored 0.997."""
    from v4runtime.streams.content import BYTE_FEATURES, MIN_TEXT_RUN, bit_stream_features

    index = 2 + BYTE_FEATURES.index("nul_terminated")  # after present and ones ratio: the lsb-first features

    def terminated(head: bytes) -> float:
        samples = np.unpackbits(np.frombuffer(head + bytes(range(200, 256)), np.uint8), bitorder="little")
        return bit_stream_features(samples)[index]

    assert terminated(b"x" * 6 + b"\x00") == 0.0
    assert terminated(b"x" * (MIN_TEXT_RUN - 1) + b"\x00") == 0.0
    assert terminated(b"x" * MIN_TEXT_RUN + b"\x00") == 1.0


def _smooth(width: int = 256, height: int = 64) -> np.ndarray:
    """A smooth RGB picture: horizontal and vertical gradients, so neighbour pairs are mostly close."""
    x = np.linspace(20, 80, width)[None, :]
    y = np.linspace(0, 120, height)[:, None]
    return np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=-1).astype(np.uint8)


def test_head_profile_sees_a_short_random_payload_at_the_start() -> None:
    """A 64-byte random payload without a marker: invisible to whole-image statistics, not to the head."""
    from v4runtime.stego import embed

    names = feature_names()
    cover = Image.fromarray(_smooth())
    payload = np.random.default_rng(11).bytes(64)
    clean = dict(zip(names, extract_streams(encode(cover, "PNG")).content.tolist(), strict=True))
    stego = dict(zip(names, extract_streams(embed(cover, payload, "lsb.rgb", "PNG", marker=False)).content.tolist(),
                     strict=True))
    # The frame (65 bytes, 520 bits) lies inside the first 512-sample window and just past it.
    assert stego["lsb.head512.lsb_flip_ratio"] > 0.4 > 0.1 > clean["lsb.head512.lsb_flip_ratio"]
    assert abs(stego["lsb.next2048.lsb_flip_ratio"] - clean["lsb.next2048.lsb_flip_ratio"]) < 0.02
    assert stego["lsb.head512.close_pairs"] > 0.5  # the evidence rests on many close pairs
    # Whole-image statistics barely move: this is what the head profile is for.
    assert abs(stego["spa.lsb"] - clean["spa.lsb"]) < 0.02


def test_head_profile_of_palette_indices() -> None:
    from v4runtime.stego import embed

    names = feature_names()
    cover = Image.fromarray(_smooth()).quantize(colors=64, dither=Image.Dither.NONE)
    stego_bytes = embed(cover, np.random.default_rng(12).bytes(256), "palette", "PNG", marker=False)
    clean = dict(zip(names, extract_streams(encode(cover, "PNG")).content.tolist(), strict=True))
    stego = dict(zip(names, extract_streams(stego_bytes).content.tolist(), strict=True))
    assert stego["palette.head2048.lsb_flip_ratio"] > 0.4 > 0.1 > clean["palette.head2048.lsb_flip_ratio"]
    assert stego["palette.next2048.lsb_flip_ratio"] < 0.1  # the payload (259 bytes) ends inside the head
    assert clean["lsb.head512.lsb_flip_ratio"] >= 0.0 and clean["alpha.head512.close_pairs"] == 0.0  # no alpha


def test_head_profile_pairs_stay_on_one_row() -> None:
    """Pairs never join the last pixel of a row with the first of the next (a false edge per row)."""
    from v4runtime.streams.content import HEAD_WINDOWS, PROFILE_PER_STREAM, head_profile

    rows = np.repeat(np.arange(0, 256, 2, dtype=np.uint8)[:, None], 4, axis=1)  # flat rows, a step between rows
    profile = head_profile(rows.reshape(-1), row_length=4, step=1)
    assert len(profile) == PROFILE_PER_STREAM == 4 * len(HEAD_WINDOWS)
    assert profile[0] == 0.0 and profile[1] == 1.0  # every same-row pair is equal: close, never flipped
    assert head_profile(None, 4, 1) == [0.0] * PROFILE_PER_STREAM
    assert head_profile(rows.reshape(-1), row_length=1, step=1) == [0.0] * PROFILE_PER_STREAM


def _pair_counts_by_hand(values: list[int], lo: int, hi: int, row_length: int, step: int) -> tuple[int, int, int]:
    """Pairs ``(i, i + step)`` on one row with ``lo <= i < hi``: all, close, and LSB-only, counted one by one."""
    pairs = near = flips = 0
    for i in range(lo, min(hi, len(values) - step)):
        if i % row_length >= row_length - step:
            continue
        pairs += 1
        near += (values[i] ^ values[i + step]) < 2
        flips += (values[i] ^ values[i + step]) == 1
    return pairs, near, flips


def _head_profile_by_hand(stream: np.ndarray, row_length: int, step: int) -> list[float]:
    """The head profile pair by pair, for checking the vectorised one."""
    from v4runtime.streams.content import HEAD_WINDOWS

    values = [int(v) for v in stream[: 2 * HEAD_WINDOWS[-1]]]
    out: list[float] = []
    for n in HEAD_WINDOWS:
        for lo, hi in ((0, n), (n, 2 * n)):
            pairs, near, flips = _pair_counts_by_hand(values, lo, hi, row_length, step)
            out += [flips / near if near else 0.0, near / pairs if pairs else 0.0]
    return out


@pytest.mark.parametrize(("length", "row_length", "step"), [(3000, 3 * 17, 3), (1300, 40, 1), (9, 4, 1), (700, 7, 1)])
def test_head_profile_matches_a_pair_by_pair_count(length: int, row_length: int, step: int) -> None:
    from v4runtime.streams.content import head_profile

    stream = (np.random.default_rng(length).integers(0, 4, length) + 100).astype(np.uint8)
    assert head_profile(stream, row_length, step) == pytest.approx(_head_profile_by_hand(stream, row_length, step))



def _block_counts_by_hand(stream: np.ndarray, row_length: int, step: int) -> list[tuple[int, int, int]]:
    """Pairs, close pairs and LSB-only pairs per block, pair by pair, for checking the vectorised count."""
    from v4runtime.streams.content import BLOCK_SAMPLES, PROFILE_BLOCKS

    values = [int(v) for v in stream[: PROFILE_BLOCKS * BLOCK_SAMPLES]]
    return [
        _pair_counts_by_hand(values, k * BLOCK_SAMPLES, (k + 1) * BLOCK_SAMPLES, row_length, step)
        for k in range(PROFILE_BLOCKS)
    ]


@pytest.mark.parametrize(("length", "row_length", "step"), [(70000, 3 * 257, 3), (9000, 40, 1), (5, 4, 1), (4097, 7, 1)])
def test_block_counts_match_a_pair_by_pair_count(length: int, row_length: int, step: int) -> None:
    from v4runtime.streams.content import block_counts

    stream = (np.random.default_rng(length).integers(0, 4, length) + 100).astype(np.uint8)
    pairs, near, flips = block_counts(stream, row_length, step)
    assert list(zip(pairs.tolist(), near.tolist(), flips.tolist(), strict=True)) == _block_counts_by_hand(
        stream, row_length, step
    )


def test_noise_run_shows_where_a_long_payload_ends() -> None:
    """A 3,000-byte random payload fills the largest head window; the noise run shows where it ends."""
    from v4runtime.stego import embed

    names = feature_names()
    cover = Image.fromarray(_smooth(256, 256)).quantize(colors=64, dither=Image.Dither.NONE)
    stego_bytes = embed(cover, np.random.default_rng(13).bytes(3000), "palette", "PNG", marker=False)
    clean = dict(zip(names, extract_streams(encode(cover, "PNG")).content.tolist(), strict=True))
    stego = dict(zip(names, extract_streams(stego_bytes).content.tolist(), strict=True))
    # Both halves of the largest head window are mostly payload: little contrast there.
    assert stego["palette.head16384.lsb_flip_ratio"] > 0.45 and stego["palette.next16384.lsb_flip_ratio"] > 0.2
    # The frame (24,000+ bits) covers blocks 0-4 of 4,096 indices and a part of block 5.
    assert stego["palette.noise_run_blocks"] == pytest.approx(5 / 16, abs=1 / 16)
    assert stego["palette.after_run_step"] > 0.5 and stego["palette.noise_run_close_pairs"] > 0.5
    assert clean["palette.noise_run_blocks"] == 0.0 and clean["palette.after_run_step"] == 1.0


def test_noise_run_of_noise_and_of_nothing() -> None:
    """LSBs that are noise everywhere make a run of every block and no step; no stream gives zeros."""
    from v4runtime.streams.content import NOISE_RUN_VALUES, noise_run_profile

    noise = (np.random.default_rng(5).integers(0, 2, 256 * 256) + 100).astype(np.uint8)
    run, evidence, after, step = noise_run_profile(noise, 256, 1)
    assert run == 1.0 and evidence == 1.0 and (after, step) == (0.0, 0.0)
    assert noise_run_profile(None, 256, 1) == [0.0] * len(NOISE_RUN_VALUES)
    assert noise_run_profile(noise[:1], 256, 1) == [0.0] * len(NOISE_RUN_VALUES)
