"""Metrics: Wilson intervals against published values, rates, buckets, confusion matrix."""

from __future__ import annotations

import pytest

from v4runtime.evaluation import (
    Sample,
    Verdict,
    cover_z_bucket,
    detection_metrics,
    payload_bucket,
    percentiles,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        # Reference values: Newcombe (1998), Statistics in Medicine 17:857, Table I (Wilson, no correction).
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_reference_values(k: int, n: int, low: float, high: float) -> None:
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=5e-4)
    assert hi == pytest.approx(high, abs=5e-4)


def test_wilson_zero_successes_upper_bound() -> None:
    """0 of n: the upper bound is z^2 / (n + z^2), the bound the 0.1 % FPR target is checked against."""
    z2 = 1.959963984540054**2
    for n in (100, 20_000):
        lo, hi = wilson_interval(0, n)
        assert lo == 0.0
        assert hi == pytest.approx(z2 / (n + z2), rel=1e-12)
    assert wilson_interval(0, 20_000)[1] < 0.001 < wilson_interval(0, 3_000)[1]


def test_wilson_edges() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.7225, abs=5e-4)
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


def test_payload_buckets() -> None:
    assert payload_bucket(16) == "1-63 B"
    assert payload_bucket(64) == "64-255 B"
    assert payload_bucket(4096) == "1024-4096 B"
    assert payload_bucket(None) is None


def test_percentiles() -> None:
    p = percentiles(list(range(1, 101)))
    assert p["p50"] == pytest.approx(50.5) and p["p99"] == pytest.approx(99.01)
    assert percentiles([])["p95"] is None


def test_detection_metrics() -> None:
    samples = [
        Sample("c1", "clean", format="png"),
        Sample("c2", "clean", format="png"),
        Sample("c3", "clean", format="jpeg"),
        Sample("c4", "clean", format="jpeg"),
        Sample("s1", "stego", "lsb.rgb", "png", 32),
        Sample("s2", "stego", "lsb.rgb", "png", 512),
        Sample("s3", "stego", "raw", "jpeg", 100),
        Sample("s4", "stego", "exif", "jpeg", 100),
    ]
    verdicts = [
        Verdict(False), Verdict(True, "raw"), Verdict(False), Verdict(False, error="truncated"),
        Verdict(False), Verdict(True, "lsb.rgb"), Verdict(True, "exif"), Verdict(True, "exif"),
    ]
    m = detection_metrics(samples, verdicts)
    assert m["clean"] == 3 and m["stego"] == 4 and m["errors"] == {"clean": 1}
    assert (m["fpr"]["k"], m["fpr"]["n"]) == (1, 3)
    assert (m["tpr"]["k"], m["tpr"]["n"]) == (3, 4)
    assert m["tpr_by_method"]["lsb.rgb"]["rate"] == 0.5
    assert m["tpr_by_method_min64"]["lsb.rgb"]["rate"] == 1.0  # the 32-byte miss is below the target size
    assert m["tpr_by_payload"]["1-63 B"]["rate"] == 0.0
    assert m["fpr_by_format"]["png"]["rate"] == 0.5
    assert (m["method_accuracy"]["k"], m["method_accuracy"]["n"]) == (2, 3)  # raw detected as exif
    c = m["confusion"]
    assert c["clean"]["raw"] == 1 and c["clean"]["clean"] == 2
    assert c["raw"]["exif"] == 1 and c["lsb.rgb"]["clean"] == 1 and c["exif"]["exif"] == 1
    assert sum(sum(row.values()) for row in c.values()) == 7
    with pytest.raises(ValueError):
        detection_metrics(samples, verdicts[:-1])


def test_tpr_by_payload_signal_separates_unmarked_random_payloads() -> None:
    samples = [
        Sample("s1", "stego", "palette", "gif", 100, signal="marker"),
        Sample("s2", "stego", "palette", "gif", 100, signal="none"),
        Sample("s3", "stego", "palette", "gif", 100, signal="none"),
        Sample("s4", "stego", "palette", "gif", 20, signal="none"),  # below the target size
        Sample("s5", "stego", "raw", "png", 100),  # manifest without the signal: left out of the table
    ]
    verdicts = [Verdict(True, "palette"), Verdict(True, "palette"), Verdict(False), Verdict(False), Verdict(True, "raw")]
    table = detection_metrics(samples, verdicts)["tpr_by_method_signal_min64"]
    assert set(table) == {"palette, marker", "palette, none"}
    assert (table["palette, marker"]["k"], table["palette, marker"]["n"]) == (1, 1)
    assert (table["palette, none"]["k"], table["palette, none"]["n"]) == (1, 2)


