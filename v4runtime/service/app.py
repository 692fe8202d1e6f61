"""FastAPI app of the scan service.

``POST /v1/scan`` takes the raw bytes of one image as the request body and answers the
:class:`~v4runtime.scanner.ScanResult` as JSON. Each scan is reported to the monitoring API through
:class:`~v4runtime.client.MonitoringClient`, whose bounded background buffer means a slow or dead
monitoring API never slows or fails a scan. Errors use the monitoring API's envelope.
"""

from __future__ import annotations

import time
import uuid
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from v4runtime import __version__
from v4runtime.monitoring.api_errors import envelope

#: Largest image body accepted, in bytes (the pixel cap of stream extraction applies as well).
DEFAULT_MAX_BODY = 32 * 1024 * 1024


def _error(status: int, code: str, message: str, request_id: str, details: Any = None) -> JSONResponse:
    return JSONResponse(
        envelope(code, message, request_id, details), status_code=status, headers={"X-Request-ID": request_id}
    )


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or ``None`` as soon as it exceeds ``limit`` (never buffered past it)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_scan_app(scanner: Any, monitor: Any | None = None, *, max_body_bytes: int = DEFAULT_MAX_BODY) -> FastAPI:
    """Build the app around one loaded ``scanner`` and an optional ``MonitoringClient``."""
    started = time.monotonic()
    counters = {"scans": 0, "stego": 0, "errors": 0}

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202 - FastAPI's protocol
        yield
        if monitor is not None:
            await run_in_threadpool(monitor.close)

    app = FastAPI(title="V4 scan service", version=__version__, lifespan=lifespan)

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ok", "model": scanner.model_name}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        dropped = monitor.counters.dropped if monitor is not None else 0
        return {
            "status": "ok",
            "version": __version__,
            "model": scanner.model_name,
            "model_sha256": scanner.model_sha256,
            "threshold": scanner.threshold,
            "uptime_s": round(time.monotonic() - started, 3),
            "counters": {**counters, "monitor_events_dropped": dropped},
        }

    @app.post("/v1/scan")
    async def scan(request: Request) -> JSONResponse:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        body = await _read_body(request, max_body_bytes)
        if body is None:
            return _error(413, "payload_too_large", f"image larger than {max_body_bytes} bytes", request_id)
        start = time.perf_counter()
        result = await run_in_threadpool(scanner.scan, body)
        latency_ms = (time.perf_counter() - start) * 1000.0
        counters["scans"] += 1
        if monitor is not None:
            monitor.log(
                request_id=request_id if len(request_id) <= 64 else None,
                model_version=scanner.model_name,
                latency_ms=latency_ms,
                probability=result.probability,
                prediction=None if result.error else ("stego" if result.is_stego else "clean"),
                method=result.method,
                image_format=(result.format or "").lower() or None,
                image_bytes=len(body),
                error=result.error_reason if result.error else None,
            )
        if result.error:
            counters["errors"] += 1
            return _error(
                422, "unreadable_image", result.error, request_id, details={"reason": result.error_reason}
            )
        counters["stego"] += int(result.is_stego)
        data = result.to_dict()
        data.update(path=None, request_id=request_id, model=scanner.model_name)
        return JSONResponse(data, headers={"X-Request-ID": request_id})

    return app
