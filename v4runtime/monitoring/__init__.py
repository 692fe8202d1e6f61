"""The monitoring API: FastAPI app, store backends, batched ingestion, aggregates, alerts and auth.

Start it with ``v4runtime monitor serve`` or build the app with :func:`create_app`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["create_app", "open_store"]

if TYPE_CHECKING:  # pragma: no cover
    from v4runtime.monitoring.app import create_app
    from v4runtime.monitoring.store import open_store


def __getattr__(name: str) -> Any:
    # Lazy: the CLI imports v4runtime.monitoring.commands and must not pay for FastAPI.
    if name == "create_app":
        from v4runtime.monitoring.app import create_app

        return create_app
    if name == "open_store":
        from v4runtime.monitoring.store import open_store

        return open_store
    raise AttributeError(name)
