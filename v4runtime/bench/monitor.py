"""Monitoring API benchmark: latency percentiles and throughput per endpoint, SQLite and PostgreSQL.

``v4runtime bench monitor`` starts ``v4runtime monitor serve`` in a subprocess on 127.0.0.1 for each
backend, drives bounded load with a lean asyncio HTTP/1.1 client (keep-alive connections, uvloop when
installed, request bodies built before each phase) and prints, per endpoint, p50/p95/p99 latency and
throughput. ``GET /health/live`` measured the same way is the baseline (the cost of the HTTP stack and
of the load generator, which share the machine's cores with the server). Latency targets are checked
at a fixed request rate (open loop: 1,000/s for ``/metrics/log``, ``--read-rate`` for the reads);
closed-loop phases give the most each endpoint serves. A request whose connection fails (reset, closed
without an answer, past ``REQUEST_TIMEOUT_S``) counts as failed under that kind and the phase goes on on a
new connection; the run stops with a ``MonitoringError`` naming the phase only when no connection opens at
a phase's start or every request of a phase fails that way.
Results go to ``docs/generated/monitoring/bench.json`` and are rendered to ``bench.md`` and
``endpoints.md`` (the endpoint table of the Monitoring API page).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from v4runtime.errors import MonitoringError

DEFAULT_OUTPUT = Path("docs/generated/monitoring")
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"

#: Endpoints of the page's table: (method, path, purpose, seed SLA in ms, our p99 target in ms or None).
ENDPOINTS: list[tuple[str, str, str, float, float | None]] = [
    ("GET", "/health", "Service health and dependency checks", 100, 5),
    ("POST", "/v1/metrics/log", "Log one inference event (202 once durable)", 50, 5),
    ("GET", "/v1/metrics/stats", "Aggregated stats over a window (1h shown)", 500, 20),
    ("GET", "/v1/alerts/recent", "Recent alerts", 200, 5),
    ("GET", "/v1/models/versions", "Model versions (current, canary, previous)", 100, 5),
    ("GET", "/metrics", "Prometheus exposition", 100, 5),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``v4runtime bench monitor``."""
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pg-url", default=os.environ.get("V4_BENCH_PG_URL", PG_URL))
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measured phase")
    parser.add_argument("--log-rate", type=float, default=1000.0, help="open-loop rate for /metrics/log")
    parser.add_argument("--read-rate", type=float, default=200.0,
                        help="open-loop rate for the read endpoints' latency phases")
    parser.add_argument("--stats-events", type=int, default=1_000_000, help="events preloaded in the stats window")
    parser.add_argument("--batch-size", type=int, default=1000, help="events per request in the batch phase")
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--no-write", action="store_true", help="print only; do not update the generated files")
    parser.add_argument("--quick", action="store_true", help="tiny load (a smoke run, not a measurement)")
    parser.add_argument("--render-only", action="store_true",
                        help="re-render bench.md and endpoints.md from the existing bench.json")


# A lean HTTP/1.1 client: httpx would cost more CPU than the server on a 2-core machine. --------------
#: Seconds one request may take, connecting included: a hung server fails requests, not the whole run.
REQUEST_TIMEOUT_S = 10.0
#: Largest answer body read, whether sized by Content-Length or chunked: a bigger one is a "bad response",
#: not memory the load generator fills without end.
MAX_ANSWER_BYTES = 16 << 20
#: Most bytes of trailer fields after a chunked body.
MAX_TRAILER_BYTES = 64 << 10
#: What a request meets when the connection, not the server's answer, fails.
_TRANSPORT_ERRORS = (OSError, EOFError, asyncio.LimitOverrunError, ValueError)


def _transport_kind(exc: BaseException, connecting: bool) -> str:
    """The error kind of a transport failure: a few fixed words, shown next to the HTTP kinds."""
    if isinstance(exc, TimeoutError):
        return "connect timeout" if connecting else "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connect refused"
    if isinstance(exc, ConnectionError):  # reset, aborted, broken pipe
        return "connection reset"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "connection closed"  # the server closed the socket before its whole answer
    if isinstance(exc, (asyncio.LimitOverrunError, ValueError)):
        return "bad response"
    return "connect failed" if connecting else "connection error"


