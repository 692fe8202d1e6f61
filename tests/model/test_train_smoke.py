"""End to end on real files: a tiny corpus from the datasets API, one epoch, export, parity, card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from v4runtime.cli import main  # noqa: E402
from v4runtime.errors import ConfigError  # noqa: E402
from v4runtime.model.data import CACHE, load_corpus, read_manifest  # noqa: E402
from v4runtime.model.registry import resolve_model  # noqa: E402
from v4runtime.model.report import render_training  # noqa: E402
from v4runtime.quantization.host import host_features  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The full recipe at toy scale: build a 40-image corpus, train one epoch, export, card."""
    corpus = tmp_path_factory.mktemp("corpus")
    out = tmp_path_factory.mktemp("model") / "tiny.onnx"
    report = out.with_name("training.json")
    assert main(["train", "--data", str(corpus), "--out", str(out), "--epochs", "1", "--batch-size", "16",
                 "--build-clean", "20", "--build-stego", "20", "--build-seed", "7", "--report", str(report)]) == 0
    return corpus, out, report


@pytest.fixture(scope="module")
def corpus(trained: tuple[Path, Path, Path]) -> Path:
    return trained[0]


def test_train_one_epoch_exports_a_verified_model(trained: tuple[Path, Path, Path]) -> None:
    corpus, out, report = trained
    resolved = resolve_model(out)  # sha256 and signature verified
    summary = json.loads(report.read_text())
    assert summary["sha256"] == resolved.sha256
    assert summary["parity_max_abs_diff"] <= 1e-4
    assert summary["corpus_images"] == 40 and summary["corpus_stego"] == 20
    assert summary["seconds"]["corpus_build"] > 0 and summary["corpus"]["seed"] == 7
    assert resolved.card.training_manifest_sha256 == json.loads((corpus / "corpus.json").read_text())["manifest_sha256"]
    assert resolved.card.training["config"]["epochs"] == 1
    assert [e["epoch"] for e in summary["history"]] == [1] and "val_fpr" in summary["history"][0]
    assert (corpus / CACHE).is_file() and summary["streams_from_cache"] is False
    # a seed reproduces weights on one kind of CPU only: the record names it, and so does its page
    assert summary["cpu_model"] == host_features().cpu_model and summary["cpu_flags"] == list(host_features().flags)
    assert summary["cpu_id"] == host_features().cpu_id
    cpu = f"{summary['cpu_model']} {summary['cpu_id']}" if summary["cpu_id"] else summary["cpu_model"]
    assert f"({cpu};" in render_training(summary)


def test_train_prints_progress_and_validation(tmp_path: Path, corpus: Path, capsys) -> None:
    out = tmp_path / "again.onnx"
    assert main(["train", "--data", str(corpus), "--out", str(out), "--epochs", "1", "--batch-size", "16"]) == 0
    printed = capsys.readouterr()
    assert "epoch 1: loss" in printed.out and "val FPR" in printed.out and "TPR" in printed.out
    assert "parity max |diff|" in printed.out and "epoch 1/1 [" in printed.err
    assert resolve_model(out).card.training["streams_from_cache"] is True


def test_stream_cache_is_reused_and_invalidated(corpus: Path) -> None:
    load_corpus(corpus)  # builds the cache unless the training test already did
    first, sha = load_corpus(corpus)
    assert first.from_cache
    samples = read_manifest(corpus)
    assert len(first) == len(samples) and first.labels.sum() == 20
    assert first.arrays["pixel"].dtype == np.uint8  # stored as exact 1/255 codes
    # A changed manifest (one record dropped) must not be served from the old cache.
    manifest = corpus / "manifest.jsonl"
    original = manifest.read_text()
    try:
        manifest.write_text("".join(original.splitlines(keepends=True)[1:]))
        second, sha2 = load_corpus(corpus)
        assert sha2 != sha and len(second) == len(first) - 1 and not second.from_cache
    finally:
        manifest.write_text(original)


def test_bad_corpora_raise_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="manifest.jsonl not found"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.jsonl").write_text('{"path": "x.png", "label": 1, "method": "dct"}\n')
    with pytest.raises(ConfigError, match="unknown method 'dct'"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.jsonl").write_text('{"path": "x.png", "label": 0, "method": null}\n')
    with pytest.raises(ConfigError, match="x.png not found"):
        read_manifest(tmp_path)
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m.onnx")]) == 2


@pytest.mark.parametrize("field", [{"payload_size": "big"}, {"cover_lsb_z": "lots"}, {"cover_lsb_z": [1]}])
def test_non_numeric_manifest_fields_are_a_config_error(tmp_path: Path, field: dict) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    row = {"path": "a.png", "label": 1, "method": "lsb.rgb", **field}
    (tmp_path / "manifest.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(ConfigError, match=r"manifest.jsonl:1: payload size and cover_lsb_z must be numbers"):
        read_manifest(tmp_path)


def test_unsignalled_payloads_are_flagged_from_the_manifest(tmp_path: Path) -> None:
    rows = [
        {"path": "a.png", "label": 1, "method": "lsb.rgb", "marker": False, "payload_kind": "random",
         "cover_lsb_z": 12.5},
        {"path": "b.png", "label": 1, "method": "lsb.rgb", "marker": True, "payload_kind": "random"},
        {"path": "c.png", "label": 1, "method": "raw", "marker": False, "payload_kind": "random"},
        {"path": "d.png", "label": 1, "method": "palette", "marker": False, "payload_kind": "text"},
        {"path": "e.png", "label": 0, "method": None},
    ]
    for row in rows:
        (tmp_path / row["path"]).write_bytes(b"x")
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    samples = read_manifest(tmp_path)
    assert [s.unsignalled for s in samples] == [True, False, False, False, False]
    assert [s.cover_lsb_z for s in samples] == [12.5, None, None, None, None]
