"""SQLite backend: one file in WAL mode; a batch is one ``BEGIN IMMEDIATE`` transaction."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from v4runtime.errors import StoreError
from v4runtime.monitoring.store.base import EVENT_COLUMNS, ConnectionPool, Store, ddl

_INSERT_OR_IGNORE = (
    f"INSERT OR IGNORE INTO events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
)


class SQLiteStore(Store):
    """Store in a SQLite file.

    In WAL mode a commit is in the operating system's hands when it returns, so an acknowledged event
    survives a killed server (``synchronous=NORMAL``, the default). ``synchronous=FULL`` also fsyncs each
    commit, surviving a power cut, at the cost of one fsync per group commit (about 5 ms on our CI disk).

    A server calls :meth:`start_background`: WAL checkpoints (which fsync) then run on a thread of their
    own instead of inside whichever commit crosses the WAL size threshold, so a group commit never waits
    for one. Other users (tests, the benchmark's preload) keep SQLite's automatic checkpoints.
    """

    backend = "sqlite"

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL") -> None:
        super().__init__()
        self._auto_checkpoint = True
        self.path = Path(path)
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise StoreError(f"sqlite synchronous must be NORMAL or FULL, not {synchronous!r}")
        self._synchronous = synchronous.upper()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._connect()
            for statement in ddl("REAL", "INTEGER", "INTEGER PRIMARY KEY AUTOINCREMENT"):
                conn.execute(statement)
            conn.commit()
            conn.close()
            self._identity = self._file_identity()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open SQLite store {self.path}: {exc}") from exc
        self._pool = ConnectionPool(self._connect, size=8)
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None

    def start_background(self, period_s: float = 0.5) -> None:
        """Checkpoint the WAL every ``period_s`` on a thread, off the commit path."""
        if self._checkpointer is not None:
            return
        self._auto_checkpoint = False
        self._pool.configure("PRAGMA wal_autocheckpoint=0")
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, args=(period_s,), name="v4-sqlite-checkpoint", daemon=True
        )
        self._checkpointer.start()

    def _checkpoint_loop(self, period_s: float) -> None:
        conn = self._connect()
        try:
            while not self._stop.wait(period_s):
                try:
                    # PASSIVE never blocks writers; pages written meanwhile go in the next pass.
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:  # busy or I/O hiccup: retry next period
                    continue
        finally:
            conn.close()

    def close(self) -> None:
        """Stop the checkpoint thread (one last checkpoint runs in SQLite's close) and close connections."""
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join(5)
            self._checkpointer = None
        super().close()

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE for writes).
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA busy_timeout=30000")
        if not self._auto_checkpoint:
            conn.execute("PRAGMA wal_autocheckpoint=0")
        return conn

    def _file_identity(self) -> tuple[int, int]:
        st = os.stat(self.path)
        return st.st_dev, st.st_ino

    def check_file(self) -> None:
        """Raise :class:`StoreError` when the database file was deleted or replaced under the server.

        Open connections keep writing to a deleted file's inode, which vanishes with the process: a
        commit there would be acknowledged and then lost, so writes and the health check refuse it.
        """
        try:
            identity = self._file_identity()
        except OSError as exc:
            raise StoreError(f"SQLite database file {self.path} is gone: {exc.strerror}") from exc
        if identity != self._identity:
            raise StoreError(f"SQLite database file {self.path} was replaced while the server ran; restart it")

    def ping(self) -> float:
        """Check the file is still the one opened, then round-trip a trivial query; returns ms."""
        self.check_file()
        return super().ping()

    def _begin(self, conn: Any) -> None:
        self.check_file()
        conn.execute("BEGIN IMMEDIATE")

    def _greatest(self) -> str:
        return "max"

    def _insert_new_events(self, cur: Any, rows: list[tuple[Any, ...]]) -> set[str]:
        # Inside BEGIN IMMEDIATE we hold the write lock, so both paths below are race-free. Usually every
        # id is new: insert them all, skipping stored ones, and check that none was skipped.
        cur.execute("SAVEPOINT new_events")
        cur.executemany(_INSERT_OR_IGNORE, rows)
        if cur.rowcount == len(rows):
            cur.execute("RELEASE new_events")
            return {r[0] for r in rows}
        # Some were stored already (a retry): undo, then look them up and insert only the others.
        cur.execute("ROLLBACK TO new_events")
        cur.execute("RELEASE new_events")
        ids = [r[0] for r in rows]
        existing: set[str] = set()
        for i in range(0, len(ids), 900):
            chunk = ids[i : i + 900]
            cur.execute(f"SELECT request_id FROM events WHERE request_id IN ({', '.join('?' * len(chunk))})", chunk)
            existing.update(r[0] for r in cur.fetchall())
        fresh = [r for r in rows if r[0] not in existing]
        cur.executemany(
            f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})", fresh
        )
        return {r[0] for r in fresh}

    def _query(self, sql: str, params: Any) -> list[Any]:
        # Autocommit reads: no explicit transaction is needed.
        with self._pool.connection() as conn:
            return conn.execute(sql, params).fetchall()

    def _execute(self, sql: str, params: Any) -> None:
        self.check_file()
        with self._pool.connection() as conn:
            conn.execute(sql, params)
