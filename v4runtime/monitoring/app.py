"""The application factory: ``create_app(settings)`` returns the FastAPI app of the monitoring API."""

from __future__ import annotations

import asyncio
import functools
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from v4runtime import __version__
from v4runtime.config import MonitorSettings
from v4runtime.monitoring.alerts import Rule
from v4runtime.monitoring.api_errors import (
    api_error_handler,
    store_error_handler,
    store_failures,
    validation_error_handler,
)
from v4runtime.monitoring.logpath import LOG_BODY, handle_log
from v4runtime.monitoring.middleware import EdgeMiddleware
from v4runtime.monitoring.routes import api, ingest, probes
from v4runtime.monitoring.runtime import Runtime
from v4runtime.monitoring.store import Store

API_PREFIX = "/v1"
DESCRIPTION = """\
Metrics collection and alerting for V4 scanners. Scanners post inference events; the API answers
202 once they are committed, keeps per-minute aggregates for stats, evaluates alert rules and sends
Alertmanager-style webhooks. Probes (`/health`, `/health/live`, `/health/ready`) are open; other
endpoints take a bearer token when tokens are configured. Every error has the shape
`{"error": {"code", "message", "details", "request_id"}}`, and every answer carries `X-Request-ID`.
Query parameters are strict: one an endpoint does not take, or one given twice, is a 422 naming it.
"""


def create_app(
    settings: MonitorSettings | None = None,
    *,
    store: Store | None = None,
    rules: list[Rule] | None = None,
    retention_period_s: float = 3600.0,
) -> FastAPI:
    """Build the monitoring API.

    Args:
        settings: server settings (defaults when omitted).
        store: an open store to use instead of opening ``settings.db_url``.
        rules: alert rules instead of ``settings.alert_rules`` / the defaults.
        retention_period_s: how often retention runs.
    """
    settings = settings or MonitorSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = await asyncio.to_thread(Runtime.start, settings, store=store, rules=rules)
        app.state.runtime = rt
        app.state.loop_started = asyncio.get_running_loop().time()
        edge.observe = rt.metrics.observe_request
        edge.fast_paths = {("POST", f"{API_PREFIX}/metrics/log"): functools.partial(handle_log, rt)}
        rt.start_retention(retention_period_s)
        # Everything allocated so far lives as long as the server: keep it out of the cyclic GC, whose
        # full collections over it were tens-of-milliseconds pauses on the request path.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await rt.stop()

    app = FastAPI(
        title="V4 Runtime Monitoring API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # We export Prometheus metrics ourselves; FastAPI's OpenTelemetry hooks would cost every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.add_exception_handler(StarletteHTTPException, api_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    for failure in store_failures():
        app.add_exception_handler(failure, store_error_handler)
    app.include_router(probes)
    app.include_router(probes, prefix=API_PREFIX, include_in_schema=False)
    app.include_router(ingest, prefix=API_PREFIX)
    app.include_router(api, prefix=API_PREFIX)
    _document_log_body(app)
    edge = _EdgeHolder(settings.max_body_bytes, settings.body_timeout_s)
    app.add_middleware(_EdgeFactory, holder=edge)
    return app


def _document_log_body(app: FastAPI) -> None:
    """Put the log body's schema into the OpenAPI document (the handler validates it itself)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        body = LOG_BODY.json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, definition in body.pop("$defs", {}).items():
            components.setdefault(name, definition)
        schema["paths"][f"{API_PREFIX}/metrics/log"]["post"]["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


class _EdgeHolder:
    """Lets the lifespan attach the metrics observer after the middleware stack is built."""

    def __init__(self, max_body_bytes: int, body_timeout_s: float) -> None:
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.observe = None
        self.fast_paths: dict[tuple[str, str], Any] = {}


class _EdgeFactory(EdgeMiddleware):
    def __init__(self, app: object, holder: _EdgeHolder) -> None:
        super().__init__(app, holder.max_body_bytes, body_timeout_s=holder.body_timeout_s)
        self._holder = holder

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        self.observe = self._holder.observe
        self.fast_paths = self._holder.fast_paths
        await super().__call__(scope, receive, send)
