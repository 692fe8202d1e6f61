"""Prometheus exposition: HTTP counters and durations, ingest counters, inference latency histograms.

The inference latency histogram (by ``model_version``) is fed from the writer's per-batch minute
aggregates rather than one ``observe()`` per event; its ``le`` bounds are every third log bucket of
:mod:`v4runtime.monitoring.buckets`, so its counts are exact.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from v4runtime.monitoring.buckets import BOUNDS_MS, N_BUCKETS
from v4runtime.monitoring.store.base import WriteResult

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_EXPORTED = tuple(range(2, len(BOUNDS_MS), 3))  # bucket indexes whose upper bound becomes an `le`


class _LatencyCollector(Collector):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hist: dict[str, list[int]] = {}
        self._sum: dict[str, float] = {}

    def add(self, result: WriteResult) -> None:
        with self._lock:
            for (_, version), agg in result.groups.items():
                hist = self._hist.setdefault(version, [0] * N_BUCKETS)
                for i, n in enumerate(agg.hist):
                    hist[i] += n
                self._sum[version] = self._sum.get(version, 0.0) + agg.lat_sum

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            "v4_inference_latency_seconds",
            "Latency of the inferences reported to /metrics/log",
            labels=["model_version"],
        )
        with self._lock:
            for version, hist in sorted(self._hist.items()):
                buckets, cumulative, stop = [], 0, 0
                for idx in _EXPORTED:
                    cumulative += sum(hist[stop : idx + 1])
                    stop = idx + 1
                    buckets.append((f"{BOUNDS_MS[idx] / 1000:.6g}", cumulative))
                buckets.append(("+Inf", sum(hist)))
                family.add_metric([version], buckets, self._sum[version] / 1000)
        yield family


def route_label(scope: dict[str, Any]) -> str:
    """The matched route as a template (``/v1/alerts/{alert_id}/acknowledge``), or ``unmatched``.

    Built from the request path with path parameters put back as names: included routers keep their own
    relative ``route.path``, so the full template is not on the route object. Unbounded label values
    (ids) never reach Prometheus this way.
    """
    if "route" not in scope:
        return "unmatched"
    segments = scope.get("path", "").split("/")
    for name, value in scope.get("path_params", {}).items():
        segments = [f"{{{name}}}" if seg == str(value) else seg for seg in segments]
    return "/".join(segments)


class Metrics:
    """Every metric of one app instance, in its own registry (apps in one process do not clash)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "v4_http_requests", "HTTP requests served", ["method", "route", "status"], registry=self.registry
        )
        self.duration = Histogram(
            "v4_http_request_duration_seconds",
            "Time to answer HTTP requests",
            ["route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.events = Counter(
            "v4_events_ingested", "Inference events stored", ["model_version"], registry=self.registry
        )
        self.duplicates = Counter(
            "v4_events_duplicate", "Events skipped because their request_id was stored", registry=self.registry
        )
        self.commits = Counter("v4_ingest_commits", "Group commits of the batch writer", registry=self.registry)
        self.latency = _LatencyCollector()
        self.registry.register(self.latency)
        self.status_classes: dict[str, int] = {"2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0}
        # Labelled children by (method, route, status): .labels() takes a lock and builds a key each call.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def gauge(self, name: str, doc: str, fn: Callable[[], float]) -> None:
        """Register a gauge read at scrape time."""
        Gauge(name, doc, registry=self.registry).set_function(fn)

    def observe_request(self, scope: dict[str, Any], status: int, seconds: float) -> None:
        """Count one HTTP request (called by the edge middleware)."""
        path = route_label(scope)
        method = scope.get("method", "?")
        children = self._children.get((method, path, status))
        if children is None:
            children = (self.requests.labels(method, path, str(status)), self.duration.labels(path))
            if len(self._children) < 10_000:  # routes are bounded; this only guards memory
                self._children[(method, path, status)] = children
        children[0].inc()
        children[1].observe(seconds)
        cls = f"{status // 100}xx"
        self.status_classes[cls] = self.status_classes.get(cls, 0) + 1

    def observe_commit(self, result: WriteResult) -> None:
        """Count a group commit (called on the writer thread)."""
        self.commits.inc()
        per_version: dict[str, int] = {}
        for (_, version), agg in result.groups.items():
            per_version[version] = per_version.get(version, 0) + agg.n
        for version, n in per_version.items():
            self.events.labels(version).inc(n)
        self.latency.add(result)

    def exposition(self) -> bytes:
        """The text format."""
        return generate_latest(self.registry)
