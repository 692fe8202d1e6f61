"""`v4runtime up` when things go wrong: bad options, bad settings, bad state folders, dying services.

Everything is real: `up` runs as a subprocess and starts the real monitoring API and scan service on
127.0.0.1; the tests look at exit statuses, stderr and the process table.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

UP = [sys.executable, "-m", "v4runtime", "up", "--skip-site", "--monitor-port", "0", "--scan-port", "0"]


def _env(**extra: str) -> dict[str, str]:
    """The test's environment without any V4_* setting, plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("V4_")}, **extra}


def _up(*argv: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*UP, *argv], capture_output=True, text=True, timeout=timeout, env=env or _env())


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith(("error:", "v4runtime up: error:"))]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--monitor-port", "70000"], "argument --monitor-port: port must be within 0-65535"),
        (["--scan-port", "-5"], "argument --scan-port: port must be within 0-65535"),
        (["--site-port", "http"], "argument --site-port: not a port number: 'http'"),
        (["--demo-images", "-3"], "argument --demo-images: must be >= 0, got -3"),
    ],
)
def test_bad_options_are_usage_errors_before_anything_starts(tmp_path: Path, argv: list[str], message: str) -> None:
    result = _up("--state-dir", str(tmp_path / "state"), *argv, timeout=60)
    assert message in _one_error_line(result)
    assert not (tmp_path / "state").exists()


def test_state_dir_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    result = _up("--check", "--state-dir", str(tmp_path / "file" / "state"), timeout=60)
    line = _one_error_line(result)
    assert line == f"error: state folder {tmp_path / 'file' / 'state'} is not writable (Not a directory); pass --state-dir DIR"


def test_site_outside_the_repository_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "v4runtime", "up", "--check", "--state-dir", str(tmp_path / "state")]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=_env(), cwd=tmp_path)
    line = _one_error_line(result)
    assert f"{tmp_path} has none: run `v4runtime up` from the repository root, or pass --skip-site" in line
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"V4_MONITOR__PORT": "abc"}, "error: invalid setting monitor.port"),
        ({"V4_SCANNER__THRESHOLD": ".nan"}, "error: invalid setting scanner.threshold: Input should be a finite number"),
        ({"V4_MONITOR__READ_TOKENS": "reader"}, "error: monitor.read_tokens is set but monitor.write_tokens is not"),
    ],
)
def test_bad_settings_fail_up_front_not_inside_a_service_log(
    tmp_path: Path, environ: dict[str, str], message: str
) -> None:
    started = time.monotonic()
    result = _up("--check", "--state-dir", str(tmp_path / "state"), env=_env(**environ), timeout=60)
    assert _one_error_line(result).startswith(message)
    assert time.monotonic() - started < 30  # no service was started and waited for
    assert not (tmp_path / "state" / "logs").exists()


def test_a_service_that_cannot_start_is_named_with_its_reason(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "monitor.db").mkdir(parents=True)  # the SQLite file's path is taken by a folder
    result = _up("--check", "--demo-images", "2", "--state-dir", str(state))
    line = _one_error_line(result)
    assert "did not come up: its process exited with status" in line
    assert "cannot open SQLite store" in line and f"(log: {state / 'logs' / 'monitor.log'})" in line


def test_conflicting_ports_hosts_tokens_and_a_reused_state_dir(tmp_path: Path) -> None:
    """Same port for both services, V4_*__HOST off loopback, write tokens set, two runs in a folder with spaces."""
    state = tmp_path / "state with spaces"
    env = _env(V4_MONITOR__HOST="10.255.255.1", V4_SCANNER__HOST="10.255.255.1", V4_MONITOR__WRITE_TOKENS="w1,w2")
    argv = ["--check", "--state-dir", str(state), "--monitor-port", "0", "--scan-port", "0"]
    first = subprocess.run([*UP[:5], *argv, "--demo-images", "4"], capture_output=True, text=True, timeout=240, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "demo: scanned 4 images" in first.stdout
    assert "monitoring API recorded 4 scan events" in first.stdout
    # Second run, same folder (the database keeps the first run's events), one fixed port asked for twice.
    port = _free_port()
    second = subprocess.run(
        [*UP[:5], "--check", "--state-dir", str(state), "--monitor-port", str(port), "--scan-port", str(port),
         "--demo-images", "2"],
        capture_output=True, text=True, timeout=240, env=env,
    )
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"monitoring API  http://127.0.0.1:{port}" in second.stdout
    assert f"scan service    http://127.0.0.1:{port}" not in second.stdout
    assert "demo: scanned 2 images" in second.stdout
    assert "monitoring API recorded 2 scan events" in second.stdout


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    out = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return bool(out) and not out.startswith("Z")


def _start_running(state: Path, **env: str) -> tuple[subprocess.Popen[str], list[int]]:
    """`up` in serving mode, once it says it is serving; its two service processes."""
    process = subprocess.Popen(
        [*UP, "--demo-images", "2", "--state-dir", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(**env),
    )
    assert process.stdout is not None
    for line in process.stdout:
        if "press Ctrl-C to stop" in line:
            break
    else:
        process.wait(timeout=30)
        pytest.fail(f"up stopped before serving: {process.stderr.read() if process.stderr else ''}")
    children = _children(process.pid)
    assert len(children) == 2
    return process, children


def test_a_service_dying_while_up_runs_stops_everything_with_a_failure(tmp_path: Path) -> None:
    process, children = _start_running(tmp_path / "state")
    try:
        monitor = next(pid for pid in children if "monitor" in Path(f"/proc/{pid}/cmdline").read_text())
        os.kill(monitor, signal.SIGKILL)
        assert process.wait(timeout=60) == 2
        err = process.stderr.read() if process.stderr else ""
        assert err.startswith("error: the monitoring API was killed by SIGKILL (log: "), err
        assert not any(_alive(pid) for pid in children)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_sigterm_while_running_leaves_no_child_behind(tmp_path: Path) -> None:
    process, children = _start_running(tmp_path / "state", V4_MONITOR__WRITE_TOKENS="w-secret-1")
    # The demo was recorded (the scan service had the token), yet no command line shows it (ps shows them to all).
    assert not any("w-secret-1" in Path(f"/proc/{pid}/cmdline").read_text() for pid in children)
    try:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        assert not any(_alive(pid) for pid in children)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b'{"status": "not_ready", "detail": "store: SQLite store m.db: m.db is not writable"}', "application/json",
         ": store: SQLite store m.db: m.db is not writable"),
        (b"<html>busy</html>", "text/html", ": HTTP 503"),
    ],
)
def test_a_service_that_stays_not_ready_is_named_with_its_own_reason(body: bytes, content_type: str,
                                                                      reason: str) -> None:
    import http.server
    import threading

    from v4runtime.errors import V4Error
    from v4runtime.up import wait_ready

    class NotReady(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self.send_response(503)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotReady)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    url = f"http://127.0.0.1:{server.server_address[1]}/health/ready"
    try:
        with pytest.raises(V4Error) as info:
            wait_ready(url, alive, timeout=1.0)
    finally:
        alive.kill()
        alive.wait()
        server.shutdown()
        server.server_close()
    assert str(info.value) == f"{url} was not ready after 1 s{reason}"
