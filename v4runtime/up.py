"""``v4runtime up``: the main job on the embedded defaults.

Builds the documentation site, starts the monitoring API on SQLite and the scan service on
loopback, builds a small demo corpus, scans it through the scan service (which reports every
scan to the monitoring API), prints where everything is, and serves the site until Ctrl-C.
Every component runs as a real process; ``--check`` stops after the demo scan (used by tests).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from v4runtime.errors import V4Error

#: Where ``up`` keeps its state (database, demo corpus, logs), relative to the working directory.
DEFAULT_STATE_DIR = Path(".work/up")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``v4runtime up``."""
    parser = subparsers.add_parser("up", help="run the whole stack on the embedded defaults (SQLite, loopback)")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="state folder (default: %(default)s)")
    parser.add_argument("--site-port", type=int, default=8000, help="port of the docs site (0: any free port)")
    parser.add_argument("--monitor-port", type=int, default=8400, help="port of the monitoring API (0: any free)")
    parser.add_argument("--scan-port", type=int, default=8401, help="port of the scan service (0: any free)")
    parser.add_argument("--demo-images", type=int, default=24, help="images in the demo corpus (half stego)")
    parser.add_argument("--skip-site", action="store_true", help="do not build or serve the docs site")
    parser.add_argument("--check", action="store_true", help="stop after the demo scan instead of serving")
    parser.set_defaults(func=run)


def free_port(preferred: int) -> int:
    """Return ``preferred`` if it can be bound on 127.0.0.1, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise V4Error("no free port on 127.0.0.1")


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    """Poll ``url`` until it answers 200; fail early if ``process`` exits."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise V4Error(f"{url} did not come up: its process exited with status {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.2)
    raise V4Error(f"{url} was not ready after {timeout:.0f} s")


@contextlib.contextmanager
def service(name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """Run ``argv`` as a child process logging to ``log_dir/name.log``; stop it on exit."""
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"{name}.log", "ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def build_site(site_dir: Path) -> None:
    """Build the docs site with ``mkdocs build`` into ``site_dir``."""
    print(f"building the docs site into {site_dir} ...", flush=True)
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--quiet", "--site-dir", str(site_dir)],
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    if result.returncode != 0:
        raise V4Error("mkdocs build failed (see the output above)")


def serve_site(site_dir: Path, port: int) -> http.server.ThreadingHTTPServer:
    """Serve ``site_dir`` on 127.0.0.1:``port`` in a background thread."""
    handler = functools.partial(QuietHandler, directory=str(site_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Static file handler that does not log every request."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature from the stdlib
        pass


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    """Run the stack; see the module docstring."""
    from v4runtime.demo import run_demo  # imported late: pulls in the scanner

    # SIGTERM (a supervisor, `timeout`, `kill`) stops everything the same way Ctrl-C does, so the
    # child services are terminated by their context managers instead of being orphaned.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    state: Path = args.state_dir.resolve()
    logs = state / "logs"
    state.mkdir(parents=True, exist_ok=True)
    monitor_port = free_port(args.monitor_port)
    scan_port = free_port(args.scan_port)
    monitor_url = f"http://127.0.0.1:{monitor_port}"
    scan_url = f"http://127.0.0.1:{scan_port}"
    db_url = f"sqlite:///{state / 'monitor.db'}"
    exe = [sys.executable, "-m", "v4runtime"]

    if not args.skip_site:
        build_site(state / "site")
    with (
        service("monitor", [*exe, "monitor", "serve", "--db", db_url, "--port", str(monitor_port)], logs) as monitor,
        service("scan", [*exe, "service", "serve", "--port", str(scan_port), "--monitor-url", monitor_url], logs) as scan,
    ):
        wait_ready(f"{monitor_url}/health/ready", monitor)
        wait_ready(f"{scan_url}/health/ready", scan)
        print(f"monitoring API  {monitor_url}  (SQLite: {db_url})")
        print(f"scan service    {scan_url}")
        summary = run_demo(state / "demo", scan_url, monitor_url, images=args.demo_images)
        print(summary)
        if args.check:
            return 0
        if args.skip_site:
            print("press Ctrl-C to stop", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while monitor.poll() is None and scan.poll() is None:
                    time.sleep(0.5)
            return 0
        site_port = free_port(args.site_port)
        server = serve_site(state / "site", site_port)
        print(f"docs site       http://127.0.0.1:{site_port}/   (Ctrl-C stops everything)", flush=True)
        try:
            while monitor.poll() is None and scan.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            server.shutdown()
    return 0
