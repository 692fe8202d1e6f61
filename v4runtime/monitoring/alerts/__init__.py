"""Alerting: YAML rules, their evaluation (pending -> firing -> resolved) and webhook delivery."""

from v4runtime.monitoring.alerts.engine import AlertEngine
from v4runtime.monitoring.alerts.rules import Rule, default_rules, load_rules, parse_duration
from v4runtime.monitoring.alerts.webhook import WebhookNotifier, alertmanager_payload

__all__ = [
    "AlertEngine",
    "Rule",
    "WebhookNotifier",
    "alertmanager_payload",
    "default_rules",
    "load_rules",
    "parse_duration",
]
