"""ASGI middleware at the edge: request ids, the body size and stall limits, and the last-resort 500.

It wraps the whole application, so even a 413 decided before routing, a 408 for a stalled body, or a
crash, answers with the error envelope and an ``X-Request-ID`` header. Both the monitoring API and the
scan service run behind it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import weakref
from collections.abc import Callable
from typing import Any

from v4runtime.monitoring.api_errors import APIError, envelope_bytes
from v4runtime.monitoring.ids import new_id

log = logging.getLogger(__name__)

_VALID_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
Scope = dict[str, Any]
#: Seconds a request body may stall (no bytes arriving) before the request is answered 408.
DEFAULT_BODY_TIMEOUT = 30.0
#: Seconds a body read may still wait once the server is told to stop, before it is answered 503.
SHUTDOWN_GRACE_S = 1.0
#: Answers after which the connection cannot carry another request: the body was left unread.
_CLOSING = frozenset({408, 413, 503})
#: Every stall watch of this process, so a shutdown can end the body reads they wait on.
_WATCHES: weakref.WeakSet[_StallWatch] = weakref.WeakSet()


class BodyTooLarge(APIError):
    """Raised by the receive wrapper as soon as the body passes the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, "payload_too_large", f"request body larger than {limit} bytes")


class BodyStalled(APIError):
    """Raised by the receive wrapper when no body bytes arrive for the stall timeout.

    A client that sends less than its ``Content-Length`` (or stops mid-upload) would otherwise hold the
    request, and its connection, forever: uvicorn has no body timeout of its own.
    """

    def __init__(self, timeout_s: float, received: int) -> None:
        super().__init__(
            408, "request_timeout",
            f"no request body bytes for {timeout_s:g} s after {received} bytes (upload stalled)",
            headers={"Connection": "close"},
        )


class ShuttingDown(APIError):
    """Raised by the receive wrapper for a body still incomplete :data:`SHUTDOWN_GRACE_S` after shutdown began.

    uvicorn waits for open requests before it stops, then cancels them (a plain-text 500 and a
    traceback): a client mid-upload would hold the shutdown that long, and still lose its request.
    """

    def __init__(self, received: int) -> None:
        super().__init__(
            503, "shutting_down", f"the server is shutting down; {received} body bytes were received: retry",
            headers={"Connection": "close", "Retry-After": "1"},
        )


def end_waiting_body_reads(grace_s: float = SHUTDOWN_GRACE_S) -> None:
    """Answer 503 ``shutting_down`` to every request whose body is still incomplete ``grace_s`` from now.

    Called by :func:`v4runtime.serving.serve_app` when the server is told to stop (in the event loop).
    """
    for watch in list(_WATCHES):
        watch.begin_shutdown(grace_s)


