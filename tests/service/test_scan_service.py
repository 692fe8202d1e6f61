"""The scan service over real HTTP on 127.0.0.1, and ``v4runtime up --check`` end to end."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import socket
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


def _raw(port: int, request: bytes, *, linger: float = 0.0) -> socket.socket:
    """Send ``request`` on a fresh connection; the caller reads or closes it."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(request)
    if linger:
        time.sleep(linger)
    return sock


def _assert_envelope(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["code"] == code and error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    return error


def test_unknown_path_and_wrong_method_use_the_error_envelope(scan_url: str) -> None:
    _assert_envelope(httpx.get(f"{scan_url}/v1/scan"), 405, "method_not_allowed")
    assert httpx.get(f"{scan_url}/v1/scan").headers["allow"] == "POST"
    _assert_envelope(httpx.post(f"{scan_url}/v1/scans", content=_png()), 404, "not_found")
    _assert_envelope(httpx.get(f"{scan_url}/../../etc/passwd"), 404, "not_found")


def test_invalid_request_id_is_replaced_not_echoed(scan_url: str) -> None:
    response = httpx.post(f"{scan_url}/v1/scan", content=b"junk", headers={"X-Request-ID": "bad id; <script>"})
    error = _assert_envelope(response, 422, "unreadable_image")
    assert re.fullmatch(r"[A-Za-z0-9._:\-]{1,128}", error["request_id"])
    ok = httpx.post(f"{scan_url}/v1/scan", content=_png(), headers={"X-Request-ID": "x" * 129})
    assert ok.status_code == 200 and ok.json()["request_id"] == ok.headers["x-request-id"] != "x" * 129


def test_multipart_form_is_415_with_a_hint(scan_url: str) -> None:
    response = httpx.post(f"{scan_url}/v1/scan", files={"image": ("a.png", _png(), "image/png")})
    error = _assert_envelope(response, 415, "unsupported_media_type")
    assert "raw bytes" in error["message"]
    assert httpx.post(f"{scan_url}/v1/scan", content=_png(), headers={"content-type": "image/png"}).status_code == 200


def test_chunked_body_over_the_limit_is_413_and_the_connection_closes(scan_url: str) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"\0" * (1 << 20)

    with httpx.Client() as client:
        response = client.post(f"{scan_url}/v1/scan", content=chunks())
    _assert_envelope(response, 413, "payload_too_large")
    assert response.headers["connection"] == "close"


def test_client_disconnecting_mid_upload_is_counted_and_the_service_carries_on(scan_url: str) -> None:
    port = int(scan_url.rsplit(":", 1)[1])
    before = httpx.get(f"{scan_url}/health").json()["counters"]["client_disconnects"]
    head = b"POST /v1/scan HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
    _raw(port, head + _png()[:500], linger=0.2).close()
    deadline = time.monotonic() + 10
    while httpx.get(f"{scan_url}/health").json()["counters"]["client_disconnects"] == before:
        assert time.monotonic() < deadline, "the disconnect was not counted"
        time.sleep(0.05)
    assert httpx.post(f"{scan_url}/v1/scan", content=_png()).status_code == 200


def test_fifty_concurrent_scans_all_answer_with_their_own_id(scan_url: str) -> None:
    image = _png()

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=scan_url, timeout=120) as client:
            return await asyncio.gather(*[
                client.post("/v1/scan", content=image if i % 2 else b"junk", headers={"X-Request-ID": f"c-{i}"})
                for i in range(50)
            ])

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [422 if i % 2 == 0 else 200 for i in range(50)]
    assert [r.headers["x-request-id"] for r in responses] == [f"c-{i}" for i in range(50)]


def test_openapi_documents_the_body_and_every_error_code(scan_url: str) -> None:
    operation = httpx.get(f"{scan_url}/openapi.json").json()["paths"]["/v1/scan"]["post"]
    assert "application/octet-stream" in operation["requestBody"]["content"]
    assert {"200", "408", "413", "415", "422", "500"} <= set(operation["responses"])
    assert operation["responses"]["413"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorEnvelope"
    }


