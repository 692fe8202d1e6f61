"""Bad input to ``evaluate`` and ``calibrate``: a corrupt corpus, unusable settings, an unwritable report folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from v4runtime.cli import main
from v4runtime.evaluation import EvaluationError, corpus_meta, evaluate, load_corpus, write_report


@pytest.fixture()
def corpus_copy(corpus: Path, tmp_path: Path) -> Path:
    """A private copy of the session corpus, free to damage."""
    return Path(shutil.copytree(corpus, tmp_path / "corpus"))


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    return code, err


def test_manifest_that_is_not_utf8(corpus_copy: Path, toy_model_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with (corpus_copy / "manifest.jsonl").open("ab") as fh:
        fh.write(b"\xff\xfe\n")
    with pytest.raises(EvaluationError, match="cannot read .*manifest.jsonl"):
        load_corpus(corpus_copy)
    for command in ("evaluate", "calibrate"):
        code, err = _cli([command, "--data", str(corpus_copy), "--model", str(toy_model_path)], capsys)
        assert code == 2 and "cannot read" in err


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "\udcff"])
def test_corpus_summary_that_is_not_a_json_object(corpus_copy: Path, toy_model_path: Path, tmp_path: Path,
                                                  text: str, capsys: pytest.CaptureFixture[str]) -> None:
    (corpus_copy / "corpus.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(EvaluationError, match="corpus.json"):
        corpus_meta(corpus_copy)
    code, err = _cli(["evaluate", "--data", str(corpus_copy), "--model", str(toy_model_path), "--no-baselines",
                      "--no-ablation", "--out-dir", str(tmp_path / "reports")], capsys)
    assert code == 2 and "corpus.json" in err


def test_report_folder_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("keep")
    with pytest.raises(EvaluationError, match="cannot write the reports"):
        write_report({"model": {}}, tmp_path / "afile" / "reports", "x")
    assert (tmp_path / "afile").read_text() == "keep"


def test_reports_are_written_all_or_none(corpus: Path, toy_model_path: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A report file that cannot be written leaves none of the others (before: the JSON without its Markdown)."""
    reports = tmp_path / "reports"
    (reports / "x-comparison.md").mkdir(parents=True)  # in the way of the last file written
    code, err = _cli(["evaluate", "--data", str(corpus), "--model", str(toy_model_path), "--name", "x",
                      "--no-ablation", "--out-dir", str(reports)], capsys)
    assert code == 2 and "cannot write the reports" in err and "x-comparison.md" in err
    assert [p.name for p in reports.iterdir()] == ["x-comparison.md"]  # no x.json, no x.md, no temporary file


@pytest.mark.parametrize(("options", "message"), [({"workers": 0}, "--workers"), ({"workers": -2}, "--workers"),
                                                  ({"ablation_stride": 0}, "--ablation-stride")])
def test_evaluate_refuses_unusable_settings(corpus: Path, options: dict, message: str) -> None:
    with pytest.raises(EvaluationError, match=f"{message} must be at least 1"):
        evaluate(None, load_corpus(corpus), **options)


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_evaluate_refuses_a_limit_below_one(corpus: Path, toy_model_path: Path, tmp_path: Path, limit: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """``--limit -1`` used to drop the last file silently (a negative slice)."""
    code, err = _cli(["evaluate", "--data", str(corpus), "--model", str(toy_model_path), "--limit", limit,
                      "--out-dir", str(tmp_path / "reports")], capsys)
    assert code == 2 and f"--limit must be at least 1, got {limit}" in err
    assert not (tmp_path / "reports").exists()


def test_evaluate_checks_the_report_folder_before_scanning(corpus: Path, toy_model_path: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("keep")
    code, err = _cli(["evaluate", "--data", str(corpus), "--model", str(toy_model_path),
                      "--out-dir", str(tmp_path / "afile" / "reports")], capsys)
    assert code == 2 and "cannot make the report folder" in err  # the message of the early check, not the late one