class _StallWatch:
    """Ends body reads that wait longer than ``timeout_s`` with :class:`BodyStalled`.

    One check per event loop, run every ``period`` while reads wait, cancels the late ones; a timer per
    read (``asyncio.timeout``) cost 5-10 µs per request, most of what the edge adds to the ingest hot
    path, where a read costs two dict operations here. A stall is noticed within ``period`` after
    ``timeout_s``.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.period = min(1.0, max(0.05, timeout_s / 4))
        self._waiting: dict[asyncio.Task[Any], float] = {}  # reading task -> when its read began
        self._expired: set[asyncio.Task[Any]] = set()
        self._checker: asyncio.Task[None] | None = None
        self._shutdown_at: float | None = None  # loop time after which every waiting read is ended
        self._grace_s = SHUTDOWN_GRACE_S
        _WATCHES.add(self)

    def begin_shutdown(self, grace_s: float) -> None:
        """End the reads still waiting ``grace_s`` from now (and any that start later) with :class:`ShuttingDown`."""
        if self._waiting:
            loop = next(iter(self._waiting)).get_loop()
            self._shutdown_at = loop.time() + grace_s
            self.period = min(self.period, grace_s / 4)
            self._ensure_checker(loop)
        else:
            self._shutdown_at = 0.0  # no read waits: a later one is ended after the grace from its start
            self._grace_s = grace_s

    async def receive(self, receive: Callable[[], Any], received: int) -> dict[str, Any]:
        """``await receive()``, or :class:`BodyStalled` after ``received`` bytes when it waits too long."""
        task = asyncio.current_task()
        if task is None:  # awaited outside a task (no ASGI server does that): nothing to cancel
            return await receive()  # type: ignore[no-any-return]
        loop = task.get_loop()
        self._waiting[task] = loop.time()
        if self._shutdown_at == 0.0:  # shutdown began while no read waited
            self._shutdown_at = loop.time() + self._grace_s
            self.period = min(self.period, self._grace_s / 4)
        self._ensure_checker(loop)
        try:
            return await receive()  # type: ignore[no-any-return]
        except asyncio.CancelledError:
            if task not in self._expired:
                raise  # cancelled for another reason (uvicorn giving up on the request)
            task.uncancel()
            if self._shutdown_at is not None:
                raise ShuttingDown(received) from None
            raise BodyStalled(self.timeout_s, received) from None
        finally:
            del self._waiting[task]
            self._expired.discard(task)

    def _ensure_checker(self, loop: asyncio.AbstractEventLoop) -> None:
        checker = self._checker
        if checker is None or checker.done() or checker.get_loop() is not loop:
            self._checker = loop.create_task(self._check())

    async def _check(self) -> None:
        """Cancel the reads that began ``timeout_s`` ago, or all of them once the shutdown grace is over;
        stop once none waits (the next read restarts it)."""
        loop = asyncio.get_running_loop()
        while self._waiting:
            await asyncio.sleep(self.period)
            now = loop.time()
            shutting = self._shutdown_at is not None and 0.0 < self._shutdown_at <= now
            late = now - self.timeout_s
            for task, since in list(self._waiting.items()):
                if (shutting or since <= late) and task not in self._expired:
                    self._expired.add(task)
                    task.cancel()


class EdgeMiddleware:
    """Request id in and out, 413 and 408 while reading, and an envelope for unhandled errors.

    Args:
        app: the wrapped ASGI app.
        max_body_bytes: largest request body accepted.
        observe: called with (scope, status, seconds) after each HTTP request.
        fast_paths: ASGI handlers by (method, path) served here instead of by ``app`` (the ingest hot
            path); ``scope["route"]`` is set, so the metrics label the request with its path.
        body_timeout_s: seconds the body may stall before the request is answered 408
            (:data:`DEFAULT_BODY_TIMEOUT` when None, read when the middleware is built).
    """

    def __init__(self, app: Any, max_body_bytes: int, observe: Callable[[Scope, int, float], None] | None = None,
                 fast_paths: dict[tuple[str, str], Any] | None = None, body_timeout_s: float | None = None):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.observe = observe
        self.fast_paths = fast_paths or {}
        self.body_timeout_s = DEFAULT_BODY_TIMEOUT if body_timeout_s is None else body_timeout_s
        self._stalls = _StallWatch(self.body_timeout_s)

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
            body_done = False

            async def receive_wrapper() -> dict[str, Any]:
                nonlocal received, body_done
                if body_done:  # after the body, receive() waits for a disconnect: no time limit then
                    return await receive()  # type: ignore[no-any-return]
                message = await self._stalls.receive(receive, received)
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise BodyTooLarge(limit)
                    body_done = not message.get("more_body", False)
                return message  # type: ignore[no-any-return]

            fast = self.fast_paths.get((scope["method"], scope["path"])) if self.fast_paths else None
            if fast is None:
                await self.app(scope, receive_wrapper, send_wrapper)
            else:
                scope["route"] = scope["path"]
                await fast(scope, receive_wrapper, send_wrapper)
        except (BodyTooLarge, BodyStalled, ShuttingDown) as exc:
            if not state["started"]:
                await self._error(send_wrapper, exc.status_code, exc.message, request_id, exc)
        except Exception:
            log.exception("unhandled error on %s %s (request %s)", scope.get("method"), scope.get("path"), request_id)
            if not state["started"]:
                await self._error(send_wrapper, 500, "internal server error", request_id)
        finally:
            if self.observe is not None:
                self.observe(scope, int(state["status"]), time.perf_counter() - t0)

    @staticmethod
    async def _error(send: Any, status: int, message: str, request_id: str, error: APIError | None = None) -> None:
        body = envelope_bytes(status, message, request_id, error.code if error is not None else None)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if status in _CLOSING:
            headers.append((b"connection", b"close"))
        if error is not None and "Retry-After" in (error.headers or {}):
            headers.append((b"retry-after", error.headers["Retry-After"].encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None
