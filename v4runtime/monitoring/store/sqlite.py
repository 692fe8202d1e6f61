"""SQLite backend: one file in WAL mode; a batch is one ``BEGIN IMMEDIATE`` transaction."""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from v4runtime.errors import StoreError
from v4runtime.monitoring.store.base import EVENT_COLUMNS, PROOF_FRESH_S, ConnectionPool, Store, ddl

_INSERT_OR_IGNORE = (
    f"INSERT OR IGNORE INTO events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
)

#: SQLite primary result codes that mean the file cannot be used, whatever the statement: busy or
#: locked past the timeout, out of memory, read-only, I/O error, corrupt, disk full, cannot open,
#: lock protocol, not a database, permission denied. SQLITE_ERROR (1), which also covers SQL syntax
#: errors and missing tables, is not among them: those are bugs.
_UNUSABLE_CODES = frozenset({
    sqlite3.SQLITE_PERM, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_NOMEM,
    sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PROTOCOL, sqlite3.SQLITE_NOTADB,
})


class _Connection(sqlite3.Connection):
    """A connection that knows whether SQLite opened it read-only."""

    #: The file could not be written when this connection opened: SQLite then silently opens it read-only,
    #: for the connection's whole life, so every write on it fails even after the file is writable again.
    read_only = False


#: Files SQLite's WAL mode keeps beside the database, by suffix of its name.
WAL_SUFFIXES = ("-wal", "-shm")


def _milliseconds(seconds: float) -> int:
    """A timeout for ``PRAGMA busy_timeout`` (0 there would mean: do not wait at all)."""
    return max(1, round(seconds * 1000))


