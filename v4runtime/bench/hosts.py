"""The record of ``bench scan`` on every CPU it has run on: one row per CPU and model, the newest run.

Scan latency depends on the CPU far more than on anything a run can control: the same model and
code measure very differently on two cloud CPUs both sold as "AMD EPYC". One report describes one
machine; this record keeps the newest run of each CPU side by side (``bench-scan-hosts.json``, rendered as ``bench-scan-hosts.md``), so the performance
page shows where the latency and throughput targets hold and where they do not.

A row also counts the runs its CPU has had, and in how many of them the end-to-end p95 was within the
target: on a CPU near the target, run-to-run noise on a shared machine decides a single verdict.

A row is keyed by the CPU's name (with its ``cpu_id`` where the report has one), its vector
extensions and the model's sha256. Reports from before ``cpu_id`` was recorded keep a key of
their own: they cannot be matched to a generation, so a newer run never silently replaces them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from v4runtime.errors import ConfigError

#: File names of the record, beside ``bench-scan.json``.
RECORD_JSON = "bench-scan-hosts.json"
RECORD_MARKDOWN = "bench-scan-hosts.md"
#: Fields of a row, in the order they are stored.
ROW_FIELDS: tuple[str, ...] = (
    "recorded", "cpu", "cpu_id_known", "vector", "cpus", "model", "model_sha256", "images",
    "decode_p50_ms", "p50_ms", "p95_ms", "p99_ms", "workers", "throughput_images_per_s",
    "load_average_1min", "target_p95_ms", "target_images_per_s",
)
#: Fields added later: rows written before them read as one run, its p95 rounds unknown.
OPTIONAL_FIELDS: tuple[str, ...] = ("p95_rounds_ms", "runs", "p95_met_runs")


def vector_extensions(flags: Sequence[str]) -> str:
    """The widest vector extension among ``flags``: ``AVX-512``, ``AVX2`` or ``no AVX2``."""
    if any(f.startswith("avx512") for f in flags):
        return "AVX-512"
    return "AVX2" if "avx2" in flags else "no AVX2"


def row_from_report(report: dict[str, Any], recorded: str | None = None) -> dict[str, Any]:
    """One record row from a ``bench-scan.json`` report.

    Args:
        report: The report :func:`v4runtime.bench.scan.measure` returns.
        recorded: UTC date of the run (``YYYY-MM-DD``); the report's own ``recorded``, else today.
    """
    from v4runtime.quantization.host import cpu_name  # late: the package imports onnxruntime's quantiser

    machine = report["machine"]
    workers = int(report.get("workers_used", 2))
    label = f"{workers} {'worker' if workers == 1 else 'workers'} (processes)"
    total = report["latency_ms"]["total_ms"]
    return {
        "recorded": recorded or report.get("recorded") or dt.datetime.now(dt.UTC).date().isoformat(),
        "cpu": cpu_name(machine) if machine.get("cpu_model") else machine.get("processor", "unknown"),
        "cpu_id_known": bool(machine.get("cpu_id")),
        "vector": vector_extensions(machine.get("cpu_flags") or []),
        "cpus": machine.get("cpus"),
        "model": report["model"],
        "model_sha256": report["model_sha256"],
        "images": report["images"],
        "decode_p50_ms": report["decode_ms"]["p50"],
        "p50_ms": total["p50"],
        "p95_ms": total["p95"],
        "p99_ms": total["p99"],
        "workers": workers,
        "throughput_images_per_s": report["throughput_images_per_s"].get(label),
        "load_average_1min": machine.get("load_average_1min"),
        "target_p95_ms": report["targets"]["p95_ms"],
        "target_images_per_s": report["targets"]["throughput_images_per_s"],
        "p95_rounds_ms": report.get("latency_rounds_p95_ms"),
        "runs": 1,
        "p95_met_runs": int(total["p95"] <= report["targets"]["p95_ms"]),
    }


def row_key(row: dict[str, Any]) -> tuple[str, str, str]:
    """What makes two rows the same host and model: CPU name (with generation), vector extensions, model."""
    return row["cpu"], row["vector"], row["model_sha256"]


def runs(row: dict[str, Any]) -> tuple[int, int]:
    """How many runs ``row`` stands for, and in how many of them the p95 was within the target."""
    if row.get("runs") is None:  # a row from before runs were counted: its own run only
        return 1, int(row["p95_ms"] <= row["target_p95_ms"])
    return int(row["runs"]), int(row["p95_met_runs"])


def updated(rows: Sequence[dict[str, Any]], row: dict[str, Any]) -> list[dict[str, Any]]:
    """``rows`` with ``row`` in place of the row of the same key (appended when none), oldest first.

    The new row carries the older row's count of runs forward, its own run added.
    """
    older = [r for r in rows if row_key(r) == row_key(row)]
    if older:
        (old_runs, old_met), (new_runs, new_met) = runs(older[-1]), runs(row)
        row = {**row, "runs": old_runs + new_runs, "p95_met_runs": old_met + new_met}
    kept = [r for r in rows if row_key(r) != row_key(row)]
    return sorted([*kept, row], key=lambda r: (r["recorded"], r["cpu"]))


def read_record(path: Path) -> list[dict[str, Any]]:
    """The rows stored at ``path`` (none when the file does not exist).

    Raises:
        ConfigError: The file is not a record this module wrote (bad JSON, missing fields): a run
            refuses to overwrite it rather than lose the other hosts' rows.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        rows = json.loads(text)["rows"]
        if not isinstance(rows, list) or not all(isinstance(r, dict) and set(ROW_FIELDS) <= set(r) for r in rows):
            raise ValueError("every row needs the fields " + ", ".join(ROW_FIELDS))
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path} is not a bench scan host record ({exc}); move it away to start a new record"
        ) from exc
    return rows


