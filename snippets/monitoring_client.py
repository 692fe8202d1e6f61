"""Report inferences to the V4 monitoring API and read the stats back.

Run it against a server (``v4runtime monitor serve``)::

    V4_MONITOR_URL=http://127.0.0.1:8400 V4_MONITOR_TOKEN=my-write-token python snippets/monitoring_client.py

Tested by tests/monitoring/test_client.py against a real server on 127.0.0.1.
"""

from __future__ import annotations

import os
import random
import time

from v4runtime.client import MonitoringClient

# --8<-- [start:setup]
url = os.environ.get("V4_MONITOR_URL", "http://127.0.0.1:8400")
token = os.environ.get("V4_MONITOR_TOKEN")  # a write token; None when the server runs without auth

client = MonitoringClient(
    url,
    token=token,
    timeout=2.0,  # seconds per HTTP request
    batch_size=200,  # events per POST
    max_buffer=10_000,  # events held while the server is slow or down; beyond it they are dropped
    flush_interval=0.5,  # seconds between background flushes
)
# --8<-- [end:setup]

# --8<-- [start:log]
for _ in range(500):
    started = time.perf_counter()
    probability = random.random() * 0.1  # stands in for Scanner.scan(...)
    client.log(
        model_version="v4-default",
        latency_ms=(time.perf_counter() - started) * 1000 + 8.0,
        probability=probability,
        prediction="stego" if probability >= 0.5 else "clean",
        image_format="png",
        pod=os.environ.get("HOSTNAME", "local"),
    )  # returns at once; never raises, even when the server is down
# --8<-- [end:log]

# --8<-- [start:close]
client.close()  # flushes what is buffered (bounded by a timeout)
counters = client.counters
print(f"sent={counters.sent} dropped={counters.dropped} retries={counters.retries}")
# --8<-- [end:close]

# --8<-- [start:read]
with MonitoringClient(url, token=token) as reader:
    stats = reader.stats("1h", model_version="v4-default")
    print(f"events={stats.events} p95={stats.latency_ms.p95:.1f}ms stego_rate={stats.stego_rate:.3f}")
# --8<-- [end:read]
