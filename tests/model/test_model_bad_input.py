"""Bad input to ``train``, ``model-card`` and ``calibrate``: typed one-line errors, nothing lost, no hang."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from v4runtime.cli import main  # noqa: E402
from v4runtime.datasets import build_corpus  # noqa: E402
from v4runtime.errors import ConfigError, ModelError  # noqa: E402
from v4runtime.model import training  # noqa: E402
from v4runtime.model.card import card_path, read_card  # noqa: E402
from v4runtime.model.data import CACHE, load_corpus, read_manifest  # noqa: E402
from v4runtime.model.registry import resolve_model  # noqa: E402


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 8-image corpus (4 clean, 4 stego)."""
    out = tmp_path_factory.mktemp("small corpus ü")
    build_corpus(out, clean=4, stego=4, seed=21, size=48)
    return out


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


# ------------------------------------------------------------------------------ manifests
@pytest.mark.parametrize(("line", "message"), [
    ("5", "not a JSON object"),
    ('"path"', "not a JSON object"),
    ("[1, 2]", "not a JSON object"),
    ('{"path": 7, "label": 0}', "'path' must be a file name"),
    ('{"path": "images/clean/c0', "not a JSON object"),
])
def test_malformed_manifest_lines_are_config_errors(tmp_path: Path, line: str, message: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "manifest.jsonl").write_text(line + "\n")
    with pytest.raises(ConfigError, match=f"manifest.jsonl:1: {message}"):
        read_manifest(tmp_path)
    code, err = _cli(["train", "--data", str(tmp_path), "--out", str(tmp_path / "m.onnx")], capsys)
    assert code == 2 and "manifest.jsonl:1" in err


def test_manifest_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "manifest.jsonl").write_bytes(b'{"path": "a.png"}\n\xff\xfe\n')
    with pytest.raises(ConfigError, match="cannot read"):
        read_manifest(tmp_path)


def test_manifest_naming_a_named_pipe(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "a.png")
    (tmp_path / "manifest.jsonl").write_text('{"path": "a.png", "label": 0}\n')
    with pytest.raises(ConfigError, match="a.png is not a regular file"):
        read_manifest(tmp_path)


def test_corrupt_stream_cache_is_rebuilt(small_corpus: Path) -> None:
    first, _ = load_corpus(small_corpus)
    (small_corpus / CACHE).write_bytes(b"PK\x03\x04 truncated")
    again, _ = load_corpus(small_corpus)
    assert not again.from_cache and np.array_equal(again.arrays["format"], first.arrays["format"])
    assert load_corpus(small_corpus)[0].from_cache  # and written back


# ------------------------------------------------------------------------------------ train
@pytest.mark.parametrize(("option", "value"), [
    ("--seed", "-1"), ("--workers", "0"), ("--workers", "-3"), ("--threads", "0"), ("--lr", "-1"),
    ("--lr", "nan"), ("--clean-weight", "0"), ("--stream-dropout", "1"), ("--label-smoothing", "-0.1"),
    ("--val-fraction", "0"), ("--epochs", "0"),
])
def test_bad_training_options_fail_before_the_corpus_is_read(tmp_path: Path, option: str, value: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _cli(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m.onnx"),
                      option, value], capsys)
    assert code == 2 and err.startswith(f"error: {option} must") and err.count("\n") == 1


def test_bad_output_paths_fail_before_the_corpus_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir.onnx").mkdir()
    data = str(tmp_path / "nowhere")
    for argv in (["--out", str(tmp_path / "afile" / "m.onnx")], ["--out", str(tmp_path / "adir.onnx")],
                 ["--out", str(tmp_path / "m.onnx"), "--report", str(tmp_path / "afile" / "r.json")]):
        code, err = _cli(["train", "--data", data, *argv], capsys)
        assert code == 2 and ("is not a folder" in err or "is a folder" in err)


def test_failed_export_keeps_the_earlier_model(small_corpus: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from v4runtime.model.architecture import V4Detector

    def quick_train(streams, config, log=None):  # noqa: ANN001, ANN202 - stands in for minutes of training
        return training.TrainResult(model=V4Detector(), threshold=0.5)

    monkeypatch.setattr(training, "train", quick_train)
    out = tmp_path / "model.onnx"
    config = training.TrainConfig(epochs=1)
    training.run(small_corpus, out, config, log=lambda _: None)
    before = out.read_bytes(), card_path(out).read_bytes()
    assert resolve_model(out).sha256

    def broken_parity(model, path):  # noqa: ANN001, ANN202
        raise ModelError("ONNX export differs from PyTorch")

    monkeypatch.setattr("v4runtime.model.export.parity", broken_parity)
    with pytest.raises(ModelError):
        training.run(small_corpus, out, config, log=lambda _: None)
    assert (out.read_bytes(), card_path(out).read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.card.json", "model.onnx"]  # no partial files


# -------------------------------------------------------------------------------- model-card
@pytest.fixture()
def model_copy(exported: tuple[object, Path], tmp_path: Path) -> Path:
    """A copy of the session's exported model and its card."""
    _, path = exported
    out = tmp_path / "m.onnx"
    out.write_bytes(path.read_bytes())
    card_path(out).write_bytes(card_path(path).read_bytes())
    return out


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["binary", "folder", "pipe"])
def test_unreadable_card_is_a_model_error(model_copy: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    card = card_path(model_copy)
    card.unlink()
    if kind == "binary":
        card.write_bytes(b"\xff\xfe\x00{")
    elif kind == "folder":
        card.mkdir()
    else:
        os.mkfifo(card)  # no writer: a plain read would block forever
    with pytest.raises(ModelError, match="cannot read model card"):
        read_card(card)
    code, err = _cli(["model-card", "--model", str(model_copy)], capsys)
    assert code == 2 and err.startswith("error: cannot read model card")


@pytest.mark.timeout(30)
def test_reproduction_report_that_is_a_pipe(model_copy: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    os.mkfifo(tmp_path / "report.json")
    code, err = _cli(["model-card", "--model", str(model_copy), "--reproduction", str(tmp_path / "report.json")],
                     capsys)
    assert code == 2 and "cannot read the training report" in err


def test_model_card_outputs_under_a_file(model_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("x")
    for option, target in (("--markdown", "afile/card.md"), ("--docs", "afile"), ("--markdown", "")):
        code, err = _cli(["model-card", "--model", str(model_copy), option, str(tmp_path / target)], capsys)
        assert code == 2 and err.startswith("error: cannot write")


# ---------------------------------------------------------------------------------- calibrate
@pytest.mark.parametrize(("option", "value"), [("--floor", "5"), ("--floor", "nan"), ("--floor", "-0.1"),
                                               ("--workers", "0")])
def test_bad_calibration_options_never_reach_the_card(model_copy: Path, small_corpus: Path, option: str, value: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    card = card_path(model_copy).read_bytes()
    code, err = _cli(["calibrate", "--data", str(small_corpus), "--model", str(model_copy), option, value, "--write"],
                     capsys)
    assert code == 2 and err.startswith(f"error: {option} must")
    assert card_path(model_copy).read_bytes() == card
    assert json.loads(card)["threshold"] == read_card(card_path(model_copy)).threshold
