"""The scan service over real HTTP on 127.0.0.1, and ``v4runtime up --check`` end to end."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from v4runtime.stego import embed


def _png(size: int = 64) -> bytes:
    image = Image.new("RGB", (size, size))
    image.putdata([((x * 7) % 256, (y * 5) % 256, (x ^ y) % 256) for y in range(size) for x in range(size)])
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _start(argv: list[str], port_file: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "v4runtime", *argv, "--port", "0", "--port-file", str(port_file)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not port_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"server did not start: {process.stdout.read().decode(errors='replace')}")
        time.sleep(0.05)
    return process


@pytest.fixture(scope="module")
def scan_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port_file = tmp_path_factory.mktemp("svc") / "port"
    process = _start(["service", "serve"], port_file)
    try:
        yield f"http://127.0.0.1:{port_file.read_text().strip()}"
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0


def test_scan_answers_a_result_for_a_real_image(scan_url: str) -> None:
    response = httpx.post(f"{scan_url}/v1/scan", content=_png(), headers={"X-Request-ID": "req-1"})
    assert response.status_code == 200
    body = response.json()
    assert body["request_id"] == "req-1" and response.headers["x-request-id"] == "req-1"
    assert body["format"] == "PNG" and body["error"] is None
    assert 0.0 <= body["probability"] <= 1.0
    assert set(body["explanation"]) == {"pixel", "meta", "alpha", "lsb", "palette", "palette_lsb", "format", "content"}


def test_truncated_image_is_a_typed_422_not_a_500(scan_url: str) -> None:
    response = httpx.post(f"{scan_url}/v1/scan", content=_png()[:200])
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "unreadable_image"
    assert error["details"]["reason"] in {"truncated", "corrupt"}
    assert error["request_id"]


def test_non_image_and_empty_bodies_are_rejected_clearly(scan_url: str) -> None:
    for body in (b"", b"hello, not an image"):
        response = httpx.post(f"{scan_url}/v1/scan", content=body)
        assert response.status_code == 422, body
        assert response.json()["error"]["details"]["reason"] in {"empty", "not_an_image"}


def test_oversized_body_is_413_before_it_is_read(scan_url: str) -> None:
    response = httpx.post(f"{scan_url}/v1/scan", content=b"\0" * (33 * 1024 * 1024))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_health_counts_scans(scan_url: str) -> None:
    httpx.post(f"{scan_url}/v1/scan", content=embed(_png(), b"secret payload", "raw", "PNG"))
    health = httpx.get(f"{scan_url}/health").json()
    assert health["status"] == "ok" and health["counters"]["scans"] >= 1
    assert len(health["model_sha256"]) == 64


def test_up_check_runs_the_whole_stack_and_reports_events(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "v4runtime", "up", "--skip-site", "--check", "--demo-images", "6",
         "--monitor-port", "0", "--scan-port", "0", "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=240, env={**os.environ},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo: scanned 6 images" in result.stdout
    assert "monitoring API recorded 6 scan events" in result.stdout
