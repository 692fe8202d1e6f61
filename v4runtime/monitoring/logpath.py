"""``POST /v1/metrics/log``, the ingest hot path, as a plain ASGI handler.

FastAPI's routing, dependency and response machinery cost more CPU than the rest of a single-event
request, so :class:`~v4runtime.monitoring.middleware.EdgeMiddleware` hands this one route straight to
:func:`handle_log`. The FastAPI route of the same path stays: it documents the endpoint in the OpenAPI
document and runs the same :func:`check_request` and :func:`accept` as this handler, so both give the
same answers, errors included.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi.exceptions import RequestValidationError
from pydantic import Discriminator, Tag, TypeAdapter, ValidationError
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from v4runtime.monitoring.api_errors import APIError, api_error_handler, validation_error_handler
from v4runtime.monitoring.ingest import Overloaded
from v4runtime.monitoring.runtime import Runtime
from v4runtime.monitoring.schemas import EventBatch, InferenceEvent
from v4runtime.monitoring.store.base import InsertedIds


def _shape(value: Any) -> str:
    return "batch" if isinstance(value, dict) and "events" in value else "single"


LogBody = Annotated[
    Annotated[InferenceEvent, Tag("single")] | Annotated[EventBatch, Tag("batch")], Discriminator(_shape)
]
#: Validator of the log body; the same schema is put into the OpenAPI document by the app factory.
LOG_BODY: TypeAdapter[Any] = TypeAdapter(LogBody)
_JSON_HEADERS = [(b"content-type", b"application/json")]


def check_request(rt: Runtime, authorization: str | None, query: Iterable[str], content_type: str | None,
                  client: str) -> None:
    """Token and rate limit, no query parameters, a JSON content type (checked before the body is read).

    Raises:
        APIError: 401/403/429 from the authenticator, 422 for a query parameter, 415 for another media type.
    """
    rt.auth.authorize(authorization, "write", client)
    for name in query:
        raise APIError(
            422, "validation_error", f"invalid field '{name}': unknown query parameter",
            details=[{"field": name, "message": "unknown query parameter", "type": "extra_forbidden"}],
        )
    media = (content_type or "application/json").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise APIError(415, "unsupported_media_type", f"send application/json, not {media}")


async def accept(rt: Runtime, body: bytes) -> bytes:
    """Validate the body, hand its events to the group commit and wait for it; returns the 202 body.

    Raises:
        RequestValidationError: the body does not match the schema (422 naming the field).
        APIError: a timestamp more than an hour ahead or older than the retention (422); the queue is
            full or the store failed (503).
    """
    try:
        parsed = LOG_BODY.validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
    batch = isinstance(parsed, EventBatch)
    events = parsed.events if batch else [parsed]  # ids/timestamps filled by validation
    now = datetime.now(UTC)
    ahead, behind = now + timedelta(hours=1), _oldest(now, rt.settings.retention_days)
    # Every offending event is named (not only the first), so a client can drop exactly those and resend.
    # An event older than the retention would be accepted, then deleted by the next retention pass unseen.
    problems = [
        {"field": f"events[{i}].timestamp" if batch else "timestamp", "message": message, "type": "value_error"}
        for i, event in enumerate(events) if event.timestamp is not None
        for message in (
            ["more than 1 hour in the future"] if event.timestamp > ahead
            else [f"older than the {rt.settings.retention_days}-day retention"] if event.timestamp < behind
            else []
        )
    ]
    if problems:
        raise APIError(422, "validation_error", f"invalid field '{problems[0]['field']}': {problems[0]['message']}",
                       details=problems)
    try:
        future = rt.writer.submit_async(events)
    except Overloaded as exc:
        raise APIError(503, "overloaded", "ingest queue is full, retry later", headers={"Retry-After": "1"}) from exc
    try:
        inserted = await future
    except Exception as exc:
        raise APIError(503, "store_unavailable", f"events not stored: {exc}", headers={"Retry-After": "1"}) from exc
    ids = [e.request_id or "" for e in events]
    accepted = _accepted(events, inserted)
    answer = {"accepted": accepted, "duplicates": len(ids) - accepted, "ids": ids}
    return json.dumps(answer, separators=(",", ":")).encode()


def _oldest(now: datetime, retention_days: int) -> datetime:
    """The oldest timestamp the retention keeps, or the earliest datetime when that is before it.

    Settings validation bounds ``retention_days``; this keeps settings built without it
    (``model_construct``) from making every request a 500.
    """
    try:
        return now - timedelta(days=retention_days)
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


def _accepted(events: list[InferenceEvent], inserted: set[str]) -> int:
    """How many of this request's events were newly stored.

    Requests sharing a group commit share ``inserted``: an id among them counts for the request whose
    event was stored, and is a duplicate in the others (and in the rest of its own request).
    """
    if isinstance(inserted, InsertedIds):
        return sum(1 for event in events if inserted.stored_from(event))
    return len({e.request_id for e in events if e.request_id in inserted})  # a plain set: no owner known


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def handle_log(rt: Runtime, scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer one ``POST /v1/metrics/log`` (errors through the app's own error handlers)."""
    try:
        client = scope.get("client")
        query = QueryParams(scope["query_string"]) if scope.get("query_string") else ()
        check_request(rt, _header(scope, b"authorization"), query, _header(scope, b"content-type"),
                      client[0] if client else "?")
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the caller left; nothing to answer
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = await accept(rt, b"".join(chunks))
    except RequestValidationError as exc:
        response = await validation_error_handler(Request(scope), exc)
    except StarletteHTTPException as exc:
        response = await api_error_handler(Request(scope), exc)
    else:
        headers = [(b"content-length", str(len(body)).encode()), *_JSON_HEADERS]
        await send({"type": "http.response.start", "status": 202, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    await response(scope, receive, send)
