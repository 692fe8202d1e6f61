"""Request and response models of the monitoring API (pydantic v2).

These models are the single source of the OpenAPI document and are shared with
:mod:`v4runtime.client`, which returns them as typed results. This module imports only pydantic and
the standard library (never FastAPI), so the client stays light.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from v4runtime.monitoring.ids import new_id

Prediction = Literal["clean", "stego"]
Window = Literal["5m", "15m", "1h", "6h", "24h", "7d"]
Granularity = Literal["1m", "5m", "1h"]
Severity = Literal["info", "warning", "critical"]
AlertStatus = Literal["pending", "firing", "resolved"]

#: Window and granularity names in seconds.
DURATIONS: dict[str, int] = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800}

def _not_bool(value: Any) -> Any:
    # JSON true/false must not pass as 1/0 (pydantic's lax mode would accept them for numbers).
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


def _no_nul(value: str) -> str:
    # PostgreSQL cannot store U+0000 in text: refused here (422), not by the database (which failed the
    # whole group commit, other callers' events included).
    if "\x00" in value:
        raise ValueError("must not contain a NUL character (\\u0000)")
    return value


def _iso_only(value: object, name: str) -> object:
    # pydantic would take a number, or a string of one ("1764690000", "-1.5"), as Unix time; the API
    # takes ISO 8601 only. (No float() attempt: its exception would cost every event of a batch.)
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, str) and not value.lstrip("+-").replace(".", "", 1).isdigit():
        return value
    raise ValueError(f"{name} must be an ISO 8601 date-time string")


Num = Annotated[float, BeforeValidator(_not_bool)]
Int = Annotated[int, BeforeValidator(_not_bool)]
#: Free text that is stored: any characters but NUL.
Text = Annotated[str, AfterValidator(_no_nul)]
#: Largest integer a BIGINT column holds (both backends store integers as signed 64-bit).
MAX_INT64 = (1 << 63) - 1

_ID_PATTERN = r"^[A-Za-z0-9._:\-]{1,128}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InferenceEvent(_Strict):
    """One inference as reported by a scanner: what was scanned, what the model said, how long it took."""

    request_id: str | None = Field(
        default=None,
        pattern=_ID_PATTERN,
        description="Caller's id of the inference; the idempotency key (a retried event is stored once). "
        "Generated when absent.",
    )
    timestamp: datetime | None = Field(
        default=None,
        description="When the inference ran (UTC); defaults to now. At most 1 hour ahead, and not older than "
        "the store's retention (`retention_days`, 30 by default): such an event would be deleted unseen.",
    )
    model_version: str = Field(min_length=1, max_length=64, pattern=_ID_PATTERN)
    latency_ms: Num = Field(ge=0, le=3_600_000, description="End-to-end inference latency in milliseconds.")
    probability: Num | None = Field(default=None, ge=0, le=1, description="Stego probability; null on error.")
    prediction: Prediction | None = Field(default=None, description="Decision at the threshold; null on error.")
    method: Text | None = Field(default=None, max_length=32, description="Most likely embedding method, if any.")
    image_format: Text | None = Field(default=None, max_length=16, description="Container format, e.g. png.")
    image_bytes: Int | None = Field(default=None, ge=0, le=1 << 40)
    width: Int | None = Field(default=None, ge=0, le=1 << 20)
    height: Int | None = Field(default=None, ge=0, le=1 << 20)
    label: Prediction | None = Field(default=None, description="Ground truth, when known (labelled traffic).")
    error: Text | None = Field(default=None, max_length=64, description="Error reason when the scan failed.")
    pod: Text | None = Field(default=None, max_length=128)
    node: Text | None = Field(default=None, max_length=128)

    @field_validator("timestamp", mode="before")
    @classmethod
    def _iso_only(cls, value: object) -> object:
        return _iso_only(value, "timestamp")

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    @model_validator(mode="after")
    def _fill_defaults(self) -> InferenceEvent:
        # Filled at validation, on the client (so a retried event keeps its id) or on the server.
        # What BaseModel.__setattr__ does for a plain field, without its per-call dispatch (this runs
        # for every event of a batch).
        if self.request_id is None:
            self.__dict__["request_id"] = new_id()
            self.__pydantic_fields_set__.add("request_id")
        if self.timestamp is None:
            self.__dict__["timestamp"] = datetime.now(UTC)
            self.__pydantic_fields_set__.add("timestamp")
        return self


class EventBatch(_Strict):
    """Several events in one request (at most 10,000)."""

    events: list[InferenceEvent] = Field(min_length=1, max_length=10_000)


class LogAccepted(_Strict):
    """Answer to ``POST /metrics/log``: the events are committed to the store."""

    accepted: int = Field(description="Events newly stored.")
    duplicates: int = Field(description="Events whose request_id was already stored (not counted twice).")
    ids: list[str] = Field(description="request_id of every event of the request, in order.")


class LatencySummary(_Strict):
    """Latency figures in milliseconds (percentiles estimated from log-spaced buckets, within 12%)."""

    mean: float | None
    p50: float | None
    p95: float | None
    p99: float | None


class StatsPoint(_Strict):
    """One bucket of the time series."""

    start: datetime
    events: int
    errors: int
    latency_p95_ms: float | None
    stego_rate: float | None
    mean_probability: float | None


class Stats(_Strict):
    """Aggregated statistics over a window, read from per-minute aggregates."""

    window: str
    granularity: str
    model_version: str | None
    start: datetime
    end: datetime
    events: int
    errors: int
    error_rate: float | None
    throughput_per_s: float
    latency_ms: LatencySummary
    stego_rate: float | None = Field(description="Share of successful scans predicted stego.")
    mean_probability: float | None
    labelled: int = Field(description="Events carrying a ground-truth label.")
    fpr: float | None = Field(description="False-positive rate on labelled clean traffic; null without labels.")
    tpr: float | None = Field(description="True-positive rate on labelled stego traffic; null without labels.")
    series: list[StatsPoint]


class DependencyCheck(_Strict):
    """State of one dependency of the server."""

    ok: bool
    detail: str
    latency_ms: float | None = None


class Health(_Strict):
    """Answer to ``GET /health``."""

    status: Literal["ok", "degraded"]
    version: str
    uptime_s: float
    requests: dict[str, int] = Field(description="Requests served so far, by status class (2xx, 4xx, 5xx).")
    events_ingested: int
    queue_depth: int
    dependencies: dict[str, DependencyCheck]


class Probe(_Strict):
    """Answer to the liveness and readiness probes."""

    status: Literal["alive", "ready", "not_ready"]
    detail: str | None = None


class Alert(_Strict):
    """One alert episode of a rule (pending, firing or resolved)."""

    id: int
    rule: str
    fingerprint: str
    status: AlertStatus
    severity: Severity
    value: float | None
    threshold: float
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None
    updated_at: datetime
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    suppress_until: datetime | None = None


class AlertList(_Strict):
    """Answer to ``GET /alerts/recent``."""

    alerts: list[Alert]


class Acknowledge(_Strict):
    """Body of ``POST /alerts/{id}/acknowledge``."""

    by: Text = Field(default="operator", min_length=1, max_length=64)
    comment: Text | None = Field(default=None, max_length=500)
    suppress_until: datetime | None = Field(
        default=None, description="No notifications are sent for this alert before this time."
    )

    @field_validator("suppress_until", mode="before")
    @classmethod
    def _iso_only(cls, value: object) -> object:
        return _iso_only(value, "suppress_until")

    @field_validator("suppress_until")
    @classmethod
    def _in_range(cls, value: datetime | None) -> datetime | None:
        # Stored as epoch seconds and answered in UTC: a UTC offset may carry a date at either end of
        # datetime's range (9999-12-31T23:59:59-23:59) past it, which no answer could show.
        if value is not None and value.tzinfo is not None:
            try:
                value.astimezone(UTC)
            except OverflowError:
                raise ValueError("suppress_until is outside the representable range (years 1-9999 in UTC)") from None
        return value


class ModelVersion(_Strict):
    """One registered model version."""

    version: str
    role: Literal["current", "canary", "previous", "retired"]
    sha256: str
    size_bytes: int
    fpr: float | None = Field(description="From the model card, when it carries one.")
    tpr: float | None = Field(description="From the model card, when it carries one.")
    registered_at: datetime
    deployed_at: datetime | None


class ModelVersions(_Strict):
    """Answer to ``GET /models/versions``."""

    current: ModelVersion | None
    canary: ModelVersion | None
    previous: ModelVersion | None
    versions: list[ModelVersion]


class RegisterModel(_Strict):
    """Body of ``POST /models/versions``.

    Give ``path`` (an ``.onnx`` model file on the server, or a shipped model's name: sha256, size
    and card metrics are read from it) or ``sha256`` and ``size_bytes``.
    """

    version: str = Field(min_length=1, max_length=64, pattern=_ID_PATTERN)
    role: Literal["current", "canary", "retired"] = "canary"
    path: Text | None = Field(default=None, max_length=4096)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    size_bytes: Int | None = Field(default=None, ge=0, le=MAX_INT64)
    fpr: Num | None = Field(default=None, ge=0, le=1)
    tpr: Num | None = Field(default=None, ge=0, le=1)


class Rollback(_Strict):
    """Body of ``POST /models/rollback``: back to ``to_version``, or to the previous version."""

    to_version: str | None = Field(default=None, max_length=64, pattern=_ID_PATTERN)
    reason: Text | None = Field(default=None, max_length=500)


class ErrorBody(_Strict):
    """The error object."""

    code: str = Field(description="Machine-readable code, e.g. validation_error, not_found, rate_limited.")
    message: str
    details: list[dict[str, Any]] | dict[str, Any] | None = None
    request_id: str


class ErrorEnvelope(_Strict):
    """Every error answer has this shape."""

    error: ErrorBody
