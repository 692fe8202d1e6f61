"""`v4runtime doctor` against listeners that are not the service it expects: real sockets on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from jsonhttp import json_handler, serving

from v4runtime import doctor


class _Trickle(http.server.BaseHTTPRequestHandler):
    """Answers 200, then sends a header line every 0.2 s for ever: each read succeeds, the answer never ends."""

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self.send_response(200)
        try:
            for _ in range(300):
                self.wfile.write(b"X-Slow: yes\r\n")
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass

    def log_message(self, *args: object) -> None:
        pass


#: The scan service's health answer: 200 on /health, but not the monitoring API's report.
_NOT_MONITOR = json_handler(200, {"status": "ok", "model": "v4-default"})
#: The monitoring API's 503 answer when its store is down.
_DEGRADED = json_handler(503, {"status": "degraded", "version": "0", "uptime_s": 1.0, "requests": {},
                               "events_ingested": 0, "queue_depth": 0,
                               "dependencies": {"store": {"ok": False, "detail": "down"}, "writer": {"ok": True}}})


@pytest.fixture
def trickle_url() -> Iterator[str]:
    with serving(_Trickle) as url:
        yield url


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP listener that accepts (through the backlog) and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def test_monitor_api_that_trickles_bytes_does_not_hang_the_doctor(trickle_url: str) -> None:
    started = time.monotonic()
    check = doctor.monitor_api_status(trickle_url, timeout=0.5)
    assert time.monotonic() - started < 5
    assert check.status == "unreachable" and "no complete answer within 1.5 s" in check.detail


def test_doctor_command_finishes_against_a_trickling_monitor(trickle_url: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "v4runtime", "doctor", "--json"], capture_output=True, text=True, timeout=60,
        cwd=tmp_path,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("V4_")}, "V4_SCANNER__MONITOR_URL": trickle_url},
    )
    assert result.returncode == 0, result.stderr
    checks = {c["name"]: c["status"] for c in json.loads(result.stdout)["checks"]}
    assert checks["monitor API"] == "unreachable"


def test_monitor_url_pointing_at_another_service_is_named() -> None:
    with serving(_NOT_MONITOR) as url:
        check = doctor.monitor_api_status(url)
        assert check.status == "not the monitoring API" and "scan service" in check.detail


def test_degraded_monitor_api_names_the_failing_dependency() -> None:
    with serving(_DEGRADED) as url:
        check = doctor.monitor_api_status(url)
        assert check.status == "unhealthy" and "failing: store" in check.detail


def test_postgres_url_at_a_silent_listener_is_not_postgres(silent_port: int) -> None:
    started = time.monotonic()
    check = doctor.database_status(f"postgresql://v4@127.0.0.1:{silent_port}/v4", timeout=0.5)
    assert time.monotonic() - started < 5
    assert check.status == "not postgresql" and "no answer to the PostgreSQL handshake" in check.detail


def test_postgres_url_at_a_server_that_greets_is_not_postgres() -> None:
    """A listener that speaks first (SSH, SMTP, Redis errors...) answers with something that is not S or N."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)

        def greet() -> None:
            conn, _ = sock.accept()
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
                conn.recv(64)

        threading.Thread(target=greet, daemon=True).start()
        check = doctor.database_status(f"postgresql://v4@127.0.0.1:{sock.getsockname()[1]}/v4", timeout=2.0)
    assert check.status == "not postgresql" and "something else answers" in check.detail, check.detail


def test_database_urls_the_store_refuses_are_not_ok(tmp_path: Path) -> None:
    assert doctor.database_status("sqlite:///:memory:").status == "unsupported"
    assert doctor.database_status("sqlite://relative.db").status == "unsupported"
    folder = doctor.database_status(f"sqlite:///{tmp_path}")
    assert folder.status == "not a file" and "is a directory" in folder.detail
    bad_port = doctor.database_status("postgresql://v4@127.0.0.1:99999/v4")
    assert bad_port.status == "invalid" and "Port out of range" in bad_port.detail


def _tree(root: Path) -> set[Path]:
    return set(root.rglob("*"))


