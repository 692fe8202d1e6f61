"""Bad input to ``quantize`` and ``verify-quant``: refused at once with a one-line error, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from v4runtime.cli import main


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run the CLI; return the exit status and stderr, and check nothing was measured or printed."""
    code = main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.err.count("\n") <= 1
    assert captured.out == ""  # refused before any work
    return code, captured.err


def test_quantize_output_that_is_a_folder_or_under_a_file(robust: Path, images: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("keep")
    (tmp_path / "adir.onnx").mkdir()
    (tmp_path / "cardir.onnx").touch()
    (tmp_path / "cardir.card.json").mkdir()
    for out, message in (("afile/q.onnx", "is not a folder"), ("adir.onnx", "is a folder"),
                         ("cardir.onnx", "cardir.card.json is a folder")):
        code, err = _cli(["quantize", "--model", str(robust), "--calibration", str(images),
                          "--out", str(tmp_path / out)], capsys)
        assert code == 2 and message in err
    assert (tmp_path / "afile").read_text() == "keep" and list((tmp_path / "adir.onnx").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir.onnx", "afile", "cardir.card.json", "cardir.onnx"]


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--repeats", "0", "--repeats must be at least 1"),
    ("--repeats", "-1", "--repeats must be at least 1"),
    ("--max-images", "0", "--max-images must be at least 2"),
    ("--threshold", "2", "--threshold must be within [0, 1]"),
    ("--threshold", "nan", "--threshold must be within [0, 1]"),
    ("--worst", "-1", "--worst must be >= 0"),
    ("--min-agreement", "nan", "--min-agreement must be a number"),
    ("--max-dfpr-pp", "nan", "--max-dfpr-pp must be a number"),
])
def test_verify_quant_refuses_meaningless_settings(robust: Path, robust_int8: Path, images: Path, option: str,
                                                   value: str, message: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _cli(["verify-quant", "--fp32", str(robust), "--int8", str(robust_int8), "--data", str(images),
                      option, value], capsys)
    assert code == 2 and err.startswith(f"error: {message}, got ")


def test_verify_quant_report_paths_are_checked_before_measuring(robust: Path, robust_int8: Path, images: Path,
                                                                tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("keep")
    base = ["verify-quant", "--fp32", str(robust), "--int8", str(robust_int8), "--data", str(images)]
    for option, target, message in (("--report", "afile/r.json", "is not a folder"),
                                    ("--markdown", "afile/r.md", "is not a folder"),
                                    ("--report", ".", "is a folder")):
        code, err = _cli([*base, option, str(tmp_path / target)], capsys)
        assert code == 2 and err.startswith(f"error: {option}") and message in err
