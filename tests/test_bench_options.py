"""`v4runtime bench NAME` with careless options: a one-line typed error (exit 2) before anything is
measured, no traceback, no empty figures, no server left behind, and the previous report kept."""

from __future__ import annotations

import copy
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from v4runtime.bench import monitor, scan, streams
from v4runtime.cli import main
from v4runtime.errors import MonitoringError

GENERATED = Path(__file__).resolve().parents[1] / "docs" / "generated"


def _nothing_measured(*_args: Any, **_kwargs: Any) -> Any:
    raise AssertionError("the benchmark started although its options are invalid")


def _one_line_error(capsys: pytest.CaptureFixture[str], *words: str) -> None:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and all(w in err for w in words), err


@pytest.mark.parametrize("argv, option", [
    (["--images", "0"], "--images"),
    (["--images", "-5"], "--images"),
    (["--workers", "0"], "--workers"),
    (["--workers", "-3"], "--workers"),
    (["--workers", "100000"], "--workers"),
    (["--seed", "-1"], "--seed"),
])
def test_bench_scan_rejects_bad_options_before_generating_files(
    argv: list[str], option: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(scan, "make_images", _nothing_measured)
    assert main(["bench", "scan", "--images", "20", *argv, "--no-write"]) == 2
    _one_line_error(capsys, option)


@pytest.mark.parametrize("under", ["", "sub"])
def test_bench_scan_rejects_an_out_dir_that_is_a_file(
    under: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(scan, "make_images", _nothing_measured)
    blocker = tmp_path / "report"
    blocker.write_text("keep me")
    assert main(["bench", "scan", "--images", "20", "--out-dir", str(blocker / under)]) == 2
    _one_line_error(capsys, "--out-dir", "not a folder")
    assert blocker.read_text() == "keep me"


def test_bench_scan_failed_write_keeps_the_previous_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    report = json.loads((GENERATED / "eval" / "bench-scan.json").read_text())
    monkeypatch.setattr(scan, "make_images", lambda *a: [])
    monkeypatch.setattr(scan, "measure", lambda *a: report)
    (tmp_path / "bench-scan.json").write_text("old json")
    (tmp_path / "bench-scan.md").mkdir()  # the second file cannot be written
    assert main(["bench", "scan", "--images", "20", "--out-dir", str(tmp_path)]) == 2
    _one_line_error(capsys, "bench-scan.md")
    assert (tmp_path / "bench-scan.json").read_text() == "old json"  # not half of a new report
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench-scan.json", "bench-scan.md"]  # no temp files


@pytest.mark.parametrize("argv, option", [
    (["--images", "0"], "--images"),
    (["--images", "-5"], "--images"),
    (["--rounds", "0"], "--rounds"),
    (["--size", "0"], "--size"),
    (["--size", "8"], "--size"),
    (["--seed", "-1"], "--seed"),
])
def test_bench_streams_rejects_bad_options_before_building_files(
    argv: list[str], option: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(streams, "make_files", _nothing_measured)
    assert main(["bench", "streams", "--images", "20", *argv]) == 2
    _one_line_error(capsys, option)


def test_bench_streams_rejects_unwritable_outputs_before_building_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(streams, "make_files", _nothing_measured)
    (tmp_path / "file").write_text("x")
    for argv, words in (
        (["--json", str(tmp_path)], ("--json", "is a folder")),
        (["--markdown", str(tmp_path / "file" / "bench.md")], ("--markdown", "not a folder")),
        (["--json", str(tmp_path / "b"), "--markdown", str(tmp_path / "b")], ("same file",)),
    ):
        assert main(["bench", "streams", *argv]) == 2
        _one_line_error(capsys, *words)


@pytest.mark.parametrize("argv, option", [
    (["--duration", "0"], "--duration"),
    (["--duration", "-1"], "--duration"),
    (["--log-rate", "0"], "--log-rate"),
    (["--read-rate", "-5"], "--read-rate"),
    (["--duration", "0.1", "--read-rate", "5"], "--read-rate"),  # half a request per phase
    (["--log-rate", "1e9"], "--log-rate"),  # billions of request bodies built beforehand
    (["--batch-size", "0"], "--batch-size"),
    (["--stats-events", "-3"], "--stats-events"),
])
def test_bench_monitor_rejects_bad_options_before_starting_a_server(
    argv: list[str], option: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(monitor, "_bench_backend", _nothing_measured)
    assert main(["bench", "monitor", "--backend", "sqlite", "--no-write", *argv]) == 2
    _one_line_error(capsys, option)


def test_bench_monitor_checks_postgresql_before_measuring_sqlite(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(monitor, "_bench_backend", _nothing_measured)
    assert main(["bench", "monitor", "--no-write", "--pg-url", "postgresql://postgres@127.0.0.1:1/x"]) == 2
    _one_line_error(capsys, "PostgreSQL", "--backend sqlite")


def test_bench_monitor_output_dir_and_render_only_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(monitor, "_bench_backend", _nothing_measured)
    (tmp_path / "file").write_text("x")
    assert main(["bench", "monitor", "--backend", "sqlite", "--output-dir", str(tmp_path / "file")]) == 2
    _one_line_error(capsys, "--output-dir", "not a folder")
    assert main(["bench", "monitor", "--render-only", "--output-dir", str(tmp_path)]) == 2
    _one_line_error(capsys, "bench.json")
    (tmp_path / "bench.json").write_text("{not json")
    assert main(["bench", "monitor", "--render-only", "--output-dir", str(tmp_path)]) == 2
    _one_line_error(capsys, "bench.json")
    assert not (tmp_path / "bench.md").exists()


def test_bench_monitor_phase_without_answers_writes_no_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    committed = json.loads((GENERATED / "monitoring" / "bench.json").read_text())
    result = copy.deepcopy(committed["backends"]["sqlite"])
    result["log open-loop"].update(requests=0, errors=120, requests_per_s=0.0, events_per_s=0.0,
                                   p50_ms=None, p95_ms=None, p99_ms=None, max_ms=None)
    monkeypatch.setattr(monitor, "_bench_backend", lambda *a: result)
    for name in ("bench.json", "bench.md", "endpoints.md"):
        (tmp_path / name).write_text(f"old {name}")
    assert main(["bench", "monitor", "--backend", "sqlite", "--output-dir", str(tmp_path)]) == 2
    _one_line_error(capsys, "no successful answer", "120 errors")
    assert all((tmp_path / n).read_text() == f"old {n}" for n in ("bench.json", "bench.md", "endpoints.md"))


def test_bench_monitor_server_that_fails_to_start_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(MonitoringError, match="did not start"):
        monitor._start_server("bogus://nowhere", tmp_path)


def test_bench_monitor_interrupted_server_start_leaves_no_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    real_sleep, interrupted = time.sleep, []

    def interrupt(seconds: float) -> None:
        if not interrupted:  # Ctrl-C, or SIGTERM turned into an exception, while the server starts
            interrupted.append(seconds)
            raise KeyboardInterrupt
        real_sleep(seconds)  # stopping the server may wait

    monkeypatch.setattr(monitor.subprocess, "Popen", popen)
    monkeypatch.setattr(monitor.time, "sleep", interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            monitor._start_server(f"sqlite:///{tmp_path}/bench.db", tmp_path)
        assert len(started) == 1 and started[0].poll() is not None, "the server outlived the benchmark"
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