#: Every kind _transport_kind gives.
TRANSPORT_KINDS = frozenset({"connect timeout", "timeout", "connect refused", "connection reset",
                             "connection closed", "bad response", "connect failed", "connection error"})


class _Conn:
    """One keep-alive connection; dropped after a transport failure and opened again by the next request."""

    def __init__(self, port: int, timeout: float = REQUEST_TIMEOUT_S) -> None:
        self.port, self.timeout = port, timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> str | None:
        """Open the connection before a phase's clock starts; the transport error kind, or None."""
        try:
            async with asyncio.timeout(self.timeout):
                await self._stream()
        except _TRANSPORT_ERRORS as exc:
            self.close()
            return _transport_kind(exc, connecting=True)
        return None

    async def _stream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self.reader, self.writer

    async def request(self, raw: bytes) -> tuple[int, bytes] | str:
        """The answer's status and body, or the transport error kind (the connection is then dropped)."""
        connecting = self.writer is None
        try:
            async with asyncio.timeout(self.timeout):  # one budget for reconnecting, sending and reading
                reader, writer = await self._stream()
                connecting = False
                writer.write(raw)
                status, length, keep_alive = _parse_head(await reader.readuntil(b"\r\n\r\n"))
                if length is None:
                    body = await _read_chunked(reader)
                else:
                    body = await reader.readexactly(length) if length else b""
        except _TRANSPORT_ERRORS as exc:
            # The stream's state is unknown (a late answer could still arrive): never reuse it.
            self.close()
            return _transport_kind(exc, connecting)
        if not keep_alive:  # the server closes it: the next request would read a closed socket
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def _parse_head(head: bytes) -> tuple[int, int | None, bool]:
    """Status, body length (None: chunked) and keep-alive of an answer's head; ValueError when it is not HTTP.

    ``Transfer-Encoding: chunked`` wins over a ``Content-Length`` (RFC 9112, 6.3). Another transfer coding
    last would leave the body delimited by the connection's close, which a keep-alive client cannot read.
    """
    if not head.startswith(b"HTTP/1."):
        raise ValueError(f"not an HTTP/1.x answer: {head[:20]!r}")
    status, length, keep_alive = int(head[9:12]), 0, True
    codings: list[bytes] = []
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            if not value.strip().isdigit():
                raise ValueError(f"bad Content-Length {value.strip()[:20]!r}")
            length = int(value)
        elif name == b"transfer-encoding":
            codings += [c.strip().lower() for c in value.split(b",") if c.strip()]
        elif name == b"connection":
            keep_alive = value.strip().lower() != b"close"
    if codings:
        if codings[-1] != b"chunked":
            raise ValueError(f"unsupported Transfer-Encoding {b', '.join(codings)[:40]!r}")
        return status, None, keep_alive
    if length > MAX_ANSWER_BYTES:
        raise ValueError(f"answer of {length:,} bytes, over the {MAX_ANSWER_BYTES:,} read")
    return status, length, keep_alive


_HEX = frozenset(b"0123456789abcdefABCDEF")


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """A chunked body (RFC 9112, 7.1): hex size lines with optional extensions, a last ``0`` chunk, trailers.

    Raises:
        ValueError: a malformed size line or chunk end, or a body or trailers over their limits.
        asyncio.IncompleteReadError: the connection closed within the body.
        asyncio.LimitOverrunError: a line longer than the reader's limit (64 KiB).
    """
    body = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        # Extensions (";name=value") are allowed and ignored; whitespace before them too.
        size_hex = line[:-2].split(b";", 1)[0].rstrip(b" \t")
        # Strict digits: int(x, 16) would also take "0x1f", "+1f", "1_f" and surrounding spaces.
        if not size_hex or len(size_hex) > 16 or not _HEX.issuperset(size_hex):
            raise ValueError(f"bad chunk size line {line[:20]!r}")
        size = int(size_hex, 16)
        if size == 0:
            break
        if len(body) + size > MAX_ANSWER_BYTES:
            raise ValueError(f"chunked answer over the {MAX_ANSWER_BYTES:,} bytes read")
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise ValueError("chunk data not followed by CRLF")
    trailers = 0
    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":  # trailer fields, up to the empty line
        trailers += len(line)
        if trailers > MAX_TRAILER_BYTES:
            raise ValueError(f"trailers over {MAX_TRAILER_BYTES:,} bytes")
    return bytes(body)


