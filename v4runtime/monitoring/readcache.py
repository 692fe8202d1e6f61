"""Answers built from the alerts and models tables, reused until those tables change.

``GET /alerts/recent`` and ``GET /models/versions`` are read far more often than alerts or models are
written. Every write through the store bumps :attr:`Store.generation`, so an answer cached under the
generation it was built at is exact for this server's own writes; ``ttl_s`` bounds how stale it can be
when another server process writes to the same database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable

from fastapi.concurrency import run_in_threadpool

from v4runtime.monitoring.store import Store

MAX_ENTRIES = 64


class ReadCache:
    """JSON answers keyed by request parameters, valid for one store generation and at most ``ttl_s``."""

    def __init__(self, store: Store, ttl_s: float = 1.0) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._entries: dict[Hashable, tuple[int, float, bytes]] = {}
        self._lock = threading.Lock()
        self.hits = 0

    async def get(self, key: Hashable, build: Callable[[], bytes]) -> bytes:
        """The cached answer for ``key``, or ``build()`` run in a worker thread (and cached)."""
        generation = self.store.generation  # read before building: a write meanwhile invalidates the result
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[0] == generation and now - entry[1] < self.ttl_s:
            self.hits += 1
            return entry[2]
        body = await run_in_threadpool(build)
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (generation, now, body)
        return body
