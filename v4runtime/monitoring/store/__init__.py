"""Storage backends of the monitoring API: SQLite (WAL, default) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

from v4runtime.errors import StoreError
from v4runtime.monitoring.store.base import AlertRecord, ModelRecord, Store

__all__ = ["AlertRecord", "ModelRecord", "Store", "open_store"]


def open_store(url: str, *, sqlite_synchronous: str = "NORMAL", sqlite_timeout_s: float = 30.0) -> Store:
    """Open (and create the tables of) the store named by ``url``.

    ``sqlite:///path.db`` (relative), ``sqlite:////abs/path.db``, ``sqlite:///:memory:`` is refused
    (the writer and the readers need a shared file), ``postgresql://user@host:port/db``. The ``sqlite_*``
    options apply to a SQLite store only (see :class:`~v4runtime.monitoring.store.sqlite.SQLiteStore`).

    Raises:
        StoreError: unknown scheme, or the database cannot be opened.
    """
    if url.startswith("sqlite:///"):
        from v4runtime.monitoring.store.sqlite import SQLiteStore

        path = url[len("sqlite:///") :]
        if not path or path == ":memory:":
            raise StoreError("sqlite URL needs a file path, e.g. sqlite:///v4-monitor.db")
        return SQLiteStore(path, synchronous=sqlite_synchronous, timeout_s=sqlite_timeout_s)
    if url.startswith(("postgresql://", "postgres://")):
        from v4runtime.monitoring.store.postgres import PostgresStore

        return PostgresStore(url)
    raise StoreError(f"unsupported database URL {url!r}: use sqlite:///FILE or postgresql://...")