def _failure(answer: tuple[int, bytes] | str, expect: int) -> str | None:
    """None for the expected status; otherwise the error kind (transport, or status and error code)."""
    if isinstance(answer, str):
        return answer
    status, body = answer
    return None if status == expect else _error_kind(status, body)


async def _connect_all(port: int, name: str, count: int, timeout: float) -> list[_Conn]:
    """``count`` connections opened at once before a phase; a typed error when none of them opens."""
    conns = [_Conn(port, timeout) for _ in range(count)]
    kinds = await asyncio.gather(*(conn.connect() for conn in conns))
    if all(kinds):
        raise _unreachable(name, Counter(k for k in kinds if k), f"no connection to 127.0.0.1:{port} opened "
                           "at its start")
    return conns


def _check_answered(name: str, latencies: list[float], failures: Counter[str]) -> None:
    """A phase whose every request failed at the transport level: the server is gone, stop the run."""
    if not latencies and failures and set(failures) <= TRANSPORT_KINDS:
        raise _unreachable(name, failures, "every request failed at the transport level")


def _unreachable(name: str, failures: Counter[str], why: str) -> MonitoringError:
    from v4runtime.errors import MonitoringError

    kinds = ", ".join(f"{kind} ×{n:,}" for kind, n in failures.most_common())
    return MonitoringError(f"phase {name!r}: {why} ({kinds})", reason="unreachable")


def _raw(method: str, path: str, body: bytes = b"", token: str = "bench") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


_ids = itertools.count()
_RUN = uuid.uuid4().hex[:12]


def _event_body(batch: int = 1) -> bytes:
    # Ids from a counter: uuid4() reads /dev/urandom per call, which made the load generator, not the
    # server, the bottleneck of the batch phase.
    def one() -> str:
        p = random.random()
        return (f'{{"request_id":"{_RUN}-{next(_ids)}","model_version":"v4-default","latency_ms":'
                f'{random.uniform(5, 40):.3f},"probability":{p:.4f},"prediction":"{"stego" if p > 0.9 else "clean"}"}}')

    if batch == 1:
        return one().encode()
    return ('{"events":[' + ",".join(one() for _ in range(batch)) + "]}").encode()


def _error_kind(status: int, body: bytes) -> str:
    """What a failed request got: its status and the envelope's code (``503 overloaded``), or the status alone."""
    try:
        code = json.loads(body)["error"]["code"]
    except (ValueError, LookupError, TypeError):
        return str(status)
    # Only a plain code: the kind goes into a Markdown table cell.
    return f"{status} {code}" if isinstance(code, str) and code.isidentifier() else str(status)


@dataclass
class Result:
    """Latencies (ms) of the successful requests of one phase, and the failed ones counted by kind."""

    name: str
    latencies: list[float]
    seconds: float
    failures: Counter[str]
    events_per_request: int = 1

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def q(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))], 3) if lat else None

        requests_per_s = len(lat) / self.seconds if self.seconds else 0.0
        return {
            "name": self.name, "requests": len(lat), "errors": self.failures.total(),
            "error_kinds": dict(sorted(self.failures.items())), "seconds": round(self.seconds, 3),
            "requests_per_s": round(requests_per_s, 1),
            "events_per_s": round(requests_per_s * self.events_per_request, 1),
            "p50_ms": q(0.50), "p95_ms": q(0.95), "p99_ms": q(0.99), "max_ms": q(1.0),
        }


