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


# Chunked answers (Transfer-Encoding: chunked) -----------------------------------------------------
def _chunked(*chunks: bytes, trailers: bytes = b"") -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n" + trailers + b"\r\n"


_CHUNKED_HEAD = b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
#: Answers by path: a head and a body, sent as they are.
CHUNKED_ANSWERS: dict[bytes, bytes] = {
    # Upper-case hex, an extension with and without a value, whitespace before it, and trailer fields.
    b"/chunked": _CHUNKED_HEAD % b"200 OK" + b"5;name=value\r\nhello\r\nA ;flag\r\n, chunked \r\n"
                 + b"5\r\nworld\r\n0\r\nX-Checksum: 1\r\nX-Other: 2\r\n\r\n",
    b"/chunked-many": _CHUNKED_HEAD % b"200 OK" + _chunked(*[b"%03d," % i for i in range(300)]),
    # Transfer-Encoding wins over a Content-Length (which a proxy may have left).
    b"/chunked-and-length": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                            + _chunked(b"abc", b"def"),
    b"/busy-chunked": _CHUNKED_HEAD % b"503 Service Unavailable" + _chunked(BUSY[:10], BUSY[10:]),
    # Malformed, each a "bad response".
    b"/bad-hex": _CHUNKED_HEAD % b"200 OK" + b"zz\r\nhello\r\n0\r\n\r\n",
    b"/prefixed-hex": _CHUNKED_HEAD % b"200 OK" + b"0x5\r\nhello\r\n0\r\n\r\n",
    b"/signed-hex": _CHUNKED_HEAD % b"200 OK" + b"+5\r\nhello\r\n0\r\n\r\n",
    b"/empty-size": _CHUNKED_HEAD % b"200 OK" + b"\r\nhello\r\n0\r\n\r\n",
    b"/no-crlf-after-data": _CHUNKED_HEAD % b"200 OK" + b"5\r\nhelloXX0\r\n\r\n",
    # Declares more than the client reads: refused at the size line, not read for 10 s.
    b"/huge-chunk": _CHUNKED_HEAD % b"200 OK" + b"7fffffffffffffff\r\n",
    b"/huge-length": b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
    b"/negative-length": b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nhello",
    b"/gzip-only": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello",
    b"/trailer-flood": _CHUNKED_HEAD % b"200 OK" + b"0\r\n" + (b"X-Pad: " + b"p" * 1000 + b"\r\n") * 81 + b"\r\n",
    # Ends early: the server closes within the body.
    b"/cut-chunked": _CHUNKED_HEAD % b"200 OK" + b"a\r\nhello",
    # Stops sending after the first chunk: a timeout of the request's budget, not a hang.
    b"/stalled-chunked": _CHUNKED_HEAD % b"200 OK" + b"5\r\nhello\r\n",
}
MALFORMED = ["/bad-hex", "/prefixed-hex", "/signed-hex", "/empty-size", "/no-crlf-after-data", "/huge-chunk",
             "/huge-length", "/negative-length", "/gzip-only", "/trailer-flood"]


class _ChunkedServer:
    """A keep-alive HTTP/1.1 server on 127.0.0.1 that answers each path with ``CHUNKED_ANSWERS``."""

    def __init__(self) -> None:
        self.connections = 0
        self._handlers: set[asyncio.Task[Any]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            while True:
                path = (await reader.readuntil(b"\r\n\r\n")).split(b" ")[1]
                writer.write(CHUNKED_ANSWERS[path])
                await writer.drain()
                if path == b"/cut-chunked":
                    return
                if path == b"/stalled-chunked":
                    await reader.read()  # until the client gives up on it
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def run(self, client: Any) -> Any:
        server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        try:
            return await client(server.sockets[0].getsockname()[1])
        finally:
            server.close()
            # The client closed its connections: let the handlers see that, rather than be cancelled by
            # asyncio.run's shutdown (which logs each one as an error).
            if self._handlers:
                await asyncio.wait(self._handlers, timeout=2)


def test_chunked_answers_are_read_whole_on_a_kept_connection() -> None:
    """Only Content-Length was read: a chunked body came back empty and its bytes spoiled the next answer."""
    served = _ChunkedServer()

    async def client(port: int) -> list[tuple[int, bytes] | str]:
        conn = _Conn(port, timeout=5)
        answers = [await conn.request(_raw("GET", path)) for path in
                   ("/chunked", "/chunked-many", "/chunked-and-length", "/busy-chunked", "/chunked")]
        conn.close()
        return answers

    answers = asyncio.run(served.run(client))
    assert answers == [
        (200, b"hello, chunked world"),
        (200, b"".join(b"%03d," % i for i in range(300))),
        (200, b"abcdef"),
        (503, BUSY),
        (200, b"hello, chunked world"),
    ]
    assert served.connections == 1  # every answer ended where the next one began

    # In a phase: every request succeeds, and a chunked error envelope is counted by its code.
    cycle = itertools.cycle([_raw("GET", "/chunked"), _raw("GET", "/busy-chunked")])
    summary = asyncio.run(_ChunkedServer().run(lambda port: _closed_loop(
        port, "chunked", lambda: next(cycle), concurrency=1, duration=0.3, expect=200, timeout=5))).summary()
    assert summary["requests"] >= 2 and summary["error_kinds"] == {"503 overloaded": summary["errors"]}
    assert abs(summary["requests"] - summary["errors"]) <= 1


@pytest.mark.parametrize("path", MALFORMED)
def test_a_malformed_chunked_or_sized_answer_is_a_bad_response_at_once(path: str) -> None:
    async def client(port: int) -> tuple[tuple[int, bytes] | str, float, tuple[int, bytes] | str]:
        conn = _Conn(port, timeout=5)
        t0 = time.monotonic()
        bad = await conn.request(_raw("GET", path))
        elapsed = time.monotonic() - t0
        after = await conn.request(_raw("GET", "/chunked"))  # on a new connection: the spoiled one was dropped
        conn.close()
        return bad, elapsed, after

    served = _ChunkedServer()
    bad, elapsed, after = asyncio.run(served.run(client))
    assert bad == "bad response"
    assert elapsed < 2, "read on until the request's timeout"
    assert after == (200, b"hello, chunked world") and served.connections == 2


def test_a_chunked_answer_cut_or_stalled_fails_by_its_kind_within_the_budget() -> None:
    async def client(port: int) -> tuple[tuple[int, bytes] | str, tuple[int, bytes] | str, float]:
        conn = _Conn(port, timeout=0.3)
        cut = await conn.request(_raw("GET", "/cut-chunked"))
        t0 = time.monotonic()
        stalled = await conn.request(_raw("GET", "/stalled-chunked"))
        return cut, stalled, time.monotonic() - t0

    cut, stalled, elapsed = asyncio.run(_ChunkedServer().run(client))
    assert cut == "connection closed"
    assert stalled == "timeout" and elapsed < 2