@pytest.mark.parametrize("missing", ["new", "new/deeper/still"])
def test_sqlite_folder_the_store_would_create_is_ok_and_left_uncreated(tmp_path: Path, missing: str) -> None:
    """The store makes the file's missing folders (mkdir -p): doctor called that "not writable"."""
    (tmp_path / "existing").mkdir()
    before = _tree(tmp_path)
    check = doctor.database_status(f"sqlite:///{tmp_path}/existing/{missing}/m.db")
    assert check.status == "ok", check.detail
    assert "created on first use" in check.detail and f"{tmp_path}/existing/{missing}" in check.detail
    assert _tree(tmp_path) == before  # a check: nothing made


def test_sqlite_relative_path_in_a_missing_folder_is_ok(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    check = doctor.database_status("sqlite:///no/such/folder/m.db")
    assert check.status == "ok" and "folder no/such/folder" in check.detail, check.detail
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("below", ["m.db", "sub/m.db", "sub/deeper/m.db"])
def test_sqlite_folder_under_a_file_cannot_be_created(tmp_path: Path, below: str) -> None:
    (tmp_path / "file.txt").write_text("not a folder")
    check = doctor.database_status(f"sqlite:///{tmp_path}/file.txt/{below}")
    assert check.status == "not a directory", check.detail
    assert f"{tmp_path}/file.txt is a file" in check.detail
    assert (tmp_path / "file.txt").read_text() == "not a folder"


def test_sqlite_folder_under_an_unwritable_folder_cannot_be_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Root may write anywhere, so the permission answer is simulated for the nearest existing folder."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != locked and real_access(p, mode, **kw))
    check = doctor.database_status(f"sqlite:///{locked}/new/m.db")
    assert check.status == "not writable", check.detail
    assert f"cannot create folder {locked}/new: {locked} is not writable" == check.detail
    existing = doctor.database_status(f"sqlite:///{locked}/m.db")
    assert existing.status == "not writable" and f"folder {locked} is not writable" in existing.detail


def _deny_write(monkeypatch: pytest.MonkeyPatch, *denied: Path) -> None:
    """Answer "no" to os.access for ``denied`` (root may write anywhere, so the answer is simulated)."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) not in denied and real_access(p, mode, **kw))


def test_existing_sqlite_file_in_an_unwritable_folder_is_not_writable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WAL mode creates m.db-wal and m.db-shm beside the file: doctor said ok, then the store failed."""
    (tmp_path / "m.db").touch()
    _deny_write(monkeypatch, tmp_path)
    check = doctor.database_status(f"sqlite:///{tmp_path}/m.db")
    assert check.status == "not writable"
    assert check.detail == (
        f"SQLite file {tmp_path}/m.db: folder {tmp_path} is not writable, "
        "and WAL mode must create m.db-wal and m.db-shm there"
    )
    (tmp_path / "m.db-wal").touch()
    check = doctor.database_status(f"sqlite:///{tmp_path}/m.db")
    assert check.status == "not writable" and check.detail.endswith("must create m.db-shm there"), check.detail


def test_existing_sqlite_file_with_writable_wal_files_is_ok_in_an_unwritable_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("m.db", "m.db-wal", "m.db-shm"):
        (tmp_path / name).touch()
    _deny_write(monkeypatch, tmp_path)
    assert doctor.database_status(f"sqlite:///{tmp_path}/m.db") == doctor.Check(
        "monitor database", "ok", f"SQLite file {tmp_path}/m.db"
    )


@pytest.mark.parametrize("suffix", ["-wal", "-shm"])
def test_unwritable_wal_file_is_not_writable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    """SQLite opens an existing WAL file it cannot write read-only, and every write then fails."""
    for name in ("m.db", "m.db-wal", "m.db-shm"):
        (tmp_path / name).touch()
    _deny_write(monkeypatch, tmp_path / f"m.db{suffix}")
    check = doctor.database_status(f"sqlite:///{tmp_path}/m.db")
    assert check.status == "not writable"
    assert check.detail == f"SQLite file {tmp_path}/m.db: {tmp_path}/m.db{suffix} is not writable (WAL mode writes it)"


def test_wal_files_of_a_linked_sqlite_file_are_beside_its_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite resolves the link and keeps real.db-wal and real.db-shm beside real.db."""
    (tmp_path / "data").mkdir()
    (tmp_path / "links").mkdir()
    (tmp_path / "data" / "real.db").touch()
    (tmp_path / "links" / "m.db").symlink_to(tmp_path / "data" / "real.db")
    url = f"sqlite:///{tmp_path}/links/m.db"
    _deny_write(monkeypatch, tmp_path / "links")
    assert doctor.database_status(url).status == "ok"
    _deny_write(monkeypatch, tmp_path / "data")
    check = doctor.database_status(url)
    assert check.status == "not writable" and f"folder {tmp_path}/data is not writable" in check.detail
    assert "create real.db-wal and real.db-shm" in check.detail


@pytest.fixture
def lock() -> Iterator[Callable[[Path], None]]:
    """Make a path unwritable for real, even for root: ``chattr +i`` as root, else ``chmod a-w``."""
    locked: list[Path] = []

    def apply(path: Path) -> None:
        if os.geteuid() != 0:
            path.chmod(path.stat().st_mode & ~0o222)
        elif subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("root, and chattr +i does not work here (no chattr, or a filesystem without it)")
        locked.append(path)

    yield apply
    for path in reversed(locked):
        if os.geteuid() != 0:
            path.chmod(path.stat().st_mode | 0o200)
        else:
            subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.parametrize(
    ("locked", "present", "opens"),
    [
        (".", (), False),
        (".", ("-wal",), False),
        (".", ("-shm",), False),
        (".", ("-wal", "-shm"), True),
        ("m.db-wal", ("-wal", "-shm"), False),
        ("m.db", (), False),
    ],
)
def test_doctor_agrees_with_the_store_on_unwritable_files(
    tmp_path: Path, lock: Callable[[Path], None], locked: str, present: tuple[str, ...], opens: bool
) -> None:
    """Doctor says ok exactly when the store can write to an existing file, with permissions denied for real."""
    from v4runtime.monitoring.store import open_store

    folder = tmp_path / "db"
    folder.mkdir()
    url = f"sqlite:///{folder}/m.db"
    open_store(url).close()  # the last connection's close removes m.db-wal and m.db-shm
    for suffix in present:
        (folder / f"m.db{suffix}").touch()
    lock(folder / locked)
    ok = doctor.database_status(url).status == "ok"
    assert (ok, _store_writes(url)) == (opens, opens)


def _store_writes(url: str) -> bool:
    """Whether the store opens ``url`` and commits a write (opening an existing file writes nothing)."""
    from v4runtime.errors import StoreError
    from v4runtime.monitoring.store import ModelRecord, open_store

    try:
        store = open_store(url)
    except StoreError:
        return False
    try:
        store.save_models([ModelRecord("v1", "candidate", "0" * 64, 1, None, None, 0.0, None)])
    except StoreError:  # the store's word for a file it cannot use (a sqlite3 error here would be a bug)
        return False
    finally:
        store.close()
    return True


def test_sqlite_folder_under_a_dangling_link_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    check = doctor.database_status(f"sqlite:///{tmp_path}/link/sub/m.db")
    assert check.status == "not a directory" and check.detail.endswith(f"{tmp_path}/link is not a folder")
    assert not (tmp_path / "gone").exists()


@pytest.mark.parametrize(
    "relative", ["a/b/m.db", "m.db", "file.txt/m.db", "file.txt/a/m.db", "dir", "link/m.db", "link/a/m.db"]
)
def test_doctor_agrees_with_the_store(tmp_path: Path, relative: str) -> None:
    """Doctor says ok exactly when open_store can open the file."""
    from v4runtime.errors import StoreError
    from v4runtime.monitoring.store import open_store

    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    url = f"sqlite:///{tmp_path}/{relative}"
    ok = doctor.database_status(url).status == "ok"
    try:
        open_store(url).close()
        opened = True
    except StoreError:
        opened = False
    assert ok == opened
