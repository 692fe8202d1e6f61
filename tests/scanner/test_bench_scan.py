"""`v4runtime bench scan` runs end to end on real files and writes its report (no timed assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from v4runtime.cli import main


def test_bench_scan_writes_report(tmp_path: Path, toy_model_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "scan", "--images", "20", "--workers", "2", "--model", str(toy_model_path),
                 "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    report = json.loads((tmp_path / "bench-scan.json").read_text())
    assert report["images"] == 20 and report["model"] == "toy"
    assert set(report["latency_ms"]) == {"read_ms", "streams_ms", "inference_ms", "total_ms", "cpu_ms"}
    assert report["cpu_bound_images_per_s_per_core"] > 0
    assert set(report["throughput_images_per_s"]) == {"1 worker", "1 worker, batches of 8", "2 workers (threads)",
                                                      "2 workers (processes)"}
    assert all(v > 0 for v in report["throughput_images_per_s"].values())
    skipping = report["inference_skipping"]  # the toy model's meta branch is skipped on files without a tail
    assert skipping["every_encoder_ms"]["p50"] > 0 and skipping["skipping_ms"]["p50"] > 0
    assert skipping["files_with_an_empty_stream"] == 20  # generated files: no transparency, EXIF or tail
    md = (tmp_path / "bench-scan.md").read_text()
    assert md in out and "plain decode (Pillow, baseline)" in md
    assert "every stream encoder run (baseline)" in md and "at least one such stream" in md


def test_bench_scan_refuses_tiny_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "scan", "--images", "5", "--no-write"]) == 2
    assert "--images" in capsys.readouterr().err


def test_bench_scan_rows_name_the_workers_it_could_use(
    tmp_path: Path, toy_model_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On one CPU, "2 workers" would be a label for a run the scanner capped at one: say what ran."""
    import v4runtime.scanner as scanner_mod

    monkeypatch.setattr(scanner_mod, "available_cpus", lambda: 1)
    code = main(["bench", "scan", "--images", "20", "--workers", "2", "--model", str(toy_model_path),
                 "--out-dir", str(tmp_path)])
    capsys.readouterr()
    assert code == 0
    report = json.loads((tmp_path / "bench-scan.json").read_text())
    assert (report["workers_requested"], report["workers_used"]) == (2, 1)
    assert set(report["throughput_images_per_s"]) == {"1 worker", "1 worker, batches of 8", "1 worker (threads)",
                                                      "1 worker (processes)"}
    assert "2 workers were asked for, but this process may run on 1 CPU(s) only" in (tmp_path / "bench-scan.md").read_text()
