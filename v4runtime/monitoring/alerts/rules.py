"""Alert rules: the YAML format, its validation, and the default rule set.

A rules file holds ``rules:``, a list of mappings::

    rules:
      - name: LatencyP95High
        metric: latency_p95_ms      # see METRICS
        window: 5m                  # whole minutes (rules read minute aggregates)
        comparison: ">"             # >, >=, <, <=
        threshold: 250
        for: 2m                     # how long the condition holds while pending before it fires
        severity: warning           # info | warning | critical
        labels: {team: detection}
        runbook_url: http://127.0.0.1:8000/operations/runbook/
        min_events: 20              # fewer events in the window: no data, the rule stays quiet
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from v4runtime import strict_yaml
from v4runtime.errors import ConfigError

#: Metric name -> description. ``stego_rate_shift`` is |stego rate now - stego rate in the previous window|.
METRICS: dict[str, str] = {
    "events": "events in the window",
    "throughput_per_s": "events per second over the window",
    "error_rate": "failed scans / all events",
    "latency_mean_ms": "mean latency",
    "latency_p50_ms": "median latency",
    "latency_p95_ms": "95th percentile latency",
    "latency_p99_ms": "99th percentile latency",
    "stego_rate": "stego predictions / successful scans",
    "stego_rate_shift": "absolute change of the stego rate against the previous window",
    "mean_probability": "mean stego probability",
    "fpr": "false-positive rate on labelled clean traffic",
    "tpr": "true-positive rate on labelled stego traffic",
}

COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | int | float) -> int:
    """``"90s"``, ``"5m"``, ``"1h"``, ``"7d"`` (or a number of seconds) -> seconds.

    Raises:
        ValueError: not a duration.
    """
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text < 0:
            raise ValueError("a duration cannot be negative")
        return int(text)
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 5m, 1h, 7d)")
    return int(match.group(1)) * _UNITS[match.group(2)]


class Rule(BaseModel):
    """One alert rule."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
    metric: str
    window_s: int = Field(alias="window")
    comparison: Literal[">", ">=", "<", "<="] = ">"
    threshold: float
    for_s: int = Field(default=0, alias="for")
    severity: Literal["info", "warning", "critical"] = "warning"
    labels: dict[str, str] = Field(default_factory=dict)
    runbook_url: str | None = None
    summary: str | None = None
    min_events: int = Field(default=1, ge=1)
    model_version: str | None = None

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in METRICS:
            raise ValueError(f"unknown metric {value!r}; known: {', '.join(METRICS)}")
        return value

    @field_validator("window_s", "for_s", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> int:
        return parse_duration(value)

    @field_validator("window_s")
    @classmethod
    def _whole_minutes(cls, value: int) -> int:
        if value < 60 or value % 60:
            raise ValueError("window must be whole minutes (at least 1m)")
        return value

    def holds(self, value: float) -> bool:
        """Whether ``value`` breaches the rule."""
        return COMPARISONS[self.comparison](value, self.threshold)

    def describe(self) -> str:
        """One line: what the rule watches."""
        return f"{self.metric} {self.comparison} {self.threshold:g} over {self.window_s // 60}m"


def _parse(data: Any, origin: str) -> list[Rule]:
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        raise ConfigError(f"{origin}: expected a mapping with a 'rules' list")
    rules: list[Rule] = []
    for i, item in enumerate(data["rules"]):
        try:
            rules.append(Rule.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "rule"
            raise ConfigError(f"{origin}: rules[{i}].{where}: {first['msg']}") from exc
    names = [r.name for r in rules]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{origin}: duplicate rule names: {', '.join(dupes)}")
    return rules


def load_rules(path: str | Path) -> list[Rule]:
    """Read rules from a YAML file.

    Raises:
        ConfigError: missing file, bad YAML, or an invalid rule (the message names the field).
    """
    file = Path(path)
    try:
        data = strict_yaml.load(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"alert rules file not found: {file}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"alert rules file {file} is not valid YAML: {strict_yaml.describe(exc)}") from exc
    return _parse(data, str(file))


def default_rules() -> list[Rule]:
    """The rules shipped with the package: latency p95, error rate, stego-rate shift, FPR."""
    text = resources.files("v4runtime.monitoring").joinpath("default_rules.yaml").read_text(encoding="utf-8")
    return _parse(strict_yaml.load(text), "default_rules.yaml")
