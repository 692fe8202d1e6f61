"""The benchmark runs, and the committed generated pages are exactly what its JSON renders to."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from v4runtime.bench import monitor
from v4runtime.bench.monitor import (
    ENDPOINTS,
    READ_PHASES,
    _closed_loop,
    _Conn,
    _open_loop,
    _raw,
    render_endpoints,
    render_markdown,
)
from v4runtime.cli import main

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
    assert all(p["error_kinds"] == {} for p in phases.values() if isinstance(p, dict) and "error_kinds" in p)
    assert "| Phase | OK | Failed |" in (tmp_path / "bench.md").read_text()
    assert "| `POST /v1/metrics/log` |" in (tmp_path / "endpoints.md").read_text()


PHASE_KEYS = ["baseline /health/live", "log open-loop", "log max", "log batch", "baseline read rate",
              *(k for key, _ in READ_PHASES for k in (key, f"{key} max"))]


def _report(failed: dict[str, dict[str, int]] | None = None) -> dict[str, Any]:
    """A complete report, every phase within its targets; ``failed`` gives phases error kinds and counts."""
    def phase(key: str) -> dict[str, Any]:
        kinds = (failed or {}).get(key, {})
        return {"name": f"phase {key}", "requests": 10_000, "errors": sum(kinds.values()), "error_kinds": kinds,
                "seconds": 1.0, "requests_per_s": 10_000.0, "events_per_s": 200_000.0, "p50_ms": 0.5,
                "p95_ms": 1.0, "p99_ms": 2.0, "max_ms": 3.0}

    backend = {key: phase(key) for key in PHASE_KEYS}
    backend.update(stats_window_events=1_000_000, preload={"events": 1_000_000, "seconds": 9.0})
    return {"command": "v4runtime bench monitor", "date": "2026-01-01", "machine": "2 CPUs", "load_average_1m": 0.5,
            "settings": {"duration_s": 1.0, "log_rate": 1000.0, "read_rate": 200.0, "stats_events": 1_000_000,
                         "batch_size": 1000},
            "backends": {"sqlite": backend}}


def _rows(markdown: str, first_cell: str) -> list[list[str]]:
    """Cells of the table rows whose first cell starts with ``first_cell``."""
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in markdown.splitlines() if line.startswith("|")]
    return [r for r in rows if r[0].startswith(first_cell)]


def test_markdown_of_a_clean_run_shows_no_failed_request() -> None:
    markdown = render_markdown(_report())
    rows = _rows(markdown, "phase ")
    assert len(rows) == len(PHASE_KEYS) and all(r[2] == "0" for r in rows)
    targets = [r for r in _rows(markdown, "") if "≤" in r[0] or "≥" in r[0]]
    assert targets and all(r[1].endswith("(met)") for r in targets)
    assert "failed" not in render_endpoints(_report())


def test_markdown_shows_each_phase_with_failed_requests_and_their_kinds() -> None:
    report = _report({"log max": {"503 overloaded": 10, "500 internal_error": 2}, "health": {"429 rate_limited": 3}})
    markdown = render_markdown(report)
    failed = {r[0]: r[2] for r in _rows(markdown, "phase ")}
    assert failed.pop("phase log max") == "**12** (503 overloaded ×10, 500 internal_error ×2)"
    assert failed.pop("phase health") == "**3** (429 rate_limited ×3)"
    assert set(failed.values()) == {"0"}
    # Their figures meet the targets, yet a phase with failed requests does not meet one.
    (throughput,) = _rows(markdown, "≥ 5,000 single-event")
    assert throughput[1] == "10,000/s (not met: 12 failed)"
    (health,) = _rows(markdown, "/health p99")
    assert health[1] == "2 ms (not met: 3 failed)"
    (endpoint,) = _rows(render_endpoints(report), "`GET /health`")
    assert endpoint[-1] == "2 ms (3 failed)"


def test_markdown_of_an_old_report_with_errors_but_no_kinds_still_shows_them() -> None:
    report = _report()
    del report["backends"]["sqlite"]["stats"]["error_kinds"]
    report["backends"]["sqlite"]["stats"]["errors"] = 4
    (row,) = [r for r in _rows(render_markdown(report), "phase stats") if r[0] == "phase stats"]
    assert row[2] == "**4** (kinds not recorded)"


def test_phases_count_failed_requests_by_status_and_error_code(open_server: Any) -> None:
    port = urlsplit(open_server.url).port
    assert port is not None
    good, missing = _raw("GET", "/health/live"), _raw("GET", "/v1/nope")
    alternate = itertools.cycle([good, missing])
    closed = asyncio.run(_closed_loop(port, "mixed", lambda: next(alternate), concurrency=1, duration=0.3,
                                      expect=200)).summary()
    assert closed["requests"] > 0 and closed["errors"] > 0
    assert closed["error_kinds"] == {"404 not_found": closed["errors"]}
    opened = asyncio.run(_open_loop(port, "mixed", lambda: next(alternate), rate=100, duration=0.2, expect=200,
                                    concurrency=2)).summary()
    assert opened["errors"] == 10 and opened["error_kinds"] == {"404 not_found": 10}
    # What the report records is what its Markdown shows.
    report = _report()
    report["backends"]["sqlite"]["log max"] = closed
    (row,) = _rows(render_markdown(report), "mixed")
    assert row[2] == f"**{closed['errors']:,}** (404 not_found ×{closed['errors']:,})"


# Transport failures: a server that drops some connections ---------------------------------------
BUSY = b'{"error":{"code":"overloaded","message":"busy"}}'


async def _flaky(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Keep-alive HTTP/1.1 whose answer depends on the path: /ok, /busy (503), and three ways to fail.

    /close shuts the socket without an answer, /reset aborts it with an RST, /hang never answers.
    """
    try:
        while True:
            path = (await reader.readuntil(b"\r\n\r\n")).split(b" ")[1]
            if path == b"/close":
                return
            if path == b"/reset":
                writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                           struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            if path == b"/hang":
                await reader.read()  # until the client gives up on it
                return
            status, body = (b"200 OK", b"ok") if path == b"/ok" else (b"503 Service Unavailable", BUSY)
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


