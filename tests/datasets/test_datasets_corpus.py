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
