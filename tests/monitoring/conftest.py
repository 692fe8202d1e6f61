"""Fixtures: real monitoring servers (subprocesses on 127.0.0.1) and an isolated PostgreSQL schema."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

PG_BASE = os.environ.get("V4_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass
class Server:
    """A running ``v4runtime monitor serve`` subprocess."""

    proc: subprocess.Popen[bytes]
    url: str
    db_url: str
    workdir: Path

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def start_server(workdir: Path, db_url: str, *, env: dict[str, str] | None = None, config: str | None = None,
                 timeout: float = 20.0, wait_for: str = "/health/ready") -> Server:
    """Start a server on a free port and wait until ``wait_for`` answers 200 (``/health/live`` for a
    server that cannot be ready, e.g. on a store it cannot write)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port_file = workdir / f"port-{uuid.uuid4().hex[:6]}"
    cmd = [sys.executable, "-m", "v4runtime", "monitor", "serve", "--db", db_url, "--port", "0",
           "--port-file", str(port_file)]
    if config:
        cmd += ["--config", config]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("V4_")}
    full_env.update(env or {})
    log = (workdir / "server.log").open("ab")
    proc = subprocess.Popen(cmd, cwd=workdir, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {(workdir / 'server.log').read_text()[-2000:]}")
        if port_file.exists():
            url = f"http://127.0.0.1:{port_file.read_text().strip()}"
            try:
                if httpx.get(f"{url}{wait_for}", timeout=1).status_code == 200:
                    return Server(proc, url, db_url, workdir)
            except httpx.HTTPError:
                pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"server did not answer 200 on {wait_for}")


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start servers for one test; all are stopped afterwards."""
    started: list[Server] = []

    def factory(db_url: str | None = None, **kwargs: object) -> Server:
        server = start_server(tmp_path / f"srv{len(started)}", db_url or f"sqlite:///{tmp_path}/m{len(started)}.db",
                              **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server without auth, shared by a module."""
    workdir = tmp_path_factory.mktemp("open-server")
    server = start_server(workdir, f"sqlite:///{workdir}/m.db")
    yield server
    server.stop()


def _pg_available() -> bool:
    try:
        with psycopg.connect(PG_BASE, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    if not _pg_available():
        pytest.fail(f"PostgreSQL is required for this test and is not reachable at {PG_BASE}")
    schema = f"v4mon_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_BASE else "?"
    yield f"{PG_BASE}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    return request.getfixturevalue("pg_url")


@pytest.fixture(scope="module")
def fuzz_base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server with auth on (write token ``fuzz-writer``) for the schema fuzzer."""
    workdir = tmp_path_factory.mktemp("fuzz-server")
    server = start_server(workdir, f"sqlite:///{workdir}/m.db", env={
        "V4_MONITOR__WRITE_TOKENS": "fuzz-writer", "V4_MONITOR__RATE_LIMIT_PER_SECOND": "100000",
        # Large enough that an over-long batch (10,001 events) meets the 422 of the schema, not the 413.
        "V4_MONITOR__MAX_BODY_BYTES": "33554432",
    })
    yield server.url
    server.stop()



class Unwritable:
    """Makes files unwritable for real, even for root: ``chattr +i`` as root, else ``chmod a-w``."""

    def __init__(self) -> None:
        self.locked: list[Path] = []

    def lock(self, path: Path) -> None:
        if os.geteuid() != 0:
            path.chmod(path.stat().st_mode & ~0o222)
        elif subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("root, and chattr +i does not work here (no chattr, or a filesystem without it)")
        self.locked.append(path)

    def unlock(self, path: Path) -> None:
        self.locked.remove(path)
        if os.geteuid() != 0:
            path.chmod(path.stat().st_mode | 0o200)
        else:
            subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.fixture
def unwritable() -> Iterator[Unwritable]:
    """Lock files for one test; whatever is still locked is unlocked afterwards (pytest can then delete it)."""
    files = Unwritable()
    yield files
    for path in reversed(files.locked):
        files.unlock(path)
