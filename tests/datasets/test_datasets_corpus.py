"""The corpus builder: determinism, manifest, hard negatives, stego records, CLI."""

from __future__ import annotations

import hashlib
import io
import json

import pytest
from PIL import Image

from v4runtime.cli import main
from v4runtime.datasets import HARD_NEGATIVES, build_corpus, clean_item, read_manifest, stego_item
from v4runtime.datasets.sources import photos
from v4runtime.errors import ConfigError
from v4runtime.stego import extract
from v4runtime.streams import extract_streams
from v4runtime.streams.containers import parse_container
from v4runtime.streams.features import FORMAT_FEATURE_NAMES
from v4runtime.streams.spec import METHODS
from v4runtime.streams.tiff import read_exif

FIELDS = {"path", "label", "method", "format", "mode", "width", "height", "bytes", "payload_size", "payload_kind",
          "bit_order", "marker", "hard_negative", "source", "sha256", "payload_sha256", "cover_lsb_z"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("corpus")
    summary = build_corpus(out, clean=12, stego=15, seed=3, size=96, workers=1)
    return summary, read_manifest(out)


def test_manifest_records_every_file_with_its_sha256(corpus) -> None:
    summary, records = corpus
    assert len(records) == 27 and summary.clean == 12 and summary.stego == 15
    for record in records:
        assert set(record) == FIELDS
        data = (summary.out / record["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == record["sha256"]
        assert Image.open(io.BytesIO(data)).format == record["format"]
    assert [r["path"] for r in records] == sorted(r["path"] for r in records)


def test_same_seed_same_bytes_whatever_the_workers(corpus, tmp_path) -> None:
    summary, records = corpus
    again = build_corpus(tmp_path, clean=12, stego=15, seed=3, size=96, workers=2)
    assert again.manifest.read_bytes() == summary.manifest.read_bytes()
    other = build_corpus(tmp_path / "other", clean=3, stego=0, seed=4, size=96)
    assert {r["sha256"] for r in read_manifest(other.out)}.isdisjoint({r["sha256"] for r in records})


def test_stego_records_cover_every_method_and_carry_their_payload(corpus) -> None:
    summary, records = corpus
    stego = [r for r in records if r["label"] == 1]
    assert {r["method"] for r in stego} == set(METHODS)
    for r in stego:
        assert 1 <= r["payload_size"] <= 4096 and r["payload_kind"] in {"text", "random"}
        assert (r["bit_order"] is None) == (r["method"] in {"exif", "raw"})
        assert (r["cover_lsb_z"] is None) == (r["method"] in {"exif", "raw"})
        data = (summary.out / r["path"]).read_bytes()
        payload = extract(data, r["method"], bit_order=r["bit_order"] or "lsb-first", marker=r["marker"],
                          length=r["payload_size"])
        assert hashlib.sha256(payload).hexdigest() == r["payload_sha256"]
        streams = extract_streams(data)
        assert streams.capability[METHODS.index(r["method"])] == 1.0


def test_payload_sizes_span_16_bytes_to_4_kib() -> None:
    sizes = [stego_item(0, i, 256).record["payload_size"] for i in range(4, 60, 5)]  # index % 5 == 4: raw
    assert min(sizes) >= 16 and max(sizes) <= 4096 and max(sizes) > 4 * min(sizes)


@pytest.mark.parametrize("kind", HARD_NEGATIVES)
def test_hard_negatives(kind: str) -> None:
    item = clean_item(5, 0, 128, hard_negative=kind)
    streams = extract_streams(item.data)
    fmt = dict(zip(FORMAT_FEATURE_NAMES, streams.format.tolist(), strict=True))
    assert item.record["label"] == 0 and item.record["hard_negative"] == kind
    assert streams.info.tail_length == 0  # hard negatives carry nothing after the image
    if kind == "camera_exif":
        comment, has_thumbnail = read_exif(parse_container(item.data).exif)
        assert has_thumbnail and comment is None and streams.info.exif_length > 0
    elif kind == "png_text":
        assert fmt["text_chunks"] > 0
    elif kind == "natural_alpha":
        assert streams.info.has_alpha or streams.info.format == "WEBP"
    elif kind == "odd_palette":
        assert streams.info.palette_size > 0
    elif kind == "resaved_jpeg":
        assert streams.info.format == "JPEG"


def test_clean_sources_are_bundled_photos() -> None:
    names = {p.name for p in photos()}
    assert "skimage:astronaut.png" in names and len(names) >= 10


def test_bad_arguments(tmp_path) -> None:
    with pytest.raises(ConfigError):
        build_corpus(tmp_path, clean=-1, stego=0)
    with pytest.raises(ConfigError):
        build_corpus(tmp_path, clean=1, stego=0, workers=0)
    with pytest.raises(ConfigError):
        clean_item(0, 0, hard_negative="nonsense")


def test_cli_dataset_build(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["dataset", "build", "--out", str(tmp_path), "--clean", "2", "--stego", "2", "--seed", "1",
                 "--size", "64", "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "wrote 4 images (2 clean, 2 stego)" in out
    summary = json.loads((tmp_path / "corpus.json").read_text())
    assert summary["seed"] == 1 and summary["clean"] == 2
    assert summary["workers"] == 1 and summary["seconds"] >= 0
    assert len(read_manifest(tmp_path / "manifest.jsonl")) == 4
    assert main(["dataset", "build", "--out", str(tmp_path), "--clean", "1", "--stego", "0", "--workers", "0"]) == 2


def test_progress_bar_draws_on_request(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    build_corpus(tmp_path, clean=1, stego=0, seed=0, size=48, progress=True)
    assert "1/1 images" in capsys.readouterr().err
    build_corpus(tmp_path, clean=1, stego=0, seed=0, size=48, progress=False)
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("options", "message"), [
    ({"clean": 1, "stego": 0, "seed": -1}, "--seed must be >= 0"),
    ({"clean": 0, "stego": 0}, "nothing to build"),
    ({"clean": 1, "stego": 0, "size": 100_000}, "--size must be between 32 and 4096"),
])
def test_bad_numbers_are_refused_before_anything_is_written(tmp_path, options, message) -> None:
    with pytest.raises(ConfigError, match=message):
        build_corpus(tmp_path / "out", **{"size": 48, **options})
    assert not (tmp_path / "out").exists()


def test_output_that_is_a_file_or_under_a_file(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("keep me")
    for out in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        code = main(["dataset", "build", "--out", str(out), "--clean", "1", "--stego", "0", "--size", "48",
                     "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: ") and "is not a folder" in err and "Traceback" not in err
    assert (tmp_path / "afile").read_text() == "keep me"


def test_non_empty_folder_that_is_not_a_corpus_is_left_alone(tmp_path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "holiday.jpg").write_bytes(b"mine")
    with pytest.raises(ConfigError, match="not empty and is not a corpus"):
        build_corpus(tmp_path, clean=1, stego=0, size=48)
    assert [p.name for p in tmp_path.rglob("*")] == ["images", "holiday.jpg"]


def test_paths_with_spaces_and_unicode(tmp_path) -> None:
    out = tmp_path / "my corpus" / "ünïcødé"
    summary = build_corpus(out, clean=2, stego=1, seed=2, size=48)
    assert [r["path"] for r in read_manifest(out)] == sorted(p.relative_to(out).as_posix()
                                                             for p in (out / "images").rglob("*.*"))
    assert summary.out == out


def test_interrupted_build_keeps_the_earlier_corpus(tmp_path) -> None:
    first = build_corpus(tmp_path, clean=3, stego=2, seed=1, size=48)
    before = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    calls: list[dict[str, object]] = []

    def interrupt(record: dict[str, object]) -> None:  # Ctrl-C after the third image
        calls.append(record)
        if len(calls) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_corpus(tmp_path, clean=6, stego=4, seed=9, size=48, on_record=interrupt)
    after = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # same files, same bytes; no staging folder left behind
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert first.manifest.read_bytes() == before[first.manifest.relative_to(tmp_path)]


def test_interrupted_first_build_leaves_no_manifest(tmp_path) -> None:
    def interrupt(record: dict[str, object]) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_corpus(tmp_path / "new", clean=3, stego=1, seed=1, size=48, on_record=interrupt)
    assert not (tmp_path / "new" / "manifest.jsonl").exists()
    assert list((tmp_path / "new").iterdir()) == []


def test_rebuild_replaces_the_corpus_without_stale_images(tmp_path) -> None:
    build_corpus(tmp_path, clean=5, stego=3, seed=1, size=48)
    build_corpus(tmp_path, clean=2, stego=1, seed=1, size=48)
    records = read_manifest(tmp_path)
    on_disk = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "images").rglob("*.*"))
    assert len(records) == 3 and [r["path"] for r in records] == on_disk
    assert json.loads((tmp_path / "corpus.json").read_text())["clean"] == 2


@pytest.mark.parametrize(("line", "message"), [
    ('{"path": "images/clean/c0', "not a JSON object"),
    ("5", "not a JSON object"),
    ('"path"', "not a JSON object"),
])
def test_read_manifest_reports_the_bad_line(tmp_path, line: str, message: str) -> None:
    (tmp_path / "manifest.jsonl").write_text('{"path": "a.png", "label": 0}\n' + line + "\n")
    with pytest.raises(ConfigError, match=f"manifest.jsonl:2: {message}"):
        read_manifest(tmp_path)
    with pytest.raises(ConfigError, match="not found"):
        read_manifest(tmp_path / "nowhere")
    (tmp_path / "manifest.jsonl").write_bytes(b"\xff\xfe\n")
    with pytest.raises(ConfigError, match="cannot read"):
        read_manifest(tmp_path)