def unusable(exc: BaseException) -> bool:
    """True for a sqlite3 error that means the database file cannot be used (see ``_UNUSABLE_CODES``)."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)  # extended code: the primary one is its low byte
    return code is not None and (code & 0xFF) in _UNUSABLE_CODES


class SQLiteStore(Store):
    """Store in a SQLite file.

    In WAL mode a commit is in the operating system's hands when it returns, so an acknowledged event
    survives a killed server (``synchronous=NORMAL``, the default). ``synchronous=FULL`` also fsyncs each
    commit, surviving a power cut, at the cost of one fsync per group commit (about 5 ms on our CI disk).

    A server calls :meth:`start_background`: WAL checkpoints (which fsync) then run on a thread of their
    own instead of inside whichever commit crosses the WAL size threshold, so a group commit never waits
    for one. Other users (tests, the benchmark's preload) keep SQLite's automatic checkpoints.

    ``timeout_s`` is how long a statement waits for a lock another connection holds (another process
    writing, a backup) before it fails with :class:`StoreError` ("database is locked").
    """

    backend = "sqlite"

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL", timeout_s: float = 30.0) -> None:
        super().__init__()
        self._auto_checkpoint = True
        self.path = Path(path)
        self.label = f"SQLite store {self.path}"
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise StoreError(f"sqlite synchronous must be NORMAL or FULL, not {synchronous!r}")
        self._synchronous = synchronous.upper()
        if not (math.isfinite(timeout_s) and 0 < timeout_s <= 3600):
            raise StoreError(f"sqlite timeout must be more than 0 and at most 3600 seconds, not {timeout_s!r}")
        self.timeout_s = float(timeout_s)
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
        # A connection that met an unusable file is closed rather than pooled, and one opened read-only
        # is replaced once the file is writable again: writes work again without a restart.
        self._pool = ConnectionPool(
            self._connect, size=8, label=self.label, discard=unusable, stale=self._reopenable
        )
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None

    def start_background(self, period_s: float = 0.5) -> None:
        """Checkpoint the WAL every ``period_s`` on a thread, off the commit path."""
        if self._checkpointer is not None:
            return
        self._auto_checkpoint = False
        with self._translated():
            self._pool.configure("PRAGMA wal_autocheckpoint=0")
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, args=(period_s,), name="v4-sqlite-checkpoint", daemon=True
        )
        self._checkpointer.start()

    def _checkpoint_loop(self, period_s: float) -> None:
        conn: _Connection | None = None
        try:
            while not self._stop.wait(period_s):
                try:
                    if conn is not None and self._reopenable(conn):
                        conn.close()  # opened read-only: it could never checkpoint, and the WAL would grow
                        conn = None
                    if conn is None:
                        conn = self._connect()
                    # PASSIVE never blocks writers; pages written meanwhile go in the next pass.
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # busy or I/O hiccup: retry next period
                    if conn is not None and unusable(exc):  # a fresh connection next period
                        conn.close()
                        conn = None
                    continue
        finally:
            if conn is not None:
                conn.close()

    def close(self) -> None:
        """Stop the checkpoint thread (one last checkpoint runs in SQLite's close) and close connections."""
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join(5)
            self._checkpointer = None
        super().close()

    def _connect(self) -> _Connection:
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE for writes).
        conn: _Connection = sqlite3.connect(
            self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False, factory=_Connection
        )
        conn.read_only = not os.access(self.path, os.W_OK)
        try:
            conn.execute("PRAGMA journal_mode=WAL")  # the first statement to read the file
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute(f"PRAGMA busy_timeout={_milliseconds(self.timeout_s)}")
            if not self._auto_checkpoint:
                conn.execute("PRAGMA wal_autocheckpoint=0")
        except sqlite3.Error:
            conn.close()  # e.g. not a database: no half-set-up connection left to the garbage collector
            raise
        return conn

    def _reopenable(self, conn: _Connection) -> bool:
        # os.access only for a read-only connection: the usual one costs nothing more.
        return conn.read_only and os.access(self.path, os.W_OK)

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

    def _check_writable(self, timeout_s: float) -> None:
        self.check_file()
        # os.access, not a trial open: closing any descriptor of the database file would drop the POSIX
        # locks SQLite holds on it in this process. A file that cannot be written makes every connection
        # opened from now on read-only, and the WAL files take every commit.
        for suffix in ("", *WAL_SUFFIXES):
            path = self.path.with_name(self.path.name + suffix)
            if (suffix == "" or os.path.lexists(path)) and not os.access(path, os.W_OK):
                raise StoreError(f"{self.label}: {path.name} is not writable")
        with self._connection(wait_s=timeout_s) as conn:
            if time.monotonic() - self._writable_at < PROOF_FRESH_S:
                conn.execute("SELECT 1").fetchall()  # a commit just proved the rest: only check it answers
                return
            # A short lock wait: a database locked by another process must not hold readiness for timeout_s.
            conn.execute(f"PRAGMA busy_timeout={_milliseconds(timeout_s)}")
            try:
                # BEGIN IMMEDIATE alone proves nothing: on a read-only connection SQLite makes it a read
                # transaction. Setting user_version to its own value needs a writable page; rolled back,
                # nothing reaches the disk.
                conn.execute("BEGIN IMMEDIATE")
                version = int(conn.execute("PRAGMA user_version").fetchone()[0])
                conn.execute(f"PRAGMA user_version={version}")
                conn.execute("ROLLBACK")
            except BaseException:
                if conn.in_transaction:
                    self._rollback(conn)
                raise
            finally:
                conn.execute(f"PRAGMA busy_timeout={_milliseconds(self.timeout_s)}")
        self._writable_at = time.monotonic()

    def _begin(self, conn: Any) -> None:
        self.check_file()
        conn.execute("BEGIN IMMEDIATE")

    def _greatest(self) -> str:
        return "max"

    def _unavailable(self, exc: BaseException) -> bool:
        return unusable(exc)

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
        with self._connection() as conn:
            return conn.execute(sql, params).fetchall()

    def _execute(self, sql: str, params: Any) -> None:
        self.check_file()
        with self._connection() as conn:
            conn.execute(sql, params)
