"""Typed errors raised by v4runtime.

Every error a user can trigger with bad input is a subclass of :class:`V4Error`, carries a
human-readable message and, where useful, a machine-readable ``reason``. Callers catch the
specific class; the CLI turns any ``V4Error`` into a one-line message and a non-zero exit.
"""

from __future__ import annotations


class V4Error(Exception):
    """Base class of every error v4runtime raises on purpose."""

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or type(self).__name__

    def __str__(self) -> str:
        return self.message


class ConfigError(V4Error):
    """A configuration file, environment variable or CLI option is invalid."""


class ImageError(V4Error):
    """An image could not be read or is outside what the pipeline accepts.

    ``reason`` is one of a small fixed set (``empty``, ``truncated``, ``not_an_image``,
    ``too_many_pixels``, ``unsupported``, ...) so callers can count failures by cause.
    """


class EmbedError(V4Error):
    """A payload cannot be embedded (does not fit, or the method does not apply to the format)."""


class ExtractError(V4Error):
    """No framed payload could be recovered from an image."""


class ModelError(V4Error):
    """A model file is missing, corrupt, or does not have the expected signature."""


class QuantizationError(V4Error):
    """INT8 quantisation could not be performed (bad model, bad calibration data)."""


class GateFailed(V4Error):
    """The INT8 false-positive-rate gate rejected a quantised model."""


class StoreError(V4Error):
    """The monitoring store cannot be reached or rejected an operation."""


class MonitoringError(V4Error):
    """The monitoring API answered with an error, or could not be reached (added by H-monitor).

    ``status_code`` is the HTTP status (``None`` when no answer came), ``reason`` the error envelope's
    ``code`` (e.g. ``validation_error``, ``rate_limited``, ``unreachable``), ``request_id`` the server's id.
    """

    def __init__(
        self, message: str, *, reason: str | None = None, status_code: int | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.status_code = status_code
        self.request_id = request_id


class RunbookError(V4Error):
    """A runbook is malformed, or a runbook run failed."""
