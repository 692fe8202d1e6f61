"""A 202 means durable: kill -9 the server under load, then count every acknowledged id in the store."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid

import httpx

from v4runtime.monitoring.store import open_store


def _load(url: str, acked: list[str], stop: threading.Event, errors: list[str]) -> None:
    with httpx.Client(timeout=5) as client:
        while not stop.is_set():
            events = [{"request_id": uuid.uuid4().hex, "model_version": "v4-kill", "latency_ms": 3.0,
                       "probability": 0.1, "prediction": "clean"} for _ in range(25)]
            try:
                response = client.post(f"{url}/v1/metrics/log", json={"events": events})
            except httpx.HTTPError:
                return  # the server is gone
            if response.status_code == 202:
                acked.extend(response.json()["ids"])
            else:
                errors.append(response.text)


def test_sigkill_under_load_loses_no_acknowledged_event(server_factory, store_url: str) -> None:
    server = server_factory(store_url)
    acked: list[str] = []
    errors: list[str] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_load, args=(server.url, acked, stop, errors)) for _ in range(6)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while len(acked) < 3000 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(server.proc.pid, signal.SIGKILL)  # mid-load: requests are in flight
    server.proc.wait(10)
    stop.set()
    for thread in threads:
        thread.join(10)
    assert not errors, errors[:3]
    assert len(acked) >= 1000, f"load too small to prove anything: {len(acked)} acknowledged"

    store = open_store(store_url)
    try:
        stored = store.existing_ids(acked)
        missing = len(acked) - len(stored)
        print(f"\n{store.backend}: {len(acked)} acknowledged before SIGKILL, {missing} missing, "
              f"{store.count_events()} stored in total")
        assert missing == 0
        # The minute aggregates were committed in the same transactions.
        start = int(time.time() // 60) * 60 - 120
        total = sum(agg.n for _, agg in store.read_minutes(start, start + 300))
        assert total == store.count_events()
    finally:
        store.close()
