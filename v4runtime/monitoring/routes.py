"""HTTP endpoints. Handlers are thin: validation is in the schemas, work is in the runtime's parts."""

from __future__ import annotations

import asyncio
import types
from collections import Counter
from collections.abc import Sequence, Set
from datetime import UTC, datetime
from typing import Annotated, Any, Union, get_args, get_origin

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from v4runtime import __version__
from v4runtime.monitoring import registry
from v4runtime.monitoring.aggregates import build_stats
from v4runtime.monitoring.api_errors import APIError
from v4runtime.monitoring.logpath import accept, check_request
from v4runtime.monitoring.prom import CONTENT_TYPE
from v4runtime.monitoring.runtime import Runtime
from v4runtime.monitoring.schemas import (
    DURATIONS,
    Acknowledge,
    Alert,
    AlertList,
    DependencyCheck,
    ErrorEnvelope,
    Granularity,
    Health,
    LogAccepted,
    ModelVersion,
    ModelVersions,
    Probe,
    RegisterModel,
    Rollback,
    Severity,
    Stats,
    Window,
)
from v4runtime.monitoring.store import AlertRecord
from v4runtime.monitoring.store.base import one_line

MAX_POINTS = 1440
_bearer = HTTPBearer(auto_error=False, description="A read token (GET) or a write token (POST, and GET).")


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {
        401: "Missing or invalid bearer token", 403: "Token may not write", 404: "Not found",
        408: "Body stalled (no bytes for 30 s)", 409: "Conflict", 413: "Body too large", 415: "Not JSON",
        422: "Invalid request (names the field)",
        429: "Rate limited (see Retry-After)", 503: "Store unavailable or overloaded",
    }
    return {code: {"model": ErrorEnvelope, "description": text[code]} for code in codes}


def runtime(request: Request) -> Runtime:
    """The server's runtime."""
    return request.app.state.runtime  # type: ignore[no-any-return]


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


async def read_access(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None
) -> str:
    """Dependency: a read (or write) token, within the rate limit."""
    return runtime(request).auth.authorize(request.headers.get("authorization"), "read", _client(request))


async def write_access(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None
) -> str:
    """Dependency: a write token, within the rate limit."""
    return runtime(request).auth.authorize(request.headers.get("authorization"), "write", _client(request))