def test_manifest_rows_give_the_payload_signal(tmp_path) -> None:
    from v4runtime.evaluation import _manifest_sample

    def signal(**row: object) -> str | None:
        return _manifest_sample(tmp_path, {"path": "a.png", "label": 1, "method": "lsb.rgb", **row}).signal

    assert signal(marker=True, payload_kind="random") == "marker"
    assert signal(marker=False, payload_kind="text") == "text"
    assert signal(marker=False, payload_kind="random") == "none"
    assert signal() is None
    assert _manifest_sample(tmp_path, {"path": "c.png", "label": 0}).signal is None


def test_unsignalled_payloads_broken_down_by_cover() -> None:
    """Only random unmarked payloads >= 64 B in sample LSBs, keyed by method and cover."""
    samples = [
        Sample("a", "stego", "lsb.rgb", "png", 100, signal="none", cover="noise"),
        Sample("b", "stego", "lsb.rgb", "png", 100, signal="none", cover="noise"),
        Sample("c", "stego", "lsb.rgb", "png", 100, signal="none", cover="photo"),
        Sample("d", "stego", "lsb.rgb", "png", 100, signal="marker", cover="photo"),  # has a marker
        Sample("e", "stego", "lsb.rgb", "png", 10, signal="none", cover="photo"),  # below the target size
        Sample("f", "stego", "exif", "jpeg", 100, signal="none", cover="photo"),  # not a sample-LSB method
    ]
    verdicts = [Verdict(False), Verdict(True, "lsb.rgb"), Verdict(True, "lsb.rgb"), Verdict(True, "lsb.rgb"),
                Verdict(False), Verdict(True, "exif")]
    table = detection_metrics(samples, verdicts)["tpr_unsignalled_by_cover_min64"]
    assert {key: (r["k"], r["n"]) for key, r in table.items()} == {"lsb.rgb, noise": (1, 2), "lsb.rgb, photo": (1, 1)}


def test_manifest_rows_give_the_cover(tmp_path) -> None:
    from v4runtime.evaluation import _manifest_sample

    def cover(**row: object) -> str | None:
        return _manifest_sample(tmp_path, {"path": "a.png", "label": 1, "method": "lsb.rgb", **row}).cover

    assert cover(source="procedural:noise") == "noise"
    assert cover(source="skimage:grass.png") == "photo"
    assert cover() is None
    assert _manifest_sample(tmp_path, {"path": "c.png", "label": 0, "source": "procedural:flat"}).cover is None


def test_cover_z_buckets() -> None:
    assert [cover_z_bucket(z) for z in (None, -2.5, 3.99, 4.0, 12.0, 16.0, 250.0)] == [
        None, "z < 4", "z < 4", "4 <= z < 8", "8 <= z < 16", "z >= 16", "z >= 16"]


def test_unsignalled_payloads_broken_down_by_overwritten_structure() -> None:
    """Keyed by method, then by bucket from least to most structure (not by string order)."""
    samples = [
        Sample("a", "stego", "palette", "gif", 100, signal="none", cover="photo", cover_lsb_z=30.0),
        Sample("b", "stego", "palette", "gif", 100, signal="none", cover="noise", cover_lsb_z=0.5),
        Sample("c", "stego", "lsb.rgb", "png", 100, signal="none", cover="photo", cover_lsb_z=5.0),
        Sample("d", "stego", "lsb.rgb", "png", 100, signal="none", cover="noise", cover_lsb_z=-1.0),
        Sample("e", "stego", "lsb.rgb", "png", 100, signal="text", cover="photo", cover_lsb_z=5.0),  # text
        Sample("f", "stego", "lsb.rgb", "png", 100, signal="none", cover="photo"),  # manifest without z
    ]
    verdicts = [Verdict(True, "palette"), Verdict(False), Verdict(True, "lsb.rgb"), Verdict(False),
                Verdict(True, "lsb.rgb"), Verdict(True, "lsb.rgb")]
    table = detection_metrics(samples, verdicts)["tpr_unsignalled_by_cover_z_min64"]
    assert [(key, table[key]["k"], table[key]["n"]) for key in table] == [
        ("lsb.rgb, z < 4", 0, 1), ("lsb.rgb, 4 <= z < 8", 1, 1), ("palette, z < 4", 0, 1), ("palette, z >= 16", 1, 1)]


def test_manifest_rows_give_the_overwritten_structure(tmp_path) -> None:
    from v4runtime.evaluation import _manifest_sample

    row = {"path": "a.png", "label": 1, "method": "alpha", "cover_lsb_z": 7.25}
    assert _manifest_sample(tmp_path, row).cover_lsb_z == 7.25
    assert _manifest_sample(tmp_path, {**row, "cover_lsb_z": None}).cover_lsb_z is None
    assert _manifest_sample(tmp_path, {"path": "a.png", "label": 1, "method": "raw"}).cover_lsb_z is None