FLAKY_PATHS = ["/ok", "/busy", "/close", "/reset", "/hang"]
FLAKY_KINDS = {"503 overloaded", "connection closed", "connection reset", "timeout"}


async def _against_flaky_server(phase: Any) -> Any:
    server = await asyncio.start_server(_flaky, "127.0.0.1", 0)
    try:
        return await phase(server.sockets[0].getsockname()[1])
    finally:
        server.close()


def test_dropped_connections_are_counted_by_kind_and_the_phase_goes_on() -> None:
    cycle = itertools.cycle([_raw("GET", p) for p in FLAKY_PATHS])
    closed = asyncio.run(_against_flaky_server(lambda port: _closed_loop(
        port, "flaky", lambda: next(cycle), concurrency=1, duration=0.8, expect=200, timeout=0.2))).summary()
    assert set(closed["error_kinds"]) == FLAKY_KINDS
    # One connection, the paths in turn: after each drop the worker reconnected and sent the next one.
    counts = [closed["requests"], *closed["error_kinds"].values()]
    assert min(counts) >= 2 and max(counts) - min(counts) <= 1, closed
    assert closed["errors"] == sum(closed["error_kinds"].values())

    cycle = itertools.cycle([_raw("GET", p) for p in FLAKY_PATHS])
    opened = asyncio.run(_against_flaky_server(lambda port: _open_loop(
        port, "flaky", lambda: next(cycle), rate=50, duration=0.4, expect=200, concurrency=2,
        timeout=0.2))).summary()
    assert opened["requests"] == 4 and opened["error_kinds"] == dict.fromkeys(sorted(FLAKY_KINDS), 4)

    # The report's Markdown shows the transport kinds next to the HTTP ones.
    report = _report()
    report["backends"]["sqlite"]["log max"] = closed
    (row,) = _rows(render_markdown(report), "flaky")
    kinds = closed["error_kinds"]
    assert row[2] == (f"**{closed['errors']}** (503 overloaded ×{kinds['503 overloaded']}, connection closed "
                      f"×{kinds['connection closed']}, connection reset ×{kinds['connection reset']}, "
                      f"timeout ×{kinds['timeout']})")
    assert "`connection reset`" in render_markdown(report).split("\n")[0]


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_request_to_a_closed_port_is_a_connect_refused_failure() -> None:
    assert asyncio.run(_Conn(_dead_port(), timeout=2).request(_raw("GET", "/health/live"))) == "connect refused"


def _bench_against(port: int, monkeypatch: pytest.MonkeyPatch) -> int:
    """``bench monitor --quick`` measuring ``port`` instead of the server it starts."""
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    monkeypatch.setattr(monitor, "_start_server", lambda *_: (finished, port))
    return main(["bench", "monitor", "--backend", "sqlite", "--quick", "--no-write"])


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_bench_against_a_dead_server_stops_at_once_with_a_typed_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    t0 = time.monotonic()
    assert _bench_against(_dead_port(), monkeypatch) == 2
    assert time.monotonic() - t0 < 5, "the phase ran on against a server that is not there"
    err = _error_line(capsys)
    assert all(w in err for w in ("sqlite", "phase 'GET /health/live'", "at its start", "connect refused")), err


class _Hangup(socketserver.BaseRequestHandler):
    """Reads a request and closes the connection without answering."""

    def handle(self) -> None:
        self.request.recv(65536)


@pytest.fixture
def hangup_port() -> Iterator[int]:
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Hangup) as server:
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield int(server.server_address[1])
        server.shutdown()
        thread.join(5)


def test_bench_whose_every_request_drops_stops_with_a_typed_error(
    hangup_port: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _bench_against(hangup_port, monkeypatch) == 2
    err = _error_line(capsys)
    assert all(w in err for w in ("sqlite", "phase 'GET /health/live'", "every request failed at the transport "
                                  "level", "connection closed")), err
