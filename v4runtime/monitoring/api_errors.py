"""The one error envelope: ``{"error": {"code", "message", "details", "request_id"}}``.

Every error the API returns goes through here: our own :class:`APIError`, Starlette's HTTP errors
(404, 405), validation errors (422, naming the field), and the middleware's 413 and 500.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}
# Union members of the log body are tagged; the tags are not part of the field path a caller sees.
_HIDDEN_LOC = {"body", "single", "batch"}


class APIError(HTTPException):
    """An error answer with a stable machine-readable code."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code=status_code, detail=message, headers=headers)
        self.code = code
        self.message = message
        self.details = details


def envelope(code: str, message: str, request_id: str, details: Any = None) -> dict[str, Any]:
    """The error body."""
    return {"error": {"code": code, "message": message, "details": details, "request_id": request_id}}


def envelope_bytes(status: int, message: str, request_id: str, code: str | None = None) -> bytes:
    """The error body as JSON bytes (for the ASGI middleware, which has no Response class); ``code``
    defaults to the status's."""
    return json.dumps(envelope(code or _CODES.get(status, "error"), message, request_id)).encode()


def request_id_of(request: Request) -> str:
    """The id the middleware gave this request."""
    return str(request.scope.get("state", {}).get("request_id", "-"))


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "batch", "events", 0, "latency_ms")`` -> ``events[0].latency_ms``."""
    parts: list[str] = []
    for i, item in enumerate(loc):
        if i == 0 and item in ("body", "query", "path", "header"):
            continue
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in _HIDDEN_LOC and i <= 1:
            continue
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "body"


def _field(error: dict[str, Any]) -> str:
    """The field a validation error names: ``body`` for JSON that does not parse, whose location
    FastAPI gives as a character position (``("body", 15)``), not a field."""
    return "body" if error.get("type") == "json_invalid" else field_path(error.get("loc", ()))


async def api_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Our errors and Starlette's (404, 405, ...)."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and not isinstance(exc, APIError):
        # FastAPI's "error parsing the body" (e.g. bytes that are not UTF-8): same answer as bad JSON.
        details = [{"field": "body", "message": str(exc.detail), "type": "body_invalid"}]
        return JSONResponse(
            envelope("validation_error", f"invalid field 'body': {exc.detail}", request_id_of(request), details),
            status_code=422,
        )
    headers = getattr(exc, "headers", None)
    if exc.status_code == 405:
        # Included routers only report the first matching route's methods; list every one of the path.
        methods = allowed_methods(request)
        if methods:
            headers = {**(headers or {}), "Allow": ", ".join(methods)}
    code = getattr(exc, "code", None) or _CODES.get(exc.status_code, "error")
    message = getattr(exc, "message", None) or str(exc.detail)
    details = getattr(exc, "details", None)
    return JSONResponse(
        envelope(code, message, request_id_of(request), details),
        status_code=exc.status_code,
        headers=headers,
    )


def allowed_methods(request: Request) -> list[str]:
    """Methods the OpenAPI document lists for the request's path (probes also under /v1)."""
    app = request.app
    table = getattr(app.state, "allow_table", None)
    if table is None:
        table = []
        for template, item in app.openapi()["paths"].items():
            pattern = re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", template) + "$")
            table.append((pattern, sorted(m.upper() for m in item)))
        app.state.allow_table = table
    path = request.url.path
    if path.startswith("/v1/health"):
        path = path[len("/v1") :]
    for pattern, methods in table:
        if pattern.match(path):
            return methods
    return []


def store_failures() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the store is down or unusable (answered 503, not 500).

    The stores raise :class:`StoreError` for connection and I/O failures themselves; the drivers'
    operational errors stay listed as a net for any path they do not wrap. sqlite3 also reports SQL
    errors (a missing table, a syntax error) as ``OperationalError``, so on SQLite those answer 503
    too; a constraint violation (``IntegrityError``) is a bug and stays a 500.
    """
    import sqlite3

    import psycopg

    from v4runtime.errors import StoreError

    return (StoreError, sqlite3.OperationalError, psycopg.OperationalError, psycopg.InterfaceError)


async def store_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """503 ``store_unavailable`` with ``Retry-After`` when the database cannot be reached or used."""
    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return JSONResponse(
        envelope("store_unavailable", f"store unavailable: {first_line}", request_id_of(request)),
        status_code=503,
        headers={"Retry-After": "1"},
    )


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """422 naming the offending field(s)."""
    assert isinstance(exc, RequestValidationError)
    details = [
        {"field": _field(err), "message": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]
    first = details[0] if details else {"field": "body", "message": "invalid request"}
    message = f"invalid field '{first['field']}': {first['message']}"
    return JSONResponse(
        envelope("validation_error", message, request_id_of(request), details), status_code=422
    )
