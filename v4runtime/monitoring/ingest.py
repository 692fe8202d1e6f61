"""Asynchronous, batched ingestion with group commit.

Requests hand their events to :class:`BatchWriter`, which commits everything queued so far in one
transaction on its own thread, then resolves each request's future. The API answers 202 only after
that commit, so an acknowledged event is durable; batching comes for free under load because requests
that arrive while a commit runs share the next one. The next commit starts as soon as the previous one
ends (no timer), so an idle server commits a lone event at once.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from v4runtime.monitoring.api_errors import store_failures
from v4runtime.monitoring.schemas import InferenceEvent
from v4runtime.monitoring.store import Store
from v4runtime.monitoring.store.base import WriteResult

log = logging.getLogger(__name__)


class Overloaded(Exception):
    """The ingest queue is full; the caller should retry later."""


@dataclass
class _Item:
    events: Sequence[InferenceEvent]
    future: Future[set[str]] | asyncio.Future[set[str]]


def _settle(futures: list[asyncio.Future[set[str]]], inserted: set[str] | None, error: BaseException | None) -> None:
    """Resolve a commit's asyncio futures (on their event loop's thread)."""
    for future in futures:
        if future.done():  # cancelled: the request went away
            continue
        if error is None:
            future.set_result(inserted)  # type: ignore[arg-type]
        else:
            future.set_exception(error)


class BatchWriter:
    """One writer thread per process: drains the queue and commits it as one batch.

    Args:
        store: where batches go.
        max_batch_events: upper bound on events in one transaction.
        max_queue: requests waiting at most; beyond it :meth:`submit` raises :class:`Overloaded`.
        on_commit: called on the writer thread after each successful commit (metrics, alerts).
    """

    def __init__(
        self,
        store: Store,
        *,
        max_batch_events: int = 20_000,
        max_queue: int = 20_000,
        on_commit: Callable[[WriteResult], None] | None = None,
    ) -> None:
        self.store = store
        self.max_batch_events = max_batch_events
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=max_queue)
        self._on_commit = on_commit
        self._thread: threading.Thread | None = None
        self.committed_events = 0
        self.commits = 0
        self.failures = 0
        self.last_error: str | None = None

    def start(self) -> None:
        """Start the writer thread."""
        self._thread = threading.Thread(target=self._run, name="v4-batch-writer", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Whether the writer thread runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def depth(self) -> int:
        """Requests waiting for a commit."""
        return self._queue.qsize()

    def submit(self, events: Sequence[InferenceEvent]) -> Future[set[str]]:
        """Queue events; the future resolves to the newly inserted ids once committed.

        Raises:
            Overloaded: the queue is full.
        """
        future: Future[set[str]] = Future()
        try:
            self._queue.put_nowait(_Item(events, future))
        except queue.Full as exc:
            raise Overloaded("ingest queue is full") from exc
        return future

    def submit_async(self, events: Sequence[InferenceEvent]) -> asyncio.Future[set[str]]:
        """Like :meth:`submit`, for a caller on an event loop: its future is resolved on that loop.

        The writer settles all of a commit's futures of one loop with a single wake-up of that loop,
        instead of one thread hand-off per request.

        Raises:
            Overloaded: the queue is full.
        """
        future: asyncio.Future[set[str]] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Item(events, future))
        except queue.Full as exc:
            raise Overloaded("ingest queue is full") from exc
        return future

    def stop(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the thread."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            count = len(first.events)
            while count < self.max_batch_events:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
                count += len(item.events)
            self._commit(batch)

    def _commit(self, batch: list[_Item]) -> None:
        events = [e for item in batch for e in item.events]
        try:
            result = self._write_with_retry(events)
        except Exception as exc:  # noqa: BLE001 - every waiting request must get an answer
            if len(batch) > 1 and not isinstance(exc, store_failures()):
                # The store is up but refused the data: commit each request alone, so one bad request
                # fails by itself instead of failing every request that shared its group commit.
                log.warning("group commit of %d requests refused (%s): committing them one by one", len(batch), exc)
                for item in batch:
                    self._commit([item])
                return
            self.failures += 1
            self.last_error = str(exc)
            log.error("batch of %d events not stored: %s", len(events), exc)
            self._resolve(batch, None, exc)
            return
        self.commits += 1
        self.committed_events += len(result.inserted)
        self.last_error = None
        self._resolve(batch, result.inserted, None)
        if self._on_commit is not None:
            try:
                self._on_commit(result)
            except Exception:  # noqa: BLE001 - observers must not stop ingestion
                log.exception("on_commit observer failed")

    @staticmethod
    def _resolve(batch: list[_Item], inserted: set[str] | None, error: BaseException | None) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[set[str]]]] = {}
        for item in batch:
            future = item.future
            if isinstance(future, asyncio.Future):
                by_loop.setdefault(future.get_loop(), []).append(future)
            elif error is None:
                future.set_result(inserted)  # type: ignore[arg-type]
            else:
                future.set_exception(error)
        for loop, futures in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, futures, inserted, error)
            except RuntimeError:  # that loop is closed: nobody waits any more
                log.warning("%d answers dropped: event loop closed", len(futures))

    def _write_with_retry(self, events: list[InferenceEvent]) -> WriteResult:
        # One quick retry covers a transient lock or a dropped connection.
        for attempt in range(2):
            try:
                return self.store.write_events(events, time.time())
            except Exception:
                if attempt:
                    raise
                time.sleep(0.05)
        raise AssertionError("unreachable")  # pragma: no cover
