"""The benchmark runs, and the committed generated pages are exactly what its JSON renders to."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from v4runtime.bench.monitor import ENDPOINTS, render_endpoints, render_markdown

REPO = Path(__file__).resolve().parents[2]
GENERATED = REPO / "docs" / "generated" / "monitoring"


def test_committed_benchmark_pages_match_their_json() -> None:
    report = json.loads((GENERATED / "bench.json").read_text())
    assert set(report["backends"]) == {"sqlite", "postgresql"}
    assert (GENERATED / "bench.md").read_text() == render_markdown(report), "bench.md is stale: re-run the bench"
    assert (GENERATED / "endpoints.md").read_text() == render_endpoints(report)
    assert report["settings"]["stats_events"] >= 1_000_000
    assert all(r["stats_window_events"] >= 1_000_000 for r in report["backends"].values())


def test_endpoint_table_lists_every_documented_endpoint() -> None:
    spec = json.loads((GENERATED / "openapi.json").read_text())
    seed = {"/health", "/v1/metrics/log", "/v1/metrics/stats", "/v1/alerts/recent", "/v1/models/versions"}
    listed = {path for _, path, *_ in ENDPOINTS}
    assert seed <= listed <= set(spec["paths"])


def test_quick_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "v4runtime", "bench", "monitor", "--backend", "sqlite", "--quick",
         "--output-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "bench.json").read_text())
    phases = report["backends"]["sqlite"]
    assert phases["log open-loop"]["requests"] > 0 and phases["log open-loop"]["errors"] == 0
    assert phases["log batch"]["events_per_s"] > 0
    assert "| `POST /v1/metrics/log` |" in (tmp_path / "endpoints.md").read_text()
