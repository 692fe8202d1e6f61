"""Rule evaluation with Prometheus semantics: pending for ``for``, then firing, then resolved.

Each rule has at most one active alert (pending or firing), identified by its fingerprint, so repeated
evaluations update that alert instead of raising a new one (de-duplication). Notifications go out on
the transitions to firing and to resolved only, and not while an acknowledgement suppresses them.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from v4runtime.monitoring.aggregates import MinuteAgg
from v4runtime.monitoring.alerts.rules import Rule
from v4runtime.monitoring.store import AlertRecord, Store

log = logging.getLogger(__name__)


def fingerprint(rule: Rule) -> str:
    """Stable id of a rule's alert series (name + labels)."""
    key = rule.name + "|" + "|".join(f"{k}={v}" for k, v in sorted(rule.labels.items()))
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass
class Transition:
    """What an evaluation changed for one alert."""

    alert: AlertRecord
    previous: str | None


def _window_agg(store: Store, end: int, window_s: int, model_version: str | None) -> MinuteAgg:
    total = MinuteAgg()
    for _, agg in store.read_minutes(end - window_s, end, model_version):
        total.merge(agg)
    return total


def measure(store: Store, rule: Rule, now: float) -> float | None:
    """The rule's metric over its window ending now; ``None`` when there is not enough data."""
    end = int(now // 60) * 60 + 60  # include the current, partial minute
    agg = _window_agg(store, end, rule.window_s, rule.model_version)
    metric = rule.metric
    population = {
        "error_rate": agg.n,
        "events": rule.min_events,
        "throughput_per_s": rule.min_events,
        "stego_rate": agg.ok,
        "stego_rate_shift": agg.ok,
        "mean_probability": agg.ok,
        "fpr": agg.fp + agg.tn,
        "tpr": agg.tp + agg.fn_,
    }.get(metric, agg.n)
    if population < rule.min_events:
        return None
    if metric == "events":
        return float(agg.n)
    if metric == "throughput_per_s":
        return agg.n / rule.window_s
    if metric == "error_rate":
        return agg.error_rate()
    if metric == "latency_mean_ms":
        return agg.lat_sum / agg.n
    if metric.startswith("latency_p"):
        return agg.latency(int(metric[len("latency_p") : -len("_ms")]) / 100)
    if metric == "stego_rate":
        return agg.stego_rate()
    if metric == "mean_probability":
        return agg.prob_sum / agg.ok
    if metric == "fpr":
        return agg.fpr()
    if metric == "tpr":
        return agg.tpr()
    if metric == "stego_rate_shift":
        before = _window_agg(store, end - rule.window_s, rule.window_s, rule.model_version)
        if before.ok < rule.min_events:
            return None
        return abs((agg.stego_rate() or 0.0) - (before.stego_rate() or 0.0))
    raise ValueError(f"unknown metric {metric}")  # pragma: no cover - rules are validated


class AlertEngine:
    """Evaluates rules against the store and hands transitions to a notifier.

    Args:
        store: where aggregates are read and alerts kept.
        rules: the rules.
        notify: called with each alert that started firing or resolved (and is not suppressed).
        interval_s: timer period of the background thread.
        min_gap_s: an ingest triggers an evaluation at most this often.
    """

    def __init__(
        self,
        store: Store,
        rules: Sequence[Rule],
        notify: Callable[[AlertRecord], None] | None = None,
        *,
        interval_s: float = 15.0,
        min_gap_s: float = 1.0,
    ) -> None:
        self.store = store
        self.rules = list(rules)
        self._notify = notify
        self.interval_s = interval_s
        self.min_gap_s = min_gap_s
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.evaluations = 0
        self.last_values: dict[str, float | None] = {}

    def evaluate(self, now: float | None = None) -> list[Transition]:
        """Evaluate every rule once at ``now`` (epoch seconds); returns the state changes."""
        now = time.time() if now is None else now
        with self._lock:
            active = {a.fingerprint: a for a in self.store.active_alerts()}
            changes: list[Transition] = []
            for rule in self.rules:
                try:
                    change = self._evaluate_rule(rule, active.get(fingerprint(rule)), now)
                except Exception:  # noqa: BLE001 - one broken rule must not stop the others
                    log.exception("rule %s failed to evaluate", rule.name)
                    continue
                if change is not None:
                    changes.append(change)
            self.evaluations += 1
        for change in changes:
            started = change.alert.status == "firing" and change.previous != "firing"
            ended = change.alert.status == "resolved" and change.previous == "firing"
            if started or ended:
                self._deliver(change.alert, now)
        return changes

    def _evaluate_rule(self, rule: Rule, active: AlertRecord | None, now: float) -> Transition | None:
        value = measure(self.store, rule, now)
        self.last_values[rule.name] = value
        breached = value is not None and rule.holds(value)
        if breached:
            assert value is not None
            if active is None:
                alert = AlertRecord(
                    id=0, fingerprint=fingerprint(rule), rule=rule.name,
                    status="firing" if rule.for_s == 0 else "pending", severity=rule.severity,
                    value=value, threshold=rule.threshold,
                    labels={"alertname": rule.name, "severity": rule.severity, **rule.labels},
                    annotations=self._annotations(rule), starts_at=now, ends_at=None, updated_at=now,
                )
                alert.id = self.store.insert_alert(alert)
                return Transition(alert, None)
            previous = active.status
            active.value, active.updated_at = value, now
            if active.status == "pending" and now - active.starts_at >= rule.for_s:
                active.status = "firing"
            self.store.update_alert(active)
            return Transition(active, previous) if active.status != previous else None
        if active is None:
            return None
        previous = active.status
        active.status, active.ends_at, active.updated_at = "resolved", now, now
        if value is not None:
            active.value = value
        self.store.update_alert(active)
        return Transition(active, previous)

    @staticmethod
    def _annotations(rule: Rule) -> dict[str, str]:
        notes = {"summary": rule.summary or f"{rule.name}: {rule.describe()}", "description": rule.describe()}
        if rule.runbook_url:
            notes["runbook_url"] = rule.runbook_url
        return notes

    def _deliver(self, alert: AlertRecord, now: float) -> None:
        if alert.suppress_until is not None and now < alert.suppress_until:
            return
        if self._notify is not None:
            self._notify(alert)
        alert.notified = alert.status
        self.store.update_alert(alert)

    # Background thread ----------------------------------------------------------------------
    def start(self) -> None:
        """Evaluate on a timer and shortly after ingests (see :meth:`poke`)."""
        self._thread = threading.Thread(target=self._run, name="v4-alert-engine", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """Ask for an evaluation soon (called after each committed batch)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop the background thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            if self._stop.is_set():
                break
            self._wake.clear()
            try:
                self.evaluate()
            except Exception:  # noqa: BLE001 - keep the timer alive when the store hiccups
                log.exception("alert evaluation failed")
            self._stop.wait(self.min_gap_s)
