"""The store interface shared by both backends, with the SQL they have in common.

Write path: :meth:`Store.write_events` stores a batch of events *and* adds them to the per-minute
aggregates in one transaction, so a committed batch is durable and counted exactly once (the event's
``request_id`` is the idempotency key). SQL is written with ``?`` placeholders; the PostgreSQL backend
rewrites them to ``%s``.

Errors: every public method raises :class:`~v4runtime.errors.StoreError` (chained to the driver's error)
when the database cannot be reached or used (read-only, I/O error, locked past the timeout, connection
lost), naming the store but never a password. A driver error that means a bug (SQL syntax, a constraint)
is raised as it is.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from v4runtime.errors import StoreError
from v4runtime.monitoring.aggregates import HIST_COLUMNS, SUM_COLUMNS, MinuteAgg, deltas
from v4runtime.monitoring.schemas import InferenceEvent

EVENT_COLUMNS: tuple[str, ...] = (
    "request_id", "ts", "model_version", "latency_ms", "probability", "prediction", "method",
    "image_format", "image_bytes", "width", "height", "label", "error", "pod", "node", "received",
)
AGG_VALUE_COLUMNS: tuple[str, ...] = (*SUM_COLUMNS, "lat_max", *HIST_COLUMNS)
ALERT_COLUMNS: tuple[str, ...] = (
    "id", "fingerprint", "rule", "status", "severity", "value", "threshold", "labels", "annotations",
    "starts_at", "ends_at", "updated_at", "acknowledged_by", "acknowledged_at", "suppress_until", "notified",
)
MODEL_COLUMNS: tuple[str, ...] = (
    "version", "role", "sha256", "size_bytes", "fpr", "tpr", "registered_at", "deployed_at",
)
_MODELS_ORDER = "ORDER BY registered_at DESC"
_UPSERT_MODELS = (
    f"INSERT INTO models ({', '.join(MODEL_COLUMNS)}) VALUES ({', '.join('?' * len(MODEL_COLUMNS))}) "
    "ON CONFLICT (version) DO UPDATE SET role = excluded.role, sha256 = excluded.sha256, "
    "size_bytes = excluded.size_bytes, fpr = excluded.fpr, tpr = excluded.tpr, "
    "deployed_at = excluded.deployed_at"
)
#: Default bound of :meth:`Store.check_writable`, in seconds: readiness may be polled every second, and a
#: locked database must not hold it for the store's whole lock timeout.
PROBE_TIMEOUT_S = 1.0
#: A commit (or a write check) this recent proves the store takes writes, so a check need not take the
#: write lock again: under load it would queue behind the writer's group commits, for nothing.
PROOF_FRESH_S = 1.0


@dataclass
class AlertRecord:
    """A stored alert episode (times in epoch seconds, labels/annotations as dicts)."""

    id: int
    fingerprint: str
    rule: str
    status: str
    severity: str
    value: float | None
    threshold: float
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    ends_at: float | None
    updated_at: float
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None
    suppress_until: float | None = None
    notified: str | None = None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> AlertRecord:
        """Build from a row in ALERT_COLUMNS order."""
        values = dict(zip(ALERT_COLUMNS, row, strict=True))
        values["labels"] = json.loads(values["labels"])
        values["annotations"] = json.loads(values["annotations"])
        return cls(**values)


class InsertedIds(set[str]):
    """The request_ids a group commit newly stored, and the event object each one was stored from.

    Every request that shared the commit gets this same set. :meth:`stored_from` tells them apart: an
    id sent by several of them (or twice by one) is new for the one event that was stored, and a
    duplicate for the others, so only one request reports it accepted.
    """

    def __init__(self, ids: Iterable[str], sources: Mapping[str, InferenceEvent]) -> None:
        super().__init__(ids)
        self._sources = sources

    def stored_from(self, event: InferenceEvent) -> bool:
        """Whether ``event``, this very object, is the one stored under its request_id by this commit."""
        return event.request_id in self and self._sources.get(event.request_id or "") is event


@dataclass
class WriteResult:
    """Outcome of one group commit."""

    inserted: InsertedIds
    groups: dict[tuple[int, str], MinuteAgg]


@dataclass
class ModelRecord:
    """A registered model version (times in epoch seconds)."""

    version: str
    role: str
    sha256: str
    size_bytes: int
    fpr: float | None
    tpr: float | None
    registered_at: float
    deployed_at: float | None


def one_line(exc: BaseException) -> str:
    """The first non-blank line of an error's message (libpq's run over several), or its class name.

    One line, because the API puts it after ``store unavailable:`` in a 503 and the CLI prints it as is.
    """
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def event_row(event: InferenceEvent, received: float) -> tuple[Any, ...]:
    """An event as a row in EVENT_COLUMNS order."""
    assert event.timestamp is not None
    return (
        event.request_id, event.timestamp.timestamp(), event.model_version, event.latency_ms,
        event.probability, event.prediction, event.method, event.image_format, event.image_bytes,
        event.width, event.height, event.label, event.error, event.pod, event.node, received,
    )


class ConnectionPool:
    """A small fixed pool of DB-API connections handed out one thread at a time.

    ``discard`` tells which errors leave a connection unfit for reuse even when it can still roll back;
    ``stale`` which idle connections to replace before handing them out (e.g. a SQLite connection that
    was opened read-only while its file could not be written, once the file can be written again).
    ``label`` names the store in errors; ``wait_s`` is how long a borrower waits for a free connection.
    """

    def __init__(
        self,
        factory: Callable[[], Any],
        size: int,
        *,
        label: str = "store",
        wait_s: float = 30.0,
        discard: Callable[[BaseException], bool] | None = None,
        stale: Callable[[Any], bool] | None = None,
    ) -> None:
        self._factory = factory
        self.label = label
        self.wait_s = wait_s
        self._discard = discard
        self._stale = stale
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._all: list[Any] = []
        self._size = size
        self._lock = threading.Lock()

    @contextmanager
    def connection(self, wait_s: float | None = None) -> Iterator[Any]:
        """Borrow a connection; a new one is opened while the pool is below its size.

        Raises:
            StoreError: every connection stayed busy for ``wait_s`` (default: the pool's ``wait_s``).
        """
        wait_s = self.wait_s if wait_s is None else wait_s
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            with self._lock:
                grow = len(self._all) < self._size
                if grow:
                    conn = self._factory()
                    self._all.append(conn)
            if not grow:
                try:
                    conn = self._idle.get(timeout=wait_s)
                except queue.Empty:
                    raise StoreError(f"{self.label}: no database connection free after {wait_s:g} s") from None
        if self._stale is not None and self._stale(conn):
            self._drop(conn)
            with self._lock:
                conn = self._factory()
                self._all.append(conn)
        try:
            yield conn
        except BaseException as exc:
            if (self._discard is not None and self._discard(exc)) or not self._reusable(conn):
                # A dead server connection (e.g. PostgreSQL restarted), or one the backend says is unfit:
                # replace it, do not pool it.
                self._drop(conn)
                raise
            self._idle.put(conn)
            raise
        self._idle.put(conn)

    def _drop(self, conn: Any) -> None:
        """Close a borrowed connection and forget it (the pool may open another in its place)."""
        with self._lock:
            self._all.remove(conn)
        with contextlib.suppress(Exception):
            conn.close()

    @staticmethod
    def _reusable(conn: Any) -> bool:
        """After a failed statement: roll back, so the next borrower does not inherit an aborted transaction."""
        if getattr(conn, "broken", False) or getattr(conn, "closed", False):
            return False
        try:
            conn.rollback()
        except Exception:  # noqa: BLE001 - a connection that cannot roll back is not reused
            return False
        return True

    def configure(self, sql: str) -> None:
        """Run a statement (a PRAGMA) on every open connection; call it while the pool is idle."""
        with self._lock:
            for conn in self._all:
                conn.execute(sql)

    def close(self) -> None:
        """Close every connection."""
        with self._lock:
            for conn in self._all:
                with contextlib.suppress(Exception):  # closing is best effort
                    conn.close()
            self._all.clear()


class Store(ABC):
    """Persistence for events, minute aggregates, alerts and model versions."""

    backend: str = "?"
    #: Placeholder style of the backend's driver.
    placeholder: str = "?"

    def __init__(self) -> None:
        self._pool: ConnectionPool
        #: How error messages name this store (a path, or a DSN without its password).
        self.label = self.backend
        #: Bumped by every write to alerts or models, so readers can cache what they built from them.
        self.generation = 0
        self._generations = itertools.count(1)
        #: time.monotonic() of the last commit of events or passed write check (see PROOF_FRESH_S).
        self._writable_at = -math.inf

    def _bump(self) -> None:
        # next() on a count is atomic under the GIL, unlike `+= 1` from several threads.
        self.generation = next(self._generations)

    def start_background(self) -> None:
        """Start the backend's housekeeping threads, if it has any (a server calls this once)."""
        return None

    # Backend specifics ----------------------------------------------------------------------
    @abstractmethod
    def _insert_new_events(self, cur: Any, rows: list[tuple[Any, ...]]) -> set[str]:
        """Insert rows, skipping request_ids already stored; return the ids actually inserted."""

    @abstractmethod
    def _begin(self, conn: Any) -> None:
        """Start a write transaction."""

    @abstractmethod
    def _greatest(self) -> str:
        """Name of the two-argument maximum function."""

    def _unavailable(self, exc: BaseException) -> bool:
        """True when ``exc`` (a driver error) means the database cannot be reached or used, not a bug."""
        return False

    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """Turn the driver's connection and I/O errors into :class:`StoreError`; let the others through."""
        try:
            yield
        except StoreError:
            raise
        except Exception as exc:
            if not self._unavailable(exc):
                raise
            raise StoreError(f"{self.label}: {one_line(exc)}") from exc

    @contextmanager
    def _connection(self, wait_s: float | None = None) -> Iterator[Any]:
        """A pooled connection, with driver failures (opening it included) raised as :class:`StoreError`."""
        with self._translated(), self._pool.connection(wait_s) as conn:
            yield conn

    @staticmethod
    def _rollback(conn: Any) -> None:
        # Best effort: on a dead connection the rollback fails too, and its error would hide the first one.
        # The pool then sees a connection that cannot roll back and drops it.
        with contextlib.suppress(Exception):
            conn.rollback()

    # Writes ---------------------------------------------------------------------------------
    def write_events(self, events: Sequence[InferenceEvent], received: float | None = None) -> WriteResult:
        """Store a batch of events and their aggregates in one transaction (a group commit).

        Returns:
            The request_ids newly stored (the others were already there), each with the event it was
            stored from (the first of the batch with that id), and what they added per minute.
        """
        received = time.time() if received is None else received
        unique: dict[str, InferenceEvent] = {}
        for event in events:
            assert event.request_id is not None
            unique.setdefault(event.request_id, event)
        rows = [event_row(e, received) for e in unique.values()]
        with self._connection() as conn:
            try:
                self._begin(conn)
                cur = conn.cursor()
                inserted = self._insert_new_events(cur, rows)
                fresh = [e for rid, e in unique.items() if rid in inserted]
                groups = deltas(fresh)
                self._upsert_aggregates(cur, groups)
                conn.commit()
            except BaseException:
                self._rollback(conn)
                raise
        self._writable_at = time.monotonic()
        return WriteResult(InsertedIds(inserted, unique), groups)

    def _upsert_aggregates(self, cur: Any, groups: dict[tuple[int, str], MinuteAgg]) -> None:
        if not groups:
            return
        cols = ("minute", "model_version", *AGG_VALUE_COLUMNS)
        sets = ", ".join(
            f"{c} = agg_minute.{c} + excluded.{c}" for c in (*SUM_COLUMNS, *HIST_COLUMNS)
        ) + f", lat_max = {self._greatest()}(agg_minute.lat_max, excluded.lat_max)"
        sql = (
            f"INSERT INTO agg_minute ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
            f"ON CONFLICT (minute, model_version) DO UPDATE SET {sets}"
        )
        cur.executemany(self._sql(sql), [(m, v, *agg.row()) for (m, v), agg in groups.items()])

    # Reads ----------------------------------------------------------------------------------
    def read_minutes(self, start: int, end: int, model_version: str | None = None) -> list[tuple[int, MinuteAgg]]:
        """Minute rows with ``start <= minute < end``, summed over model versions unless one is given."""
        where = "minute >= ? AND minute < ?"
        params: list[Any] = [start, end]
        if model_version is not None:
            where += " AND model_version = ?"
            params.append(model_version)
        # Plain rows in key order, merged here: a GROUP BY with 76 SUMs cost SQLite three times as much.
        sql = f"SELECT minute, {', '.join(AGG_VALUE_COLUMNS)} FROM agg_minute WHERE {where} ORDER BY minute"
        with self._connection() as conn:
            cur = conn.cursor()
            cur.execute(self._sql(sql), params)
            rows = cur.fetchall()
            conn.commit()
        out: list[tuple[int, MinuteAgg]] = []
        for row in rows:
            minute, agg = int(row[0]), MinuteAgg.from_row(row[1:])
            if out and out[-1][0] == minute:
                out[-1][1].merge(agg)  # another model version in the same minute
            else:
                out.append((minute, agg))
        return out

    def count_events(self) -> int:
        """Number of raw events stored."""
        return int(self._scalar("SELECT COUNT(*) FROM events") or 0)

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are stored."""
        found: set[str] = set()
        with self._connection() as conn:
            cur = conn.cursor()
            for i in range(0, len(ids), 500):
                chunk = list(ids[i : i + 500])
                cur.execute(
                    self._sql(f"SELECT request_id FROM events WHERE request_id IN ({', '.join('?' * len(chunk))})"),
                    chunk,
                )
                found.update(r[0] for r in cur.fetchall())
            conn.commit()
        return found

    def ping(self) -> float:
        """Round-trip a trivial query; returns its latency in ms."""
        t0 = time.perf_counter()
        self._scalar("SELECT 1")
        return (time.perf_counter() - t0) * 1000

    def check_writable(self, timeout_s: float = PROBE_TIMEOUT_S) -> float:
        """Check, without writing data, that the store would take a write now; returns the check's ms.

        What readiness means: a store that answers reads but refuses writes (a read-only file, a standby
        server) is not ready. The check waits at most about ``timeout_s`` for a connection or a lock, and
        round-trips at least one query.

        Raises:
            StoreError: the store cannot be reached, or cannot be written, naming the store and why.
        """
        t0 = time.perf_counter()
        self._check_writable(timeout_s)
        return (time.perf_counter() - t0) * 1000

    @abstractmethod
    def _check_writable(self, timeout_s: float) -> None:
        """Raise :class:`StoreError` unless a write would be accepted now (see :meth:`check_writable`)."""

    def prune(self, events_before: float, aggregates_before: float) -> tuple[int, int]:
        """Delete events and minute rows older than the given epoch times; returns the counts deleted."""
        with self._connection() as conn:
            try:
                self._begin(conn)
                cur = conn.cursor()
                cur.execute(self._sql("DELETE FROM events WHERE ts < ?"), (events_before,))
                n_events = cur.rowcount
                cur.execute(self._sql("DELETE FROM agg_minute WHERE minute < ?"), (int(aggregates_before),))
                n_aggs = cur.rowcount
                conn.commit()
            except BaseException:
                self._rollback(conn)
                raise
        return n_events, n_aggs

    # Alerts ---------------------------------------------------------------------------------
    def insert_alert(self, alert: AlertRecord) -> int:
        """Store a new alert episode; returns its id."""
        cols = ALERT_COLUMNS[1:]
        values = [getattr(alert, c) for c in cols]
        values[cols.index("labels")] = json.dumps(alert.labels, sort_keys=True)
        values[cols.index("annotations")] = json.dumps(alert.annotations, sort_keys=True)
        sql = f"INSERT INTO alerts ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) RETURNING id"
        with self._connection() as conn:
            cur = conn.cursor()
            cur.execute(self._sql(sql), values)
            new_id = int(cur.fetchone()[0])
            conn.commit()
        self._bump()
        return new_id

    def update_alert(self, alert: AlertRecord) -> None:
        """Write back the mutable fields of an alert."""
        sql = (
            "UPDATE alerts SET status = ?, value = ?, ends_at = ?, updated_at = ?, acknowledged_by = ?, "
            "acknowledged_at = ?, suppress_until = ?, notified = ? WHERE id = ?"
        )
        params = (
            alert.status, alert.value, alert.ends_at, alert.updated_at, alert.acknowledged_by,
            alert.acknowledged_at, alert.suppress_until, alert.notified, alert.id,
        )
        self._execute(sql, params)
        self._bump()

    def get_alert(self, alert_id: int) -> AlertRecord | None:
        """One alert by id."""
        rows = self._query(f"SELECT {', '.join(ALERT_COLUMNS)} FROM alerts WHERE id = ?", (alert_id,))
        return AlertRecord.from_row(rows[0]) if rows else None

    def active_alerts(self) -> list[AlertRecord]:
        """Alerts pending or firing (at most one per fingerprint)."""
        rows = self._query(
            f"SELECT {', '.join(ALERT_COLUMNS)} FROM alerts WHERE status IN ('pending', 'firing') ORDER BY id", ()
        )
        return [AlertRecord.from_row(r) for r in rows]

    def recent_alerts(self, *, limit: int, severity: str | None, active_only: bool) -> list[AlertRecord]:
        """Newest alerts first."""
        where, params = [], []
        if severity is not None:
            where.append("severity = ?")
            params.append(severity)
        if active_only:
            where.append("status IN ('pending', 'firing')")
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._query(
            f"SELECT {', '.join(ALERT_COLUMNS)} FROM alerts {clause} ORDER BY updated_at DESC, id DESC LIMIT ?",
            (*params, limit),
        )
        return [AlertRecord.from_row(r) for r in rows]

    # Models ---------------------------------------------------------------------------------
    def list_models(self) -> list[ModelRecord]:
        """Every registered version, newest first."""
        rows = self._query(f"SELECT {', '.join(MODEL_COLUMNS)} FROM models {_MODELS_ORDER}", ())
        return [ModelRecord(*r) for r in rows]

    def save_models(self, records: Sequence[ModelRecord]) -> None:
        """Insert or replace model records in one transaction (role changes move together)."""
        self.update_models(lambda _current: records)

    def update_models(self, change: Callable[[list[ModelRecord]], Sequence[ModelRecord]]) -> list[ModelRecord]:
        """Read every model record, write back the records ``change`` returns, in one serialised transaction.

        The models' write lock is held from the read to the commit, so concurrent changes (threads of one
        server, or several servers on one database) apply one after the other, each to the state the one
        before left: a promotion or rollback decided on a stale read would leave two current versions.
        ``change`` gets the records newest first and may raise to abort: nothing is written then.

        Returns:
            Every record as committed, newest first.
        """
        with self._connection() as conn:
            try:
                self._begin(conn)
                cur = conn.cursor()
                self._lock_models(cur)
                records = self._select_models(cur)
                changed = list(change(records))
                if changed:
                    cur.executemany(self._sql(_UPSERT_MODELS), [tuple(getattr(r, c) for c in MODEL_COLUMNS)
                                                               for r in changed])
                    records = self._select_models(cur)
                conn.commit()
            except BaseException:
                self._rollback(conn)
                raise
        if changed:
            self._bump()
        return records

    def _lock_models(self, cur: Any) -> None:
        """Hold the models' write lock until the transaction ends.

        Nothing to do where :meth:`_begin` already took a database-wide write lock (SQLite's BEGIN IMMEDIATE).
        """
        return None

    def _select_models(self, cur: Any) -> list[ModelRecord]:
        """Every model record, newest first, read inside the caller's transaction."""
        cur.execute(f"SELECT {', '.join(MODEL_COLUMNS)} FROM models {_MODELS_ORDER}")
        return [ModelRecord(*r) for r in cur.fetchall()]

    # Helpers --------------------------------------------------------------------------------
    def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self._query(sql, params)
        return rows[0][0] if rows else None

    def _query(self, sql: str, params: Sequence[Any]) -> list[Any]:
        with self._connection() as conn:
            cur = conn.cursor()
            cur.execute(self._sql(sql), params)
            rows = cur.fetchall()
            conn.commit()
        return rows

    def _execute(self, sql: str, params: Sequence[Any]) -> None:
        with self._connection() as conn:
            cur = conn.cursor()
            cur.execute(self._sql(sql), params)
            conn.commit()

    def close(self) -> None:
        """Close every connection."""
        self._pool.close()


def ddl(real: str, integer: str, autoid: str) -> list[str]:
    """CREATE statements, with the backend's type names."""
    agg_cols = ", ".join(
        f"{c} {real if c in ('prob_sum', 'lat_sum', 'lat_max') else integer} NOT NULL DEFAULT 0"
        for c in AGG_VALUE_COLUMNS
    )
    return [
        f"""CREATE TABLE IF NOT EXISTS events (
            request_id TEXT PRIMARY KEY, ts {real} NOT NULL, model_version TEXT NOT NULL,
            latency_ms {real} NOT NULL, probability {real}, prediction TEXT, method TEXT, image_format TEXT,
            image_bytes {integer}, width {integer}, height {integer}, label TEXT, error TEXT, pod TEXT,
            node TEXT, received {real} NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS events_ts ON events (ts)",
        f"""CREATE TABLE IF NOT EXISTS agg_minute (
            minute {integer} NOT NULL, model_version TEXT NOT NULL, {agg_cols},
            PRIMARY KEY (minute, model_version))""",
        f"""CREATE TABLE IF NOT EXISTS alerts (
            id {autoid}, fingerprint TEXT NOT NULL, rule TEXT NOT NULL, status TEXT NOT NULL,
            severity TEXT NOT NULL, value {real}, threshold {real} NOT NULL, labels TEXT NOT NULL,
            annotations TEXT NOT NULL, starts_at {real} NOT NULL, ends_at {real}, updated_at {real} NOT NULL,
            acknowledged_by TEXT, acknowledged_at {real}, suppress_until {real}, notified TEXT)""",
        "CREATE INDEX IF NOT EXISTS alerts_updated ON alerts (updated_at)",
        f"""CREATE TABLE IF NOT EXISTS models (
            version TEXT PRIMARY KEY, role TEXT NOT NULL, sha256 TEXT NOT NULL, size_bytes {integer} NOT NULL,
            fpr {real}, tpr {real}, registered_at {real} NOT NULL, deployed_at {real})""",
    ]
