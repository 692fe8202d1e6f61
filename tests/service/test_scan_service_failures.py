"""Scans that fail on the service's side (not the image's fault), over real HTTP on 127.0.0.1: answered
500, logged with the request id, counted in /health and reported to a real monitoring API."""

from __future__ import annotations

import io
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from PIL import Image

from v4runtime.client import MonitoringClient
from v4runtime.model.card import build_card, card_path, write_card
from v4runtime.scanner import Scanner, ScanResult
from v4runtime.service.app import create_scan_app
from v4runtime.streams.spec import OUTPUT_STEGO

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scanner"))

from scanfix import build_toy_model  # noqa: E402


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 120)).save(out, "PNG")
    return out.getvalue()


def _model_whose_inference_fails(path: Path) -> Path:
    """The scanner tests' toy detector with its stego output reshaped to 7 values: it loads and passes the
    signature check, and every inference fails in onnxruntime (one value cannot become seven)."""
    model = onnx.load(str(build_toy_model(path)))
    for node in model.graph.node:
        node.output[:] = ["p_raw" if name == OUTPUT_STEGO else name for name in node.output]
    model.graph.initializer.append(numpy_helper.from_array(np.array([7], dtype=np.int64), "seven"))
    model.graph.node.append(helper.make_node("Reshape", ["p_raw", "seven"], [OUTPUT_STEGO]))
    onnx.save(model, str(path))
    write_card(build_card(path, name="broken-inference", threshold=0.5), card_path(path))
    return path


class _RaisingPath(os.PathLike):
    """A path whose use raises: what a decoder bug looks like to the scanner."""

    def __fspath__(self) -> str:
        raise RuntimeError("decoder bug")


class _DecoderBugScanner(Scanner):
    """The real scanner, hitting a bug while it reads the upload: the scanner itself turns the exception
    into a result with ``error_reason`` ``internal`` (it never raises for one file)."""

    def scan(self, source: str | Path | bytes) -> ScanResult:
        return super().scan(_RaisingPath())


@pytest.fixture(scope="module")
def failing_services(
    serve_in_thread: Callable[[Any], str], monitor_api: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    """Two scan services reporting to the monitoring API: one whose inference raises, one whose scanner
    reports a decoder bug."""
    monitor_url, _ = monitor_api
    broken = Scanner(_model_whose_inference_fails(tmp_path_factory.mktemp("model") / "broken.onnx"))
    services = {}
    for name, scanner in (("inference", broken), ("decoder", _DecoderBugScanner())):
        monitor = MonitoringClient(monitor_url, flush_interval=0.05)
        services[name] = serve_in_thread(create_scan_app(scanner, monitor))
    return services


def _events(db: Path, prefix: str) -> list[tuple[str | None, str | None, float | None]]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(
            "SELECT error, prediction, probability FROM events WHERE request_id LIKE ?", (f"{prefix}.%",)
        ).fetchall()


@pytest.mark.parametrize("failure", ["inference", "decoder"])
def test_a_failure_on_the_service_side_is_a_logged_counted_and_reported_500(
    failure: str, failing_services: dict[str, str], monitor_api: tuple[str, Path], caplog: pytest.LogCaptureFixture,
) -> None:
    url, (_, db), request_id = failing_services[failure], monitor_api, f"fail-{failure}"
    before = httpx.get(f"{url}/health").json()["counters"]
    with caplog.at_level(logging.ERROR, logger="v4runtime.service.app"):
        response = httpx.post(f"{url}/v1/scan", content=_png(), headers={"X-Request-ID": request_id}, timeout=30)

    assert response.status_code == 500, response.text
    assert response.headers["x-request-id"] == request_id
    error = response.json()["error"]
    assert error["code"] == "internal_error" and error["request_id"] == request_id
    assert error["details"] == {"reason": "internal"}
    assert "not because of the image" in error["message"]
    logged = [r for r in caplog.records if r.name == "v4runtime.service.app" and request_id in r.getMessage()]
    assert len(logged) == 1 and logged[0].levelno == logging.ERROR

    deadline = time.monotonic() + 10
    while (counters := httpx.get(f"{url}/health").json()["counters"])["monitor_events_sent"] == before[
        "monitor_events_sent"
    ]:
        assert time.monotonic() < deadline, f"no monitoring event was sent: {counters}"
        time.sleep(0.05)
    assert counters["scans"] == before["scans"] + 1 and counters["errors"] == before["errors"] + 1
    assert _events(db, request_id) == [("internal", None, None)]
