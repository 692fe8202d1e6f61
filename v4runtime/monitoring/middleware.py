"""ASGI middleware at the edge: request ids, the body size limit, and the last-resort 500.

It wraps the whole application, so even a 413 decided before routing, or a crash, answers with the
error envelope and an ``X-Request-ID`` header.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

from v4runtime.monitoring.api_errors import APIError, envelope_bytes
from v4runtime.monitoring.ids import new_id

log = logging.getLogger(__name__)

_VALID_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
Scope = dict[str, Any]


class BodyTooLarge(APIError):
    """Raised by the receive wrapper as soon as the body passes the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, "payload_too_large", f"request body larger than {limit} bytes")


class EdgeMiddleware:
    """Request id in and out, 413 while reading, and an envelope for unhandled errors.

    Args:
        app: the wrapped ASGI app.
        max_body_bytes: largest request body accepted.
        observe: called with (scope, status, seconds) after each HTTP request.
        fast_paths: ASGI handlers by (method, path) served here instead of by ``app`` (the ingest hot
            path); ``scope["route"]`` is set, so the metrics label the request with its path.
    """

    def __init__(self, app: Any, max_body_bytes: int, observe: Callable[[Scope, int, float], None] | None = None,
                 fast_paths: dict[tuple[str, str], Any] | None = None):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.observe = observe
        self.fast_paths = fast_paths or {}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _VALID_ID.match(incoming) else new_id()
        scope.setdefault("state", {})["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode())
        state = {"started": False, "status": 500}

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
                state["status"] = message["status"]
                message["headers"] = [*message.get("headers", []), id_header]
            await send(message)

        limit = self.max_body_bytes
        declared = _header(scope, b"content-length")
        try:
            if declared is not None and declared.isdigit() and int(declared) > limit:
                await self._error(send_wrapper, 413, f"request body larger than {limit} bytes", request_id)
                return
            received = 0

            async def receive_wrapper() -> dict[str, Any]:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise BodyTooLarge(limit)
                return message

            fast = self.fast_paths.get((scope["method"], scope["path"])) if self.fast_paths else None
            if fast is None:
                await self.app(scope, receive_wrapper, send_wrapper)
            else:
                scope["route"] = scope["path"]
                await fast(scope, receive_wrapper, send_wrapper)
        except BodyTooLarge:
            if not state["started"]:
                await self._error(send_wrapper, 413, f"request body larger than {limit} bytes", request_id)
        except Exception:
            log.exception("unhandled error on %s %s (request %s)", scope.get("method"), scope.get("path"), request_id)
            if not state["started"]:
                await self._error(send_wrapper, 500, "internal server error", request_id)
        finally:
            if self.observe is not None:
                self.observe(scope, int(state["status"]), time.perf_counter() - t0)

    @staticmethod
    async def _error(send: Any, status: int, message: str, request_id: str) -> None:
        body = envelope_bytes(status, message, request_id)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if status == 413:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None