async def _closed_loop(port: int, name: str, make: Any, *, concurrency: int, duration: float,
                       expect: int, events_per_request: int = 1, prebuild: int = 0,
                       timeout: float = REQUEST_TIMEOUT_S) -> Result:
    """As many requests as ``concurrency`` connections carry; ``prebuild`` requests are built beforehand.

    Building unique event bodies costs the load generator more than the server spends on them, so up
    to ``prebuild`` of them are made before the clock starts (then ``make()`` is called in the loop).
    A dropped connection counts its request as failed and is opened again for the worker's next one.
    """
    ready = [make() for _ in range(prebuild)]

    def next_request() -> bytes:
        return ready.pop() if ready else make()

    conns = await _connect_all(port, name, concurrency, timeout)
    latencies: list[float] = []
    failures: Counter[str] = Counter()
    deadline = time.perf_counter() + duration

    async def worker(conn: _Conn) -> None:
        while time.perf_counter() < deadline:
            raw = next_request()
            t0 = time.perf_counter()
            kind = _failure(await conn.request(raw), expect)
            if kind is None:
                latencies.append((time.perf_counter() - t0) * 1000)
            else:
                failures[kind] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - t0
    for conn in conns:
        conn.close()
    _check_answered(name, latencies, failures)
    return Result(name, latencies, elapsed, failures, events_per_request)