def test_gate_summary_averages_the_model_gate_weights() -> None:
    from v4runtime.streams.spec import STREAM_NAMES

    def gates(top: int) -> tuple[float, ...]:
        return tuple(0.9 if i == top else 0.1 / 7 for i in range(len(STREAM_NAMES)))

    samples = [Sample("c", "clean"), Sample("s", "stego", "lsb.rgb", "png", 100), Sample("e", "clean")]
    content, fmt = STREAM_NAMES.index("content"), STREAM_NAMES.index("format")
    verdicts = [Verdict(False, gates=gates(fmt)), Verdict(True, "lsb.rgb", gates=gates(content)),
                Verdict(False, error="unreadable", gates=gates(content))]  # unreadable: left out
    summary = detection_metrics(samples, verdicts)["gates"]
    assert summary["format"]["clean"] == pytest.approx(0.9) and summary["format"]["stego"] == pytest.approx(0.1 / 7)
    assert summary["content"]["largest"] == summary["format"]["largest"] == 0.5
    assert "gates" not in detection_metrics(samples, [Verdict(False), Verdict(True, "lsb.rgb"), Verdict(False)])


def test_unsignalled_payloads_broken_down_by_where_the_cover_was_structured() -> None:
    """Written-over z, then the rest of the stream's z: three kinds, in table order, per method."""
    samples = [
        Sample("a", "stego", "lsb.rgb", "png", 100, signal="none", cover_lsb_z=0.5, remaining_lsb_z=0.2),
        Sample("b", "stego", "lsb.rgb", "png", 100, signal="none", cover_lsb_z=-1.0, remaining_lsb_z=30.0),
        Sample("c", "stego", "lsb.rgb", "png", 100, signal="none", cover_lsb_z=9.0),  # smooth: the rest is moot
        Sample("d", "stego", "lsb.rgb", "png", 100, signal="none", cover_lsb_z=1.0),  # rest unknown: left out
        Sample("e", "stego", "palette", "gif", 100, signal="none", cover_lsb_z=2.0, remaining_lsb_z=3.9),
        Sample("f", "stego", "palette", "gif", 40, signal="none", cover_lsb_z=2.0, remaining_lsb_z=3.9),  # < 64 B
    ]
    verdicts = [Verdict(False), Verdict(True, "lsb.rgb"), Verdict(True, "lsb.rgb"), Verdict(True, "lsb.rgb"),
                Verdict(True, "palette"), Verdict(False)]
    table = detection_metrics(samples, verdicts)["tpr_unsignalled_by_structure_min64"]
    assert [(key, table[key]["k"], table[key]["n"]) for key in table] == [
        ("lsb.rgb, noise-like where written and after", 0, 1),
        ("lsb.rgb, noise-like where written, smooth after", 1, 1),
        ("lsb.rgb, smooth where written", 1, 1),
        ("palette, noise-like where written and after", 1, 1),
    ]


def test_remaining_structure_is_measured_on_the_file_after_the_frame(tmp_path) -> None:
    """A cover that is noise over its first rows and flat below: the payload's region reads as noise,
    the rest as smooth; a cover that is noise all through reads as noise after the frame too."""
    import numpy as np
    from PIL import Image

    from v4runtime import stego
    from v4runtime.datasets.detectability import overwritten_lsb_z, remaining_lsb_z
    from v4runtime.evaluation import _manifest_sample

    rng = np.random.default_rng(7)
    noisy = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    half = noisy.copy()
    half[16:] = 120  # flat below the first 16 rows: every close pair equal
    payload = rng.bytes(200)  # 201 framed bytes: 1,608 samples, the first 5 rows of 384
    for name, pixels, rest_smooth in (("half", half, True), ("noise", noisy, False)):
        cover = Image.fromarray(pixels, "RGB")
        data = stego.embed(cover, payload, "lsb.rgb", "PNG", marker=False)
        (tmp_path / f"{name}.png").write_bytes(data)
        row = {"path": f"{name}.png", "label": 1, "method": "lsb.rgb", "marker": False, "payload_kind": "random",
               "payload_size": len(payload), "cover_lsb_z": overwritten_lsb_z(cover, "lsb.rgb", len(payload) + 1)}
        sample = _manifest_sample(tmp_path, row)
        assert sample.cover_lsb_z is not None and sample.cover_lsb_z < 4
        assert sample.remaining_lsb_z is not None and (sample.remaining_lsb_z >= 4) is rest_smooth
        cover.save(tmp_path / f"{name}-cover.png")  # after the frame, the file's samples are the cover's
        assert remaining_lsb_z(tmp_path / f"{name}.png", "lsb.rgb", len(payload) + 1) == pytest.approx(
            remaining_lsb_z(tmp_path / f"{name}-cover.png", "lsb.rgb", len(payload) + 1))
    assert remaining_lsb_z(tmp_path / "missing.png", "lsb.rgb", 10) is None
    assert remaining_lsb_z(tmp_path / "half.png", "raw", 10) is None
    assert _manifest_sample(tmp_path, {"path": "half.png", "label": 1, "method": "lsb.rgb", "marker": True,
                                       "payload_size": 200, "cover_lsb_z": 1.0}).remaining_lsb_z is None  # signalled
