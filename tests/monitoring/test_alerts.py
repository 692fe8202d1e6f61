"""Alert rules: YAML validation, pending -> firing -> resolved with de-dup, and real webhook delivery."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from v4runtime.errors import ConfigError
from v4runtime.monitoring.alerts import AlertEngine, WebhookNotifier, default_rules, load_rules
from v4runtime.monitoring.alerts.rules import Rule
from v4runtime.monitoring.schemas import InferenceEvent
from v4runtime.monitoring.store import AlertRecord, open_store

NOW = datetime(2026, 11, 26, 12, 0, 30, tzinfo=UTC).timestamp()


class Receiver:
    """A webhook endpoint on 127.0.0.1 that fails its first ``failures`` requests with 500."""

    def __init__(self, failures: int = 0) -> None:
        self.payloads: list[dict] = []
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.hits += 1
                if outer.hits <= failures:
                    self.send_response(500)
                else:
                    outer.payloads.append(json.loads(body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, n: int, timeout: float = 10) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.payloads) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.payloads

    def close(self) -> None:
        self.server.shutdown()


def events(n: int, at: float, *, latency: float = 10.0, stego: float = 0.0, prefix: str = "e") -> list[InferenceEvent]:
    ts = datetime.fromtimestamp(at, UTC)
    return [InferenceEvent(request_id=f"{prefix}-{at}-{i}", timestamp=ts, model_version="v4", latency_ms=latency,
                           probability=0.5, prediction="stego" if i < stego * n else "clean") for i in range(n)]


def test_default_rules_cover_the_four_signals() -> None:
    metrics = {r.metric for r in default_rules()}
    assert metrics == {"latency_p95_ms", "error_rate", "stego_rate_shift", "fpr"}
    assert all(r.runbook_url and r.severity for r in default_rules())


def test_rule_files_are_validated_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text("rules:\n  - {name: X, metric: latency_p95_ms, window: 90s, threshold: 1}\n")
    with pytest.raises(ConfigError, match=r"rules\[0\]\.window"):
        load_rules(bad)
    bad.write_text("rules:\n  - {name: X, metric: nope, window: 5m, threshold: 1}\n")
    with pytest.raises(ConfigError, match="unknown metric"):
        load_rules(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_rules(tmp_path / "missing.yaml")
    # Before: the second `rules:` silently replaced the first, and its rules were lost unseen.
    bad.write_text("rules:\n  - {name: A, metric: fpr, window: 5m, threshold: 1}\nrules: []\n")
    with pytest.raises(ConfigError, match=r"not valid YAML: line 3: duplicate key 'rules' \(first on line 1\)"):
        load_rules(bad)


def test_pending_firing_resolved_with_dedup_and_suppression(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/a.db")
    sent: list[AlertRecord] = []
    rule = Rule.model_validate({"name": "SlowScans", "metric": "latency_p95_ms", "window": "5m", "threshold": 100,
                                "for": "2m", "severity": "critical", "labels": {"team": "t"},
                                "runbook_url": "http://x/runbook", "min_events": 10})
    engine = AlertEngine(store, [rule], lambda a: sent.append(AlertRecord(**vars(a))))
    try:
        assert engine.evaluate(NOW) == []  # no data: quiet
        store.write_events(events(50, NOW, latency=500))
        [change] = engine.evaluate(NOW)
        assert change.alert.status == "pending" and sent == []
        assert engine.evaluate(NOW + 60) == []  # still pending, same alert (de-dup)
        store.write_events(events(50, NOW + 120, latency=500))
        [change] = engine.evaluate(NOW + 125)
        assert change.alert.status == "firing" and [a.status for a in sent] == ["firing"]
        assert engine.evaluate(NOW + 130) == [] and len(sent) == 1  # firing again: no new notification
        assert len(store.recent_alerts(limit=10, severity=None, active_only=False)) == 1
        # Ten minutes later the window holds no slow scans: resolved, notified once.
        store.write_events(events(50, NOW + 600, latency=5))
        [change] = engine.evaluate(NOW + 600)
        assert change.alert.status == "resolved" and [a.status for a in sent] == ["firing", "resolved"]
        assert sent[1].labels == {"alertname": "SlowScans", "severity": "critical", "team": "t"}

        # A new episode, acknowledged with suppression: it fires but sends nothing until suppress_until.
        store.write_events(events(50, NOW + 900, latency=500, prefix="again"))
        [pending] = engine.evaluate(NOW + 900)
        pending.alert.suppress_until = NOW + 3600
        store.update_alert(pending.alert)
        store.write_events(events(50, NOW + 1020, latency=500, prefix="again2"))
        [fired] = engine.evaluate(NOW + 1030)
        assert fired.alert.status == "firing" and len(sent) == 2
    finally:
        store.close()


def test_stego_rate_shift_compares_with_the_previous_window(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    rule = Rule.model_validate({"name": "Shift", "metric": "stego_rate_shift", "window": "10m", "threshold": 0.1,
                                "min_events": 20})
    engine = AlertEngine(store, [rule])
    try:
        store.write_events(events(100, NOW - 700, stego=0.05, prefix="before"))
        store.write_events(events(100, NOW, stego=0.05, prefix="same"))
        assert engine.evaluate(NOW) == []
        assert engine.last_values["Shift"] == pytest.approx(0.0)
        store.write_events(events(100, NOW + 600, stego=0.40, prefix="after"))
        [change] = engine.evaluate(NOW + 600)
        assert change.alert.status == "firing" and change.alert.value == pytest.approx(0.35)
    finally:
        store.close()


def test_webhook_retries_with_backoff_and_sends_alertmanager_json() -> None:
    receiver = Receiver(failures=2)
    notifier = WebhookNotifier([receiver.url], external_url="http://mon.example", backoff_s=0.05)
    alert = AlertRecord(id=7, fingerprint="f" * 16, rule="ErrorRateHigh", status="firing", severity="critical",
                        value=0.2, threshold=0.05, labels={"alertname": "ErrorRateHigh", "severity": "critical"},
                        annotations={"summary": "s", "runbook_url": "http://x/rb"}, starts_at=NOW, ends_at=None,
                        updated_at=NOW)
    try:
        t0 = time.monotonic()
        from v4runtime.monitoring.alerts import alertmanager_payload

        assert notifier.deliver(receiver.url, alertmanager_payload(alert, external_url="http://mon.example"))
        assert receiver.hits == 3 and notifier.attempts == 3
        assert time.monotonic() - t0 >= 0.05 + 0.1  # backoff doubled between tries
        [payload] = receiver.payloads
        assert set(payload) == {"version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels",
                                "commonLabels", "commonAnnotations", "externalURL", "alerts"}
        assert payload["version"] == "4" and payload["status"] == "firing"
        [item] = payload["alerts"]
        assert set(item) == {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
        assert item["endsAt"] == "0001-01-01T00:00:00Z" and item["annotations"]["runbook_url"] == "http://x/rb"
        # A dead endpoint: gives up after max_attempts, counted.
        dead = WebhookNotifier(["http://127.0.0.1:9/none"], max_attempts=2, backoff_s=0.01)
        assert not dead.deliver("http://127.0.0.1:9/none", payload) and dead.failed == 1
    finally:
        notifier.stop()
        receiver.close()


def test_server_evaluates_on_ingest_and_posts_the_webhook(server_factory, tmp_path: Path) -> None:
    receiver = Receiver()
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        "  - {name: ErrorsNow, metric: error_rate, window: 1m, comparison: '>=', threshold: 0.5, for: 0s,\n"
        "     severity: critical, min_events: 5, runbook_url: 'http://127.0.0.1:8000/operations/runbook/'}\n"
    )
    config = tmp_path / "monitor.yaml"
    config.write_text(f"monitor:\n  alert_rules: {rules}\n  webhook_urls: ['{receiver.url}']\n  alert_interval_s: 60\n")
    server = server_factory(config=str(config))
    try:
        failed = [{"model_version": "v4", "latency_ms": 5, "error": "truncated"} for _ in range(10)]
        assert httpx.post(f"{server.url}/v1/metrics/log", json={"events": failed}).status_code == 202
        [payload] = receiver.wait(1)  # well before the 60 s timer: evaluated on ingest
        assert payload["status"] == "firing" and payload["groupLabels"] == {"alertname": "ErrorsNow"}
        alerts = httpx.get(f"{server.url}/v1/alerts/recent", params={"active_only": True}).json()["alerts"]
        assert [a["status"] for a in alerts] == ["firing"] and alerts[0]["severity"] == "critical"
        until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        acked = httpx.post(f"{server.url}/v1/alerts/{alerts[0]['id']}/acknowledge",
                           json={"by": "oncall", "suppress_until": until}).json()
        assert acked["acknowledged_by"] == "oncall" and acked["suppress_until"]
        assert httpx.get(f"{server.url}/v1/alerts/recent", params={"severity": "info"}).json()["alerts"] == []
    finally:
        receiver.close()