def test_port_out_of_range_is_refused_not_wrapped(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "v4runtime", "service", "serve", "--port", "70000"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "port must be within 0-65535" in result.stderr


def test_model_name_the_monitoring_api_would_reject_stops_the_start(tmp_path: Path) -> None:
    models = Path(__file__).resolve().parents[2] / "v4runtime" / "models"
    shutil.copy(models / "v4-default.onnx", tmp_path / "odd.onnx")
    card = json.loads((models / "v4-default.card.json").read_text())
    (tmp_path / "odd.card.json").write_text(json.dumps({**card, "name": "my model (v2)"}))
    result = subprocess.run(
        [sys.executable, "-m", "v4runtime", "service", "serve", "--model", str(tmp_path / "odd.onnx"),
         "--monitor-url", "http://127.0.0.1:9", "--port", "0", "--port-file", str(tmp_path / "port")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "cannot be reported to the monitoring API" in result.stderr


def _refused_at_start(argv: list[str], env: dict[str, str], port_file: Path) -> subprocess.CompletedProcess[str]:
    """Run ``argv``, which should exit at once; a server that starts listening instead is stopped and fails."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while process.poll() is None:
        if port_file.exists() or time.monotonic() > deadline:
            process.kill()
            process.communicate()
            raise AssertionError(f"{argv[3:]} started a server instead of exiting")
        time.sleep(0.05)
    stdout, stderr = process.communicate()
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def test_monitor_url_without_a_scheme_is_refused_like_the_setting(tmp_path: Path) -> None:
    """`--monitor-url 127.0.0.1:8400` would be accepted and every event dropped: it is validated as
    V4_SCANNER__MONITOR_URL is, with the same one-line message."""
    port_file = tmp_path / "port"
    base = [sys.executable, "-m", "v4runtime", "service", "serve", "--port", "0", "--port-file", str(port_file)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("V4_")}
    by_option = _refused_at_start([*base, "--monitor-url", "127.0.0.1:8400"], env, port_file)
    by_setting = _refused_at_start(base, {**env, "V4_SCANNER__MONITOR_URL": "127.0.0.1:8400"}, port_file)
    assert by_option.returncode == by_setting.returncode == 2, by_option.stdout + by_option.stderr
    assert by_option.stderr == by_setting.stderr == (
        "error: invalid setting scanner.monitor_url: monitor URL '127.0.0.1:8400' must be an http:// or "
        "https:// URL with a host\n"
    )


def test_unknown_query_parameter_is_refused_and_the_result_carries_its_threshold(scan_url: str) -> None:
    error = _assert_envelope(httpx.post(f"{scan_url}/v1/scan?threshold=2", content=_png()), 422, "validation_error")
    assert "'threshold'" in error["message"]
    assert [d["field"] for d in error["details"]] == ["threshold"]
    result = httpx.post(f"{scan_url}/v1/scan", content=_png()).json()
    assert result["threshold"] == httpx.get(f"{scan_url}/health").json()["threshold"]
    assert result["is_stego"] == (result["probability"] >= result["threshold"])


@pytest.mark.parametrize("head", [
    b"Content-Length: -1\r\n\r\n",
    b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
], ids=["negative-length", "two-lengths", "length-and-chunked", "bad-chunk"])
def test_malformed_http_is_the_documented_plain_400_of_the_http_server(scan_url: str, head: bytes) -> None:
    """The one answer without the envelope: uvicorn's, before the app runs; the reference page says so."""
    port = int(scan_url.rsplit(":", 1)[1])
    with _raw(port, b"POST /v1/scan HTTP/1.1\r\nHost: x\r\nX-Request-ID: bad-http\r\n" + head) as sock:
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    response_head, _, body = answer.partition(b"\r\n\r\n")
    assert response_head.startswith(b"HTTP/1.1 400 ") and b"x-request-id" not in response_head.lower()
    assert b"content-type: text/plain" in response_head.lower() and body == b"Invalid HTTP request received."
    page = " ".join((Path(__file__).resolve().parents[2] / "docs" / "reference" / "service.md").read_text().split())
    assert "plain-text `400 Bad Request` (`Invalid HTTP request received.`), no envelope and no `X-Request-ID`" in page