def dump_record(rows: Sequence[dict[str, Any]]) -> str:
    """The record's JSON text."""
    def stored(row: dict[str, Any]) -> dict[str, Any]:
        return {**{k: row[k] for k in ROW_FIELDS}, **{k: row[k] for k in OPTIONAL_FIELDS if row.get(k) is not None}}

    return json.dumps({"rows": [stored(r) for r in rows]}, indent=2) + "\n"


def _verdict(value: float | None, target: float, *, at_most: bool) -> str:
    if value is None:
        return "not measured"
    met = value <= target if at_most else value >= target
    return "met" if met else "**not met**"


def _p95_text(row: dict[str, Any]) -> str:
    rounds = row.get("p95_rounds_ms")
    if not rounds:
        return f"{row['p95_ms']:.2f}"
    return f"{row['p95_ms']:.2f} ({min(rounds):.2f}–{max(rounds):.2f})"


def _runs_text(row: dict[str, Any]) -> str:
    total, met = runs(row)
    return f"{met} of {total}"


def render_record(rows: Sequence[dict[str, Any]]) -> str:
    """The Markdown table the performance page includes: one row per CPU and model, newest run."""
    if not rows:
        return "No `bench scan` run has been recorded yet.\n"
    targets = {(r["target_p95_ms"], r["target_images_per_s"]) for r in rows}
    p95_target, rate_target = max(targets)
    lines = [
        "| recorded | CPU | vector | model | decode p50 ms | end to end p50 ms | p95 ms | p99 ms | "
        f"p95 <= {p95_target:g} ms | runs within it | images/s, processes | >= {rate_target:g} images/s |",
        "|---|---|---|---|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in rows:
        cpu = r["cpu"] if r["cpu_id_known"] else f"{r['cpu']} (generation not recorded)"
        rate = r["throughput_images_per_s"]
        rate_text = "not measured" if rate is None else f"{rate:.0f} ({r['workers']})"
        lines.append(
            f"| {r['recorded']} | {cpu}, {r['cpus']} CPUs | {r['vector']} | `{r['model']}` "
            f"`{r['model_sha256'][:12]}…` | {r['decode_p50_ms']:.2f} | {r['p50_ms']:.2f} | {_p95_text(r)} | "
            f"{r['p99_ms']:.2f} | {_verdict(r['p95_ms'], r['target_p95_ms'], at_most=True)} | {_runs_text(r)} | "
            f"{rate_text} | {_verdict(rate, r['target_images_per_s'], at_most=False)} |"
        )
    met = sum(r["p95_ms"] <= r["target_p95_ms"] for r in rows)
    lines += [
        "",
        f"The p95 target holds on {met} of the {len(rows)} CPUs recorded, in each CPU's newest run. "
        "A p95 shows the range of that run's rounds in brackets (runs before rounds were kept show one figure); "
        "*runs within it* counts every run recorded on that CPU with this model.",
    ]
    return "\n".join(lines) + "\n"
