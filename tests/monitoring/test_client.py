"""The client library against real servers: batching, flush on close, typed results, never blocking."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from v4runtime.client import AsyncMonitoringClient, MonitoringClient
from v4runtime.errors import MonitoringError
from v4runtime.monitoring.schemas import Stats

REPO = Path(__file__).resolve().parents[2]


def _dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens once closed


def test_client_batches_flushes_on_close_and_returns_typed_stats(open_server) -> None:
    client = MonitoringClient(open_server.url, batch_size=100, flush_interval=5)
    for i in range(1050):
        assert client.log(model_version="v4-client", latency_ms=5.0 + i % 10, probability=0.2, prediction="clean")
    client.close()
    assert client.counters.sent == 1050 and client.counters.dropped == 0 and client.counters.buffered == 0
    with MonitoringClient(open_server.url) as reader:
        stats = reader.stats("1h", model_version="v4-client")
        assert isinstance(stats, Stats) and stats.events == 1050
        assert reader.health().status == "ok"
        assert reader.model_versions().versions is not None
        with pytest.raises(MonitoringError) as info:
            reader.stats("forever")
        assert info.value.status_code == 422 and info.value.reason == "validation_error"
        assert info.value.request_id


def test_invalid_events_are_counted_not_raised(open_server) -> None:
    with MonitoringClient(open_server.url) as client:
        assert client.log(model_version="v4", latency_ms=-5) is False
        assert client.counters.invalid == 1


def test_logging_never_blocks_when_the_server_is_down() -> None:
    client = MonitoringClient(_dead_url(), max_buffer=100, batch_size=50, flush_interval=0.05,
                              max_retries=1, backoff=0.01, timeout=0.5)
    t0 = time.perf_counter()
    results = [client.log(model_version="v4", latency_ms=1.0) for _ in range(1000)]
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0  # generous: each log() is a buffer append, no I/O
    assert results.count(True) <= 150 and client.counters.dropped >= 850
    with pytest.raises(MonitoringError) as info:
        client.health()
    assert info.value.reason == "unreachable"
    client.close(timeout=0.5)
    counters = client.counters  # a batch may still be out: every event is in one of the counts
    assert counters.sent == 0 and counters.dropped + counters.in_flight == 1000 and counters.buffered == 0
    client._thread.join(10)
    assert client.counters.dropped == 1000 and client.counters.in_flight == 0
    with pytest.raises(MonitoringError, match="closed"):
        client.health()


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A monitoring API that accepts connections (the kernel's backlog) and never answers."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as server:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def _wait_in_flight(client: MonitoringClient, n: int) -> None:
    deadline = time.monotonic() + 10
    while client._inflight != n:
        assert time.monotonic() < deadline, "the sender never took the batch"
        time.sleep(0.01)


def test_close_keeps_one_time_budget_and_counts_a_batch_still_out(silent_url: str, caplog) -> None:
    client = MonitoringClient(silent_url, timeout=3.0, flush_interval=0.01, max_retries=0)
    for _ in range(3):
        client.log(model_version="v4", latency_ms=1.0)
    _wait_in_flight(client, 3)
    client.log(model_version="v4", latency_ms=1.0)  # held in the buffer behind the stuck request
    started = time.monotonic()
    with caplog.at_level("WARNING", logger="v4runtime.client"):
        client.close(timeout=1.0)
    # Before: flush (1 s) and then the sender's join (1 s more), 2 s for a 1 s budget.
    assert time.monotonic() - started < 1.6
    assert "events unsent: 1 dropped, 3 in a request still out" in caplog.text
    assert client.counters.in_flight == 3 and client.counters.dropped == 1
    client._thread.join(10)  # the request times out; the sender gives the batch back to a closed buffer
    assert not client._thread.is_alive()
    counters = client.counters
    assert counters.in_flight == 0
    # Before: the batch came back to the buffer after close and was never counted as dropped.
    assert (counters.sent, counters.dropped, counters.buffered) == (0, 4, 0)


def test_aclose_counts_a_cancelled_send_as_dropped(silent_url: str) -> None:
    async def main() -> tuple[int, int, int]:
        client = AsyncMonitoringClient(silent_url, timeout=30.0, flush_interval=0.01, max_retries=0)
        for _ in range(3):
            client.log(model_version="v4", latency_ms=1.0)
        deadline = time.monotonic() + 10
        while client._inflight != 3:
            assert time.monotonic() < deadline, "the sender never took the batch"
            await asyncio.sleep(0.01)
        await client.aclose(timeout=0.2)
        counters = client.counters
        return counters.sent, counters.dropped, counters.buffered

    # Before: cancelling the send lost the batch from every counter, (0, 0, 0).
    assert asyncio.run(main()) == (0, 3, 0)


def test_a_transport_that_raises_unexpectedly_costs_its_batch_not_the_sender(caplog) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise ValueError("a transport bug")  # not an httpx error: before, it ended the sender thread
        return httpx.Response(202, json={"accepted": 1})

    client = MonitoringClient("http://monitor.invalid", batch_size=2, flush_interval=0.01, backoff=0.01,
                              transport=httpx.MockTransport(handler))
    with caplog.at_level("ERROR", logger="v4runtime.client"):
        client.log(model_version="v4", latency_ms=1.0)
        client.log(model_version="v4", latency_ms=1.0)
        _wait(lambda: client.counters.dropped == 2)
        client.log(model_version="v4", latency_ms=1.0)
        assert client.flush(timeout=10)
    client.close()
    assert client._thread.is_alive() is False
    assert (client.counters.sent, client.counters.dropped) == (1, 2)
    assert "sending 2 events failed unexpectedly" in caplog.text


def test_async_sender_survives_a_transport_that_raises_unexpectedly() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise ValueError("a transport bug")
        return httpx.Response(202, json={"accepted": 1})

    async def main() -> tuple[int, int]:
        client = AsyncMonitoringClient("http://monitor.invalid", batch_size=2, flush_interval=0.01, backoff=0.01,
                                       transport=httpx.MockTransport(handler))
        client.log(model_version="v4", latency_ms=1.0)
        client.log(model_version="v4", latency_ms=1.0)
        deadline = time.monotonic() + 10
        while client.counters.dropped < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        client.log(model_version="v4", latency_ms=1.0)
        assert await client.flush(timeout=10)
        await client.aclose()
        return client.counters.sent, client.counters.dropped

    assert asyncio.run(main()) == (1, 2)  # before: the task ended and the third event was never sent


def _wait(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "condition not met within 10 s"
        time.sleep(0.01)


def test_retries_on_429_honouring_retry_after(server_factory) -> None:
    server = server_factory(env={"V4_MONITOR__RATE_LIMIT_PER_SECOND": "2", "V4_MONITOR__RATE_LIMIT_BURST": "2"})
    client = MonitoringClient(server.url, batch_size=10, flush_interval=0.01, max_retries=5, backoff=0.1)
    for _ in range(60):
        client.log(model_version="v4", latency_ms=1.0)
    assert client.flush(timeout=20)
    client.close()
    assert client.counters.sent == 60 and client.counters.retries > 0 and client.counters.dropped == 0


def test_async_client(open_server) -> None:
    async def main() -> tuple[int, int]:
        async with AsyncMonitoringClient(open_server.url, batch_size=64, flush_interval=5) as client:
            for _ in range(300):
                client.log(model_version="v4-async", latency_ms=2.0, probability=0.9, prediction="stego")
        stats_client = AsyncMonitoringClient(open_server.url)
        stats = await stats_client.stats("1h", model_version="v4-async")
        await stats_client.aclose()
        return client.counters.sent, stats.events

    sent, stored = asyncio.run(main())
    assert sent == 300 and stored == 300


def test_documented_snippet_runs_against_a_real_server(open_server) -> None:
    env = {**os.environ, "V4_MONITOR_URL": open_server.url}
    env.pop("V4_MONITOR_TOKEN", None)
    result = subprocess.run([sys.executable, str(REPO / "snippets" / "monitoring_client.py")], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "sent=500 dropped=0" in result.stdout
    assert "events=500" in result.stdout