async def _open_loop(port: int, name: str, make: Any, *, rate: float, duration: float, expect: int,
                     concurrency: int = 64, timeout: float = REQUEST_TIMEOUT_S) -> Result:
    """Requests sent on a fixed schedule; latency counts from the scheduled time (no coordinated omission).

    A dropped connection counts its request as failed; it goes back to the pool and opens again when next used.
    """
    pool: asyncio.Queue[_Conn] = asyncio.Queue()
    conns = await _connect_all(port, name, concurrency, timeout)
    for conn in conns:
        pool.put_nowait(conn)
    latencies: list[float] = []
    failures: Counter[str] = Counter()
    bodies = [make() for _ in range(int(rate * duration))]

    async def one(raw: bytes, scheduled: float) -> None:
        conn = await pool.get()
        kind = _failure(await conn.request(raw), expect)
        pool.put_nowait(conn)
        if kind is None:
            latencies.append((time.perf_counter() - scheduled) * 1000)
        else:
            failures[kind] += 1

    start = time.perf_counter()
    tasks = []
    for i, raw in enumerate(bodies):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(raw, scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    for conn in conns:
        conn.close()
    _check_answered(name, latencies, failures)
    return Result(name, latencies, elapsed, failures)


# Server lifecycle ------------------------------------------------------------------------------
def _start_server(db_url: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``monitor serve`` on 127.0.0.1 and an ephemeral port; stopped again if it does not come up."""
    from v4runtime.errors import MonitoringError

    port_file = workdir / "port"
    env = {k: v for k, v in os.environ.items() if not k.startswith("V4_")}
    env.update({
        "V4_MONITOR__WRITE_TOKENS": "bench", "V4_MONITOR__RATE_LIMIT_PER_SECOND": "10000000",
        "V4_MONITOR__MAX_BODY_BYTES": str(64 << 20), "V4_MONITOR__ALERT_INTERVAL_S": "15",
    })
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "v4runtime", "monitor", "serve", "--db", db_url, "--host", "127.0.0.1",
             "--port", "0", "--port-file", str(port_file)],
            env=env, stdout=subprocess.DEVNULL, stderr=log,
        )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise MonitoringError(f"monitor server did not start: {_log_tail(workdir)}", reason="unreachable")
            time.sleep(0.05)
        return proc, int(port_file.read_text())
    except BaseException:  # a failed start, Ctrl-C or SIGTERM: leave no server behind
        _stop_server(proc)
        raise


def _log_tail(workdir: Path) -> str:
    try:
        lines = (workdir / "server.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1] if lines else "empty"


def _stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _preload(db_url: str, n: int) -> float:
    """Insert n events spread over the last hour straight into the store; returns seconds taken."""
    from v4runtime.monitoring.schemas import InferenceEvent
    from v4runtime.monitoring.store import open_store

    store = open_store(db_url)
    t0 = time.perf_counter()
    now = time.time()
    chunk = 50_000
    try:
        for start in range(0, n, chunk):
            events = []
            for i in range(start, min(n, start + chunk)):
                p = random.random()
                events.append(InferenceEvent.model_construct(
                    request_id=f"pre-{i}", timestamp=datetime.fromtimestamp(now - random.uniform(0, 3500), UTC),
                    model_version="v4-default", latency_ms=random.lognormvariate(2.7, 0.4), probability=p,
                    prediction="stego" if p > 0.9 else "clean", label="clean" if i % 10 == 0 else None,
                    method=None, image_format=None, image_bytes=None, width=None, height=None, error=None,
                    pod=None, node=None,
                ))
            store.write_events(events)
    finally:
        store.close()
    return time.perf_counter() - t0


async def _measure(port: int, args: argparse.Namespace, db_url: str) -> dict[str, Any]:
    d = args.duration
    results: dict[str, Any] = {}
    get = {path: _raw("GET", path) for path in
           ("/health/live", "/health", "/v1/alerts/recent", "/v1/models/versions", "/metrics",
            "/v1/metrics/stats?window=1h")}

    results["baseline /health/live"] = (await _closed_loop(
        port, "GET /health/live", lambda: get["/health/live"], concurrency=4, duration=d, expect=200)).summary()
    log_one = lambda: _raw("POST", "/v1/metrics/log", _event_body())  # noqa: E731
    results["log open-loop"] = (await _open_loop(
        port, f"POST /v1/metrics/log @ {args.log_rate:g}/s", log_one, rate=args.log_rate, duration=d,
        expect=202)).summary()
    results["log max"] = (await _closed_loop(
        port, "POST /v1/metrics/log (max)", log_one, concurrency=32, duration=d, expect=202,
        prebuild=int(8000 * d))).summary()
    # Every request carries fresh events (a reused body would only hit the duplicate check).
    results["log batch"] = (await _closed_loop(
        port, f"POST /v1/metrics/log ({args.batch_size} events)",
        lambda: _raw("POST", "/v1/metrics/log", _event_body(args.batch_size)),
        concurrency=4, duration=d, expect=202, events_per_request=args.batch_size,
        prebuild=int(150_000 * d / args.batch_size))).summary()

    preload_s = await asyncio.to_thread(_preload, db_url, args.stats_events)
    results["preload"] = {"events": args.stats_events, "seconds": round(preload_s, 2)}
    # The same fixed rate on the trivial probe: the floor that machine noise puts under the reads' p99.
    results["baseline read rate"] = (await _open_loop(
        port, f"GET /health/live @ {args.read_rate:g}/s", lambda: get["/health/live"], rate=args.read_rate,
        duration=d, expect=200, concurrency=8)).summary()
    for key, path in READ_PHASES:
        results[key] = (await _open_loop(
            port, f"GET {path} @ {args.read_rate:g}/s", lambda p=path: get[p], rate=args.read_rate, duration=d,
            expect=200, concurrency=8)).summary()
        results[f"{key} max"] = (await _closed_loop(
            port, f"GET {path} (max)", lambda p=path: get[p], concurrency=4, duration=d, expect=200)).summary()
    return results


#: Read endpoints measured after the preload: (result key, path).
READ_PHASES = (("stats", "/v1/metrics/stats?window=1h"), ("health", "/health"), ("alerts", "/v1/alerts/recent"),
               ("models", "/v1/models/versions"), ("prometheus", "/metrics"))


def _run_loop(main: Any) -> Any:
    """Run the load generator on uvloop when installed: it leaves more of the shared cores to the server."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def _bench_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="v4-bench-") as tmp:
        workdir = Path(tmp)
        schema = None
        proc = None
        try:
            if backend == "sqlite":
                db_url = f"sqlite:///{workdir}/bench.db"
            else:
                import psycopg

                schema = f"v4bench_{uuid.uuid4().hex[:8]}"
                with psycopg.connect(args.pg_url, autocommit=True) as conn:
                    conn.execute(f"CREATE SCHEMA {schema}")
                sep = "&" if "?" in args.pg_url else "?"
                db_url = f"{args.pg_url}{sep}options=-csearch_path%3D{schema}"
            proc, port = _start_server(db_url, workdir)
            results = _measure_server(backend, port, args, db_url, workdir)
        finally:
            if proc is not None:
                _stop_server(proc)
            if schema is not None:
                import psycopg

                with psycopg.connect(args.pg_url, autocommit=True) as conn:
                    conn.execute(f"DROP SCHEMA {schema} CASCADE")
    return results


def _measure_server(backend: str, port: int, args: argparse.Namespace, db_url: str,
                    workdir: Path) -> dict[str, Any]:
    """Every phase against the started server, then its stats window; its log's last line on failure."""
    import httpx

    from v4runtime.errors import MonitoringError

    try:
        results = _run_loop(_measure(port, args, db_url))
    except MonitoringError as exc:  # a phase found the server gone: say which, and what the server logged
        raise MonitoringError(f"{backend}: {exc}; its log: {_log_tail(workdir)}", reason=exc.reason) from exc
    try:
        stats = httpx.get(f"http://127.0.0.1:{port}/v1/metrics/stats", params={"window": "1h"},
                          headers={"Authorization": "Bearer bench"}, timeout=30).json()
        results["stats_window_events"] = stats["events"]
    except (httpx.HTTPError, ValueError, LookupError, TypeError) as exc:
        raise MonitoringError(f"{backend}: the stats window could not be read after the phases "
                              f"({type(exc).__name__}: {exc}); its log: {_log_tail(workdir)}",
                              reason="unreachable") from exc
    return results


def _check_phases(backend: str, results: dict[str, Any]) -> None:
    """A phase without one successful answer has no latency and no throughput: fail, report nothing."""
    from v4runtime.errors import MonitoringError

    for phase in results.values():
        if isinstance(phase, dict) and "requests" in phase and "name" in phase and phase["requests"] == 0:
            raise MonitoringError(f"{backend}: phase {phase['name']!r} got no successful answer "
                                  f"({phase['errors']} errors): no figure to report", reason="empty_phase")


def _check_postgresql(url: str) -> None:
    """Fail before any measurement (not after the SQLite run) when PostgreSQL cannot be reached."""
    from v4runtime.errors import StoreError

    try:
        import psycopg
    except ImportError as exc:
        raise StoreError("the postgresql backend needs psycopg installed (or use --backend sqlite)") from exc
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreError(f"PostgreSQL at --pg-url is unreachable ({first}); start it, or use --backend sqlite",
                         reason="unreachable") from exc


# Rendering -------------------------------------------------------------------------------------
def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and value >= 1000:
        return f"{value:,.0f}{unit}"
    return f"{value:g}{unit}" if isinstance(value, float) else f"{value:,}{unit}"


def _ordered(report: dict[str, Any]) -> dict[str, Any]:
    """Backends in a fixed order (the JSON file stores keys sorted)."""
    order = ["sqlite", "postgresql"]
    found = report["backends"]
    return {b: found[b] for b in sorted(found, key=lambda b: order.index(b) if b in order else len(order))}


def render_markdown(report: dict[str, Any]) -> str:
    """bench.md: per backend, every phase with percentiles and throughput, and the targets."""
    report = {**report, "backends": _ordered(report)}
    lines = [
        f"Measured by `{report['command']}` on {report['machine']} ({report['date']}); "
        f"{report['settings']['duration_s']:g} s per phase; 1-minute load average {report['load_average_1m']:g} "
        "at the start (the load generator and the server share the same cores). "
        "Latency is client-side, from the scheduled send to the full answer; `@ N/s` phases send at a fixed "
        "rate (latency targets are checked there), `(max)` phases keep connections busy (most served). "
        "Latency and throughput are those of the successful answers (`OK`); `Failed` counts the others by "
        "status and error code, or by what broke the connection (`connection reset`, `timeout`, ...), and a "
        "target is not met by a phase with failed requests.",
        "",
    ]
    for backend, res in report["backends"].items():
        base = res["baseline /health/live"]["p99_ms"] or 1
        lines += [f"**{backend}**", "",
                  "| Phase | OK | Failed | req/s | events/s | p50 ms | p95 ms | p99 ms | p99 / baseline |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        keys = ["baseline /health/live", "log open-loop", "log max", "log batch", "baseline read rate"]
        for key, _ in READ_PHASES:
            keys += [key, f"{key} max"]
        for key in keys:
            if key not in res:  # a report written before the phase existed
                continue
            r = res[key]
            ratio = f"{r['p99_ms'] / base:.1f}×" if r["p99_ms"] else "–"
            lines.append(f"| {r['name']} | {_fmt(r['requests'])} | {_failed(r)} | {_fmt(r['requests_per_s'])} | "
                         f"{_fmt(r['events_per_s'])} | {_fmt(r['p50_ms'])} | {_fmt(r['p95_ms'])} | "
                         f"{_fmt(r['p99_ms'])} | {ratio} |")
        lines += ["", f"Stats window held {_fmt(res['stats_window_events'])} events "
                  f"({_fmt(res['preload']['events'])} preloaded in {res['preload']['seconds']:g} s).", ""]
    lines += ["**Targets on this machine**", "", "| Target | " + " | ".join(report["backends"]) + " |",
              "|---|" + "---|" * len(report["backends"])]
    for label, key, check in _targets():
        cells = [_target_cell(res[key], check) for res in report["backends"].values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _failed(phase: dict[str, Any]) -> str:
    """The Failed cell: ``0``, or the count in bold and each kind of failure with its count."""
    count = phase.get("errors", 0)
    if not count:
        return "0"
    kinds = phase.get("error_kinds")
    detail = ", ".join(f"{kind} ×{n:,}" for kind, n in kinds.items()) if kinds else "kinds not recorded"
    return f"**{count:,}** ({detail})"


def _target_cell(phase: dict[str, Any], check: Any) -> str:
    value, ok = check(phase)
    failed = phase.get("errors", 0)
    if not failed:
        return f"{value} ({'met' if ok else 'not met'})"
    # The figure is over the successful answers only: with failed requests it does not meet a target.
    return f"{value} (not met: {failed:,} failed)"


def _targets() -> list[tuple[str, str, Any]]:
    """(label, phase key, check of that phase: (figure shown, met))."""
    def p99(limit: float) -> Any:
        return lambda r: (f"{_fmt(r['p99_ms'])} ms", (r["p99_ms"] or 1e9) <= limit)

    return [
        ("/metrics/log p99 ≤ 5 ms at 1,000 req/s", "log open-loop", p99(5)),
        ("≥ 5,000 single-event requests/s", "log max",
         lambda r: (f"{_fmt(r['requests_per_s'])}/s", r["requests_per_s"] >= 5000)),
        ("≥ 100,000 events/s in batch posts", "log batch",
         lambda r: (f"{_fmt(r['events_per_s'])}/s", r["events_per_s"] >= 100_000)),
        ("/metrics/stats p99 ≤ 20 ms, 1M events in window", "stats", p99(20)),
        ("/health p99 ≤ 5 ms", "health", p99(5)),
        ("/alerts/recent p99 ≤ 5 ms", "alerts", p99(5)),
        ("/models/versions p99 ≤ 5 ms", "models", p99(5)),
    ]


_PHASE_OF = {"/health": "health", "/v1/metrics/log": "log open-loop", "/v1/metrics/stats": "stats",
             "/v1/alerts/recent": "alerts", "/v1/models/versions": "models", "/metrics": "prometheus"}


def render_endpoints(report: dict[str, Any]) -> str:
    """endpoints.md: the endpoint table of the Monitoring API page, p99 per backend from the benchmark."""
    report = {**report, "backends": _ordered(report)}
    backends = list(report["backends"])
    head = "| Endpoint | Purpose | Seed SLA | Our p99 target | " + " | ".join(f"p99 {b}" for b in backends) + " |"
    lines = [head, "|---|---|---:|---:|" + "---:|" * len(backends)]
    for method, path, purpose, sla, target in ENDPOINTS:
        cells = [_p99_cell(report["backends"][b][_PHASE_OF[path]]) for b in backends]
        lines.append(f"| `{method} {path}` | {purpose} | < {sla:g} ms | "
                     f"{'≤ ' + format(target, 'g') + ' ms' if target else '–'} | " + " | ".join(cells) + " |")
    lines += ["", f"p99 measured by `{report['command']}` ({report['date']}, {report['machine']}, "
              f"1-minute load average {report['load_average_1m']:g} at the start); "
              f"`/v1/metrics/log` at {report['settings']['log_rate']:,g} requests/s, the other endpoints "
              f"{_read_load(report['settings'])}, `/v1/metrics/stats` over a 1-hour window holding "
              f"{_fmt(min(r['stats_window_events'] for r in report['backends'].values()))}+ events."]
    return "\n".join(lines) + "\n"


def _p99_cell(phase: dict[str, Any]) -> str:
    failed = phase.get("errors", 0)
    return f"{_fmt(phase['p99_ms'])} ms" + (f" ({failed:,} failed)" if failed else "")


def _read_load(settings: dict[str, Any]) -> str:
    if "read_rate" in settings:
        return f"at {settings['read_rate']:,g} requests/s"
    return "with 4 connections kept busy"  # reports written before the fixed-rate read phases


#: Most requests one open-loop phase may schedule (rate x duration): their bodies are built beforehand.
MAX_SCHEDULED = 1_000_000
#: Most events in one batch request (about 15 MB of JSON, under the server's body limit set here).
MAX_BATCH = 100_000


def check_args(args: argparse.Namespace) -> None:
    """Reject options that give empty phases, divide by zero or exhaust memory, before a server starts."""
    from v4runtime.bench import check_output_dir, require

    require(args.duration > 0, f"--duration must be more than 0 seconds, got {args.duration:g}")
    for option, rate in (("--log-rate", args.log_rate), ("--read-rate", args.read_rate)):
        require(rate > 0, f"{option} must be more than 0 requests/s, got {rate:g}")
        scheduled = rate * args.duration
        require(scheduled >= 1, f"{option} x --duration schedules {scheduled:g} requests: at least 1 is needed")
        require(scheduled <= MAX_SCHEDULED,
                f"{option} x --duration schedules {scheduled:,.0f} requests: at most {MAX_SCHEDULED:,} per phase")
    require(1 <= args.batch_size <= MAX_BATCH,
            f"--batch-size must be between 1 and {MAX_BATCH:,}, got {args.batch_size}")
    require(args.stats_events >= 0, f"--stats-events must be 0 or more, got {args.stats_events}")
    if not args.no_write:
        check_output_dir(args.output_dir, "--output-dir")


def _render_only(out: Path) -> int:
    from v4runtime.bench import write_reports
    from v4runtime.errors import ConfigError

    source = out / "bench.json"
    try:
        report = json.loads(source.read_text(encoding="utf-8"))
        files = {out / "bench.md": render_markdown(report), out / "endpoints.md": render_endpoints(report)}
    except OSError as exc:
        raise ConfigError(f"--render-only needs {source}: {exc.strerror or exc}") from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{source} is not a report of this benchmark ({type(exc).__name__}: {exc})") from exc
    write_reports(files)
    print(f"rendered {out}/bench.md, endpoints.md from bench.json")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the benchmark, print the tables, and write the generated files."""
    from v4runtime.bench import write_reports

    if args.render_only:
        return _render_only(args.output_dir)
    if args.quick:
        args.duration, args.stats_events, args.log_rate, args.batch_size = 0.5, 2000, 200.0, 100
        args.read_rate = 100.0
    check_args(args)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    if "postgresql" in backends:
        _check_postgresql(args.pg_url)
    report: dict[str, Any] = {
        "command": "v4runtime bench monitor" + (" --quick" if args.quick else ""),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}",
        # Shared machines skew every figure: record how busy this one was when the run started.
        "load_average_1m": round(os.getloadavg()[0], 2),
        "settings": {"duration_s": args.duration, "log_rate": args.log_rate, "stats_events": args.stats_events,
                     "batch_size": args.batch_size, "read_rate": args.read_rate},
        "backends": {},
    }
    for backend in backends:
        print(f"benchmarking {backend} ...", flush=True)
        report["backends"][backend] = _bench_backend(backend, args)
        _check_phases(backend, report["backends"][backend])
    text = render_markdown(report)
    print(text)
    if not args.no_write:
        out: Path = args.output_dir
        write_reports({out / "bench.json": json.dumps(report, indent=2, sort_keys=True) + "\n",
                       out / "bench.md": text, out / "endpoints.md": render_endpoints(report)})
        print(f"wrote {out}/bench.json, bench.md, endpoints.md")
    return 0