def _takes_list(annotation: Any) -> bool:
    """Whether a query parameter is declared as a list (``list[str]``, ``set[int] | None``...):
    FastAPI reads every value of those, and the last value of any other."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_takes_list(arg) for arg in get_args(annotation))
    return isinstance(origin, type) and issubclass(origin, Sequence | Set) and not issubclass(origin, str | bytes)


def _query_fields(dependant: Any) -> dict[str, bool]:
    """Query parameters the endpoint reads (its dependencies' too), each with whether it takes a list."""
    fields = {p.alias: _takes_list(p.field_info.annotation) for p in dependant.query_params}
    for sub in dependant.dependencies:
        fields.update(_query_fields(sub))
    return fields


def _query_error(name: str, message: str, kind: str) -> APIError:
    return APIError(422, "validation_error", f"invalid field '{name}': {message}",
                    details=[{"field": name, "message": message, "type": kind}])


async def strict_query(request: Request) -> None:
    """Dependency: 422 for a query parameter the endpoint does not take, or a scalar one given twice.

    Either would pass silently otherwise: a typo is ignored, and of repeated values FastAPI keeps the last.
    """
    if not request.query_params:
        return
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    fields = _query_fields(dependant)
    for name, count in Counter(key for key, _ in request.query_params.multi_items()).items():
        if name not in fields:
            raise _query_error(name, "unknown query parameter", "extra_forbidden")
        if count > 1 and not fields[name]:
            raise _query_error(name, f"given {count} times; this query parameter takes one value", "repeated")


probes = APIRouter(tags=["probes"], responses=_errors(422), dependencies=[Depends(strict_query)])
#: Every API route reads or writes the store: 503 when it cannot be reached.
api = APIRouter(responses=_errors(401, 422, 429, 503), dependencies=[Depends(strict_query)])


# Probes -------------------------------------------------------------------------------------
@probes.get("/health", response_model=Health, responses={503: {"model": Health, "description": "Degraded"}})
async def health(request: Request) -> Response:
    """Service health: version, uptime, request counters and dependency checks (200, or 503 when degraded)."""
    rt = runtime(request)
    try:
        # The readiness check: a store that refuses writes is not healthy either (the doctor reads this).
        check_ms = await run_in_threadpool(rt.store.check_writable)
        store = DependencyCheck(ok=True, detail=rt.store.backend, latency_ms=round(check_ms, 3))
    except Exception as exc:  # noqa: BLE001 - a failed check is a result, not an error
        store = DependencyCheck(ok=False, detail=f"{rt.store.backend}: {one_line(exc)}")
    writer_ok = rt.writer.alive and rt.writer.last_error is None
    writer = DependencyCheck(ok=writer_ok, detail=rt.writer.last_error or ("running" if rt.writer.alive else "stopped"))
    deps = {"store": store, "writer": writer}
    ok = all(d.ok for d in deps.values())
    answer = Health(
        status="ok" if ok else "degraded",
        version=__version__,
        uptime_s=round(asyncio.get_running_loop().time() - request.app.state.loop_started, 3),
        requests=dict(rt.metrics.status_classes),
        events_ingested=rt.writer.committed_events,
        queue_depth=rt.writer.depth,
        dependencies=deps,
    )
    return Response(answer.model_dump_json(), status_code=200 if ok else 503, media_type="application/json")


@probes.get("/health/live", response_model=Probe)
async def live() -> Probe:
    """Liveness: the process answers."""
    return Probe(status="alive")


@probes.get("/health/ready", response_model=Probe, responses={503: {"model": Probe, "description": "Not ready"}})
async def ready(request: Request, response: Response) -> Probe:
    """Readiness: the store would take a write now (checked without writing, within about a second)
    and the batch writer runs; 503 naming the cause otherwise."""
    rt = runtime(request)
    try:
        # A read alone said ready while a read-only file made every write fail. Bounded by PROBE_TIMEOUT_S,
        # whatever the store's lock timeout. (The docstring is the OpenAPI description: changing it means
        # regenerating docs/generated/monitoring/openapi.json.)
        await run_in_threadpool(rt.store.check_writable)
    except Exception as exc:  # noqa: BLE001
        response.status_code = 503
        return Probe(status="not_ready", detail=f"store: {one_line(exc)}")
    if not rt.writer.alive:
        response.status_code = 503
        return Probe(status="not_ready", detail="batch writer stopped")
    return Probe(status="ready")


# Metrics ------------------------------------------------------------------------------------
#: The hot path is kept off FastAPI's dependency and body machinery (it cost more than the rest of the
#: request): a router of its own, no declared body parameter, JSON validated straight from bytes. The
#: edge middleware serves this path with :func:`v4runtime.monitoring.logpath.handle_log`; this route
#: documents it and runs the same checks.
ingest = APIRouter(responses=_errors(401, 422, 429))


@ingest.post(
    "/metrics/log",
    status_code=202,
    response_model=LogAccepted,
    tags=["metrics"],
    responses=_errors(403, 408, 413, 415, 503),
    dependencies=[Security(_bearer)],
)
async def log_events(request: Request) -> Response:
    """Store one inference event or a batch (``{"events": [...]}``); 202 once committed (durable)."""
    rt = runtime(request)
    check_request(rt, request.headers.get("authorization"), request.query_params, request.headers.get("content-type"),
                  _client(request))
    body = await accept(rt, await request.body())
    return Response(body, status_code=202, media_type="application/json")


def _check_series(window: str, granularity: str) -> None:
    """422 naming ``granularity`` when the window cannot hold its series: buckets larger than it, or too many."""
    window_s, step = DURATIONS[window], DURATIONS[granularity]
    if step > window_s:
        # The series would be one point labelled with the bucket size but holding only the window's minutes.
        problem = short = f"granularity {granularity} is larger than the window {window}"
    elif window_s // step > MAX_POINTS:
        problem, short = f"{window} at {granularity} gives more than {MAX_POINTS} points", f"at most {MAX_POINTS} points"
    else:
        return
    raise APIError(422, "validation_error", f"invalid field 'granularity': {problem}",
                   details=[{"field": "granularity", "message": short, "type": "value_error"}])


@api.get("/metrics/stats", response_model=Stats, tags=["metrics"])
async def stats(
    request: Request,
    _: Annotated[str, Depends(read_access)],
    window: Annotated[Window, Query(description="Window ending now.")] = "1h",
    granularity: Annotated[Granularity, Query(description="Bucket size of the time series; at most the window.")] = "1m",
    model_version: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9._:\-]{1,64}$")] = None,
) -> Response:
    """Totals, error rate, latency percentiles, throughput, stego rate, FPR/TPR and a time series."""
    _check_series(window, granularity)
    window_s, step = DURATIONS[window], DURATIONS[granularity]
    now = datetime.now(UTC).timestamp()
    end = int(now // 60) * 60 + 60
    start = end - window_s
    rows = await run_in_threadpool(runtime(request).store.read_minutes, start, end, model_version)
    stats = build_stats(
        rows, start=start, end=end, window=window, granularity_s=step, granularity=granularity,
        model_version=model_version,
    )
    # Serialised here: returning the model would make FastAPI validate it a second time.
    return Response(stats.model_dump_json(), media_type="application/json")


@probes.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"},
               **_errors(401, 429)},
    tags=["metrics"],
)
async def prometheus(request: Request, _: Annotated[str, Depends(read_access)]) -> Response:
    """Prometheus exposition: request counters, latency histograms by model_version, ingest figures."""
    return Response(runtime(request).metrics.exposition(), media_type=CONTENT_TYPE)


