"""Model registry integrity: concurrent changes are serialised by the database, and a version keeps its file.

The races run against two real servers on one database (SQLite file or PostgreSQL schema), so a lock held
inside one process would not be enough to pass them.
"""

from __future__ import annotations

import collections
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from v4runtime.monitoring.store import ModelRecord, Store, open_store

from .conftest import Server
from .test_api import assert_envelope

SHA = "b" * 64
OTHER_SHA = "c" * 64
TRIALS = 20
TIMEOUT_S = 30.0


@pytest.fixture
def two_servers(server_factory: Callable[..., Server], store_url: str) -> tuple[Server, Server]:
    """Two server processes sharing one database."""
    return server_factory(store_url), server_factory(store_url)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """The servers' database, read directly (each server's cached answers may lag the other's writes)."""
    opened = open_store(store_url)
    yield opened
    opened.close()


def _register(url: str, version: str, role: str = "current", **fields: Any) -> httpx.Response:
    body = {"version": version, "role": role, **({"sha256": SHA, "size_bytes": 1} | fields)}
    return httpx.post(f"{url}/v1/models/versions", json=body, timeout=TIMEOUT_S)


def _rollback(url: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/models/rollback", json={}, timeout=TIMEOUT_S)


def _at_once(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Run the calls on threads released together by a barrier; their answers in call order."""
    barrier = threading.Barrier(len(calls))
    answers: list[httpx.Response | None] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait(TIMEOUT_S)
        answers[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT_S * 2)
    assert all(a is not None for a in answers), "a request did not finish"
    return answers  # type: ignore[return-value]


def _roles(store: Store) -> collections.Counter[str]:
    return collections.Counter(r.role for r in store.list_models())


# Defect 1: concurrent promote and rollback ------------------------------------------------------------
def test_racing_promotions_and_rollbacks_leave_one_current_and_at_most_one_previous(
    two_servers: tuple[Server, Server], store: Store
) -> None:
    a, b = (s.url for s in two_servers)
    for trial in range(TRIALS):
        for version in (f"t{trial}a", f"t{trial}b"):
            assert _register(a, version).status_code == 201
        answers = _at_once([
            lambda: _rollback(a), lambda: _rollback(b),
            lambda t=trial: _register(a, f"t{t}p0"), lambda t=trial: _register(b, f"t{t}p1"),
        ])
        codes = [r.status_code for r in answers]
        assert codes[:2] in ([200, 200], [200, 409], [409, 200]) and codes[2:] == [201, 201], (trial, codes)
        roles = _roles(store)
        assert roles["current"] == 1 and roles["previous"] <= 1, (trial, codes, dict(roles))


def test_of_racing_rollbacks_exactly_one_succeeds(two_servers: tuple[Server, Server], store: Store) -> None:
    a, b = (s.url for s in two_servers)
    for trial in range(TRIALS):
        for version in (f"r{trial}a", f"r{trial}b"):
            assert _register(a, version).status_code == 201
        answers = _at_once([lambda: _rollback(a), lambda: _rollback(b), lambda: _rollback(a)])
        codes = sorted(r.status_code for r in answers)
        assert codes == [200, 409, 409], (trial, codes)
        for refused in (r for r in answers if r.status_code == 409):
            assert "no previous version" in assert_envelope(refused, 409, "conflict")["message"]
        by_role = {r.role: r.version for r in store.list_models() if r.role != "retired"}
        assert by_role == {"current": f"r{trial}a"}, (trial, by_role)


def test_update_models_loses_no_update_across_store_instances(store_url: str) -> None:
    """Two stores on one database stand for two server processes: each change sees the one before."""
    stores = [open_store(store_url), open_store(store_url)]
    stores[0].save_models([ModelRecord("counter", "retired", SHA, 0, None, None, 1.0, None)])

    def increment(records: list[ModelRecord]) -> list[ModelRecord]:
        (counter,) = records
        time.sleep(0.002)  # widens the window in which an unserialised change would read a stale count
        counter.size_bytes += 1
        return [counter]

    def work(store: Store) -> None:
        for _ in range(5):
            store.update_models(increment)

    threads = [threading.Thread(target=work, args=(stores[i % 2],)) for i in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT_S)
        assert stores[1].list_models()[0].size_bytes == 40
    finally:
        for opened in stores:
            opened.close()


def test_a_change_that_raises_writes_nothing(store_url: str) -> None:
    store = open_store(store_url)
    try:
        store.save_models([ModelRecord("v1", "current", SHA, 1, None, None, 1.0, 1.0)])
        generation = store.generation

        def fail(records: list[ModelRecord]) -> list[ModelRecord]:
            records[0].role = "retired"
            raise LookupError("refused")

        with pytest.raises(LookupError):
            store.update_models(fail)
        assert [(r.version, r.role) for r in store.list_models()] == [("v1", "current")]
        assert store.generation == generation
        # The connection went back to the pool usable (its transaction rolled back, its lock released).
        assert [r.role for r in store.update_models(lambda records: [])] == ["current"]
    finally:
        store.close()


# Defect 2: a version's fingerprint ----------------------------------------------------------------------
@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "m1.onnx"
    path.write_bytes(b"model-one")
    return path


def test_a_checksum_beside_the_path_must_be_the_files(server_factory: Callable[..., Server], model: Path) -> None:
    url = server_factory().url
    real = hashlib.sha256(model.read_bytes()).hexdigest()
    wrong_sha = assert_envelope(_register(url, "m", "canary", path=str(model), sha256="0" * 64, size_bytes=None),
                                422, "validation_error")
    assert wrong_sha["message"] == f"invalid field 'sha256': does not match the file at path (its sha256 is {real})"
    wrong_both = assert_envelope(_register(url, "m", "canary", path=str(model), sha256="0" * 64, size_bytes=999),
                                 422, "validation_error")
    assert [d["field"] for d in wrong_both["details"]] == ["sha256", "size_bytes"]
    wrong_size = assert_envelope(_register(url, "m", "canary", path=str(model), sha256=None, size_bytes=8),
                                 422, "validation_error")
    assert wrong_size["details"] == [{"field": "size_bytes", "type": "value_error",
                                      "message": "does not match the file at path (its size is 9 bytes)"}]
    assert httpx.get(f"{url}/v1/models/versions").json()["versions"] == []  # nothing registered
    right = _register(url, "m", "canary", path=str(model), sha256=real, size_bytes=9)
    assert right.status_code == 201, right.text
    assert (right.json()["sha256"], right.json()["size_bytes"]) == (real, 9)


def test_a_version_cannot_be_registered_again_with_other_content(
    server_factory: Callable[..., Server], store_url: str, model: Path
) -> None:
    url = server_factory(store_url).url
    real = hashlib.sha256(model.read_bytes()).hexdigest()
    assert _register(url, "v1", path=str(model), sha256=None, size_bytes=None).status_code == 201
    assert _register(url, "v2", sha256=SHA, size_bytes=5).status_code == 201
    # The same content again (a retry, or a new role; by path or by checksum) is accepted.
    assert _register(url, "v1", "current", path=str(model), sha256=None, size_bytes=None).status_code == 201
    assert _register(url, "v2", "canary", sha256=SHA, size_bytes=5).status_code == 201
    assert _register(url, "v1", "current", sha256=real, size_bytes=9).status_code == 201
    before = httpx.get(f"{url}/v1/models/versions").json()
    other_sha = assert_envelope(_register(url, "v1", "current", sha256=OTHER_SHA, size_bytes=9), 409, "conflict")
    assert other_sha["message"].startswith("model version 'v1' is already registered with other content")
    assert [d["field"] for d in other_sha["details"]] == ["sha256"]
    other_size = assert_envelope(_register(url, "v2", "current", sha256=SHA, size_bytes=6), 409, "conflict")
    assert other_size["details"] == [{"field": "size_bytes", "type": "conflict",
                                      "message": "v2 is registered with size_bytes 5, not 6"}]
    model.write_bytes(b"model-one, retrained")  # the same path, another file
    assert_envelope(_register(url, "v1", "canary", path=str(model), sha256=None, size_bytes=None), 409, "conflict")
    assert httpx.get(f"{url}/v1/models/versions").json() == before  # fingerprints and roles unchanged


@pytest.mark.parametrize("role", ["canary", "retired"])
def test_the_current_version_cannot_be_demoted_by_registering_it_again(
    server_factory: Callable[..., Server], store_url: str, store: Store, role: str
) -> None:
    # Registering the current version as canary (or retired) used to leave no current version at all.
    url = server_factory(store_url).url
    for version in ("v1", "v2"):
        assert _register(url, version).status_code == 201
    before = httpx.get(f"{url}/v1/models/versions").json()
    error = assert_envelope(_register(url, "v2", role), 409, "conflict")
    assert error["message"].startswith("model version 'v2' is current")
    assert error["details"] == [{"field": "role", "type": "conflict",
                                 "message": f"v2 is current; it cannot be registered as {role}"}]
    assert httpx.get(f"{url}/v1/models/versions").json() == before
    assert _roles(store) == {"current": 1, "previous": 1}
    # The operations that do replace it still work: a new current version, or a rollback.
    assert _rollback(url).status_code == 200
    assert _register(url, "v2", role).status_code == 201  # no longer current
