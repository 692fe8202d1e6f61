"""`v4runtime bench scan` runs end to end on real files and writes its report (no timed assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from v4runtime.cli import main
from v4runtime.errors import ConfigError


def test_bench_scan_writes_report(tmp_path: Path, toy_model_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The report, and its CPU's row added to the record of CPUs beside another CPU's row, kept."""
    from v4runtime.bench import hosts

    (tmp_path / hosts.RECORD_JSON).write_text(hosts.dump_record([_foreign_row()]))
    code = main(["bench", "scan", "--images", "20", "--workers", "2", "--model", str(toy_model_path),
                 "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "holds 2 CPU(s)" in out
    report = json.loads((tmp_path / "bench-scan.json").read_text())
    assert report["images"] == 20 and report["model"] == "toy"
    assert set(report["latency_ms"]) == {"read_ms", "streams_ms", "inference_ms", "total_ms", "cpu_ms"}
    rounds_p95 = report["latency_rounds_p95_ms"]  # the table is the round with the median p95
    assert len(rounds_p95) == 3 and sorted(rounds_p95)[1] == report["latency_ms"]["total_ms"]["p95"]
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
    assert f"End-to-end p95 in the 3 rounds: {', '.join(f'{v:.2f}' for v in rounds_p95)} ms (" in md
    rounds = report["throughput_rounds"]
    assert len(rounds["1 worker"]) == len(rounds["1 worker, batches of 8"]) == 3
    ratios = ", ".join(f"{b / a:.2f}" for a, b in zip(rounds["1 worker"], rounds["1 worker, batches of 8"], strict=True))
    assert f"Batches of 8 against one file per call, 1 worker: {ratios}x in the 3 rounds (" in md
    targets = (tmp_path / "bench-scan-targets.md").read_text()  # the targets alone, for the deployment pages
    assert targets.startswith("Targets of `v4runtime bench scan`") and "p95 <= 5 ms" in targets
    rows = hosts.read_record(tmp_path / hosts.RECORD_JSON)
    assert rows[0] == _foreign_row()  # the other CPU's row is untouched
    assert rows[1] == hosts.row_from_report(report)
    assert rows[1]["p95_ms"] == report["latency_ms"]["total_ms"]["p95"]
    assert rows[1]["p95_rounds_ms"] == rounds_p95 and rows[1]["runs"] == 1
    assert rows[1]["throughput_images_per_s"] == report["throughput_images_per_s"]["2 workers (processes)"]
    record_md = (tmp_path / hosts.RECORD_MARKDOWN).read_text()
    assert record_md == hosts.render_record(rows) and "Example CPU family 1 model 2 stepping 3, 2 CPUs" in record_md


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


def _foreign_row(**changes: object) -> dict[str, object]:
    """A row as another CPU's run would have left it."""
    from v4runtime.bench.hosts import ROW_FIELDS

    row = dict.fromkeys(ROW_FIELDS)
    row.update(recorded="2026-01-01", cpu="Example CPU family 1 model 2 stepping 3", cpu_id_known=True,
               vector="AVX2", cpus=2, model="toy", model_sha256="ab" * 32, images=500, decode_p50_ms=1.0,
               p50_ms=3.0, p95_ms=4.0, p99_ms=4.5, workers=2, throughput_images_per_s=450.0,
               load_average_1min=[0.1, 0.2], target_p95_ms=5.0, target_images_per_s=400.0)
    row.update(changes)
    return row


def test_bench_scan_refuses_a_damaged_record_before_measuring(
    tmp_path: Path, toy_model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Overwriting a record it cannot read would lose every other CPU's row: refuse, touch nothing."""
    from v4runtime.bench import hosts

    damaged = tmp_path / hosts.RECORD_JSON
    damaged.write_text('{"rows": [{"cpu": "x"}]}')
    code = main(["bench", "scan", "--images", "20", "--model", str(toy_model_path), "--out-dir", str(tmp_path)])
    assert code == 2
    assert "is not a bench scan host record" in capsys.readouterr().err
    assert damaged.read_text() == '{"rows": [{"cpu": "x"}]}'
    assert not (tmp_path / "bench-scan.json").exists()
    damaged.write_text("not json")
    with pytest.raises(ConfigError, match="move it away"):
        hosts.read_record(damaged)


def test_a_newer_run_replaces_only_its_own_cpu_and_model() -> None:
    from v4runtime.bench.hosts import updated

    old = _foreign_row()
    newer = _foreign_row(recorded="2026-02-01", p95_ms=6.0)
    other_model = _foreign_row(recorded="2026-02-01", model_sha256="cd" * 32)
    unknown_generation = _foreign_row(cpu="Example CPU", cpu_id_known=False)
    rows = updated(updated(updated([old], unknown_generation), newer), other_model)
    assert rows == [unknown_generation, {**newer, "runs": 2, "p95_met_runs": 1}, other_model]  # runs counted on


def test_record_verdicts_against_the_targets() -> None:
    from v4runtime.bench.hosts import render_record

    md = render_record([
        _foreign_row(),
        _foreign_row(cpu="Slow CPU", cpu_id_known=False, p95_ms=10.2, throughput_images_per_s=226.0),
        _foreign_row(cpu="Edge CPU", p95_ms=5.0, throughput_images_per_s=None),
    ])
    lines = md.splitlines()
    assert "p95 <= 5 ms" in lines[0] and ">= 400 images/s" in lines[0]
    assert lines[2].endswith("| 4.00 | 4.50 | met | 1 of 1 | 450 (2) | met |")
    assert "Slow CPU (generation not recorded), 2 CPUs" in lines[3]
    assert lines[3].endswith("| 10.20 | 4.50 | **not met** | 0 of 1 | 226 (2) | **not met** |")
    assert lines[4].endswith("| 5.00 | 4.50 | met | 1 of 1 | not measured | not measured |")  # at the target is met
    assert lines[-1].startswith("The p95 target holds on 2 of the 3 CPUs recorded, in each CPU's newest run.")
    assert render_record([]) == "No `bench scan` run has been recorded yet.\n"


def test_the_record_counts_every_run_of_a_cpu_and_shows_its_rounds() -> None:
    """A CPU near the target: the newest run decides the verdict, the count shows how often it held."""
    from v4runtime.bench.hosts import dump_record, render_record, updated

    legacy = _foreign_row(p95_ms=4.9)  # written before runs were counted: one run, within the target
    second = _foreign_row(recorded="2026-02-01", p95_ms=5.3, p95_rounds_ms=[5.3, 4.9, 5.6], runs=1, p95_met_runs=0)
    third = _foreign_row(recorded="2026-03-01", p95_ms=4.8, p95_rounds_ms=[4.8, 4.7, 5.2], runs=1, p95_met_runs=1)
    rows = updated(updated([legacy], second), third)
    assert len(rows) == 1 and (rows[0]["runs"], rows[0]["p95_met_runs"]) == (3, 2)
    assert json.loads(dump_record(rows))["rows"] == rows  # stored with its counts and rounds
    line = render_record(rows).splitlines()[2]
    assert line.endswith("| 4.80 (4.70–5.20) | 4.50 | met | 2 of 3 | 450 (2) | met |")
    assert render_record([legacy]).splitlines()[2].endswith("| 4.90 | 4.50 | met | 1 of 1 | 450 (2) | met |")


def test_a_record_written_before_runs_were_counted_still_reads(tmp_path: Path) -> None:
    from v4runtime.bench.hosts import ROW_FIELDS, read_record

    old = tmp_path / "record.json"
    old.write_text(json.dumps({"rows": [{k: _foreign_row()[k] for k in ROW_FIELDS}]}))
    assert read_record(old)[0]["p95_ms"] == 4.0


@pytest.mark.parametrize(
    ("single", "batched", "verdict"),
    [([100, 100], [110, 120], "faster"), ([100, 100], [90, 99], "slower"),
     ([100, 100], [90, 120], "neither faster nor slower in every round")],
)
def test_the_batching_line_reads_every_round(single: list[float], batched: list[float], verdict: str) -> None:
    from v4runtime.bench.scan import _batching_lines

    report = {"throughput_rounds": {"1 worker": single, "1 worker, batches of 8": batched}}
    assert _batching_lines(report)[0].endswith(f"in the 2 rounds ({verdict}).")
    assert _batching_lines({}) == []  # reports written before the rounds were kept