# Alerts -------------------------------------------------------------------------------------
def _dt(epoch: float | None) -> datetime | None:
    """An epoch as a UTC datetime, clamped to datetime's range: one stored out of it (an old server took
    ``suppress_until`` in year 10000 UTC) must not make every read of the alerts a 500."""
    if epoch is None:
        return None
    try:
        return datetime.fromtimestamp(epoch, UTC)
    except (OverflowError, OSError, ValueError):
        return (datetime.max if epoch > 0 else datetime.min).replace(tzinfo=UTC)


def _alert(record: AlertRecord) -> Alert:
    return Alert(
        id=record.id, rule=record.rule, fingerprint=record.fingerprint, status=record.status,  # type: ignore[arg-type]
        severity=record.severity, value=record.value, threshold=record.threshold,  # type: ignore[arg-type]
        labels=record.labels, annotations=record.annotations, starts_at=_dt(record.starts_at),  # type: ignore[arg-type]
        ends_at=_dt(record.ends_at), updated_at=_dt(record.updated_at),  # type: ignore[arg-type]
        acknowledged_by=record.acknowledged_by, acknowledged_at=_dt(record.acknowledged_at),
        suppress_until=_dt(record.suppress_until),
    )


@api.get("/alerts/recent", response_model=AlertList, tags=["alerts"])
async def recent_alerts(
    request: Request,
    _: Annotated[str, Depends(read_access)],
    severity: Severity | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    active_only: bool = False,
) -> Response:
    """Newest alerts first (pending, firing and resolved; only active ones with ``active_only``)."""
    store = runtime(request).store

    def build() -> bytes:
        records = store.recent_alerts(limit=limit, severity=severity, active_only=active_only)
        return AlertList(alerts=[_alert(r) for r in records]).model_dump_json().encode()

    body = await runtime(request).reads.get(("alerts", severity, limit, active_only), build)
    return Response(body, media_type="application/json")


@api.post("/alerts/{alert_id}/acknowledge", response_model=Alert, tags=["alerts"],
          responses=_errors(403, 404, 408, 413))
async def acknowledge(
    request: Request,
    _: Annotated[str, Depends(write_access)],
    alert_id: Annotated[int, Path(ge=1, le=2**62)],
    body: Annotated[Acknowledge | None, Body()] = None,
) -> Alert:
    """Acknowledge an alert; with ``suppress_until`` no notification is sent for it before then."""
    body = body or Acknowledge()
    store = runtime(request).store
    record = await run_in_threadpool(store.get_alert, alert_id)
    if record is None:
        raise APIError(404, "not_found", f"no alert {alert_id}")
    record.acknowledged_by = body.by
    record.acknowledged_at = datetime.now(UTC).timestamp()
    if body.suppress_until is not None:
        until = body.suppress_until if body.suppress_until.tzinfo else body.suppress_until.replace(tzinfo=UTC)
        record.suppress_until = until.timestamp()
    await run_in_threadpool(store.update_alert, record)
    return _alert(record)


# Models -------------------------------------------------------------------------------------
@api.get("/models/versions", response_model=ModelVersions, tags=["models"])
async def model_versions(request: Request, _: Annotated[str, Depends(read_access)]) -> Response:
    """Current, canary and previous model versions (sha256, size, FPR/TPR from the card, deployed_at)."""
    store = runtime(request).store
    body = await runtime(request).reads.get(
        ("models",), lambda: registry.list_versions(store).model_dump_json().encode()
    )
    return Response(body, media_type="application/json")


@api.post("/models/versions", status_code=201, response_model=ModelVersion, tags=["models"],
          responses=_errors(403, 408, 409, 413))
async def register_model(
    request: Request, body: RegisterModel, _: Annotated[str, Depends(write_access)]
) -> ModelVersion:
    """Register a version as current (the old current becomes previous), canary, or retired. Registering
    it again with the same sha256 and size is accepted (a retry, or a new role); with others, 409. The
    current version keeps its role until another one takes it: registering it as canary or retired is 409."""
    return await run_in_threadpool(registry.register, runtime(request).store, body)


@api.post("/models/rollback", response_model=ModelVersions, tags=["models"], responses=_errors(403, 404, 408, 409, 413))
async def rollback(
    request: Request, _: Annotated[str, Depends(write_access)], body: Annotated[Rollback | None, Body()] = None
) -> ModelVersions:
    """Make the previous version (or ``to_version``) current again."""
    return await run_in_threadpool(registry.rollback, runtime(request).store, body or Rollback())
