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
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from v4runtime.cli_types import int_at_least
from v4runtime.errors import ConfigError, V4Error

#: Where ``up`` keeps its state (database, demo corpus, logs), relative to the working directory.
DEFAULT_STATE_DIR = Path(".work/up")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``v4runtime up``."""
    parser = subparsers.add_parser("up", help="run the whole stack on the embedded defaults (SQLite, loopback)")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="state folder (default: %(default)s)")
    parser.add_argument("--site-port", type=port_number, default=8000, help="port of the docs site (0: any free port)")
    parser.add_argument("--monitor-port", type=port_number, default=8400, help="port of the monitoring API (0: any free)")
    parser.add_argument("--scan-port", type=port_number, default=8401, help="port of the scan service (0: any free)")
    parser.add_argument("--demo-images", type=int_at_least(0), default=24, help="images in the demo corpus (half stego)")
    parser.add_argument("--skip-site", action="store_true", help="do not build or serve the docs site")
    parser.add_argument("--check", action="store_true", help="stop after the demo scan instead of serving")
    parser.set_defaults(func=run)


def port_number(text: str) -> int:
    """argparse type of a TCP port: an integer in 0-65535 (0: any free port)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be within 0-65535 (0 picks a free one), got {port}")
    return port


def free_port(preferred: int, exclude: frozenset[int] | set[int] = frozenset()) -> int:
    """Return ``preferred`` if it can be bound on 127.0.0.1 and is not in ``exclude``, else any free port.

    ``exclude`` holds the ports already handed to the other services: they are not bound yet, so the
    kernel would offer them again.
    """
    candidates = [preferred] if preferred and preferred not in exclude else []
    for port in [*candidates, *([0] * 20)]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            bound = sock.getsockname()[1]
            if bound not in exclude:
                return bound
    raise V4Error("no free port on 127.0.0.1")


#: A log line that states an error: the CLI's ``error: ...`` or the last line of a traceback.
ERROR_LINE = re.compile(r"^(error: |[\w.]*(Error|Exception): )")


def _last_line(log: Path) -> str:
    """The last error line of ``log`` (else its last line): why a failed service stopped, or ''."""
    try:
        with open(log, "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - 8192))
            lines = [line.strip() for line in handle.read().decode("utf-8", errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [line for line in lines if line]
    errors = [line for line in lines if ERROR_LINE.match(line)]
    return (errors or lines or [""])[-1]


def _how_it_ended(returncode: int, log: Path) -> str:
    """``exited with status 2: <its last log line>`` or ``was killed by SIGKILL``."""
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-returncode).name}"
        return f"was killed by signal {-returncode}"
    said = _last_line(log)
    return f"exited with status {returncode}{': ' + said if said else ''}"


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 60.0, log: Path | None = None) -> None:
    """Poll ``url`` until it answers 200; fail early, quoting ``log``, if ``process`` exits."""
    import httpx

    where = f" (log: {log})" if log is not None else ""
    deadline = time.monotonic() + timeout
    last = ""  # why the service said it was not ready, the last time it answered
    while time.monotonic() < deadline:
        if process.poll() is not None:
            ended = _how_it_ended(process.returncode, log) if log is not None else f"exited with status {process.returncode}"
            raise V4Error(f"{url} did not come up: its process {ended}{where}")
        with contextlib.suppress(httpx.HTTPError):
            answer = httpx.get(url, timeout=1.0)
            if answer.status_code == 200:
                return
            last = _not_ready_reason(answer)
        time.sleep(0.2)
    raise V4Error(f"{url} was not ready after {timeout:.0f} s{f': {last}' if last else ''}{where}")


def _not_ready_reason(answer: Any) -> str:
    """The probe's own reason (``detail`` of a ``not_ready`` answer), else its status, on one line."""
    with contextlib.suppress(ValueError, AttributeError):
        detail = answer.json().get("detail")
        if isinstance(detail, str) and detail.strip():
            return " ".join(detail.split())[:300]
    return f"HTTP {answer.status_code}"


def stop_process(process: subprocess.Popen, grace: float = 10.0) -> None:
    """Terminate ``process`` and reap it; kill it after ``grace`` s or on a second Ctrl-C/SIGTERM.

    The wait is never abandoned: an interrupt during it kills the child instead of orphaning it.
    """
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    while True:
        try:
            process.wait(timeout=grace)
            return
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            with contextlib.suppress(ProcessLookupError):
                process.kill()


@contextlib.contextmanager
def service(name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """Run ``argv`` as a child process logging to ``log_dir/name.log``; stop it on exit."""
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"{name}.log", "ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    try:
        yield process
    finally:
        stop_process(process)


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


def prepare_state_dir(state: Path) -> None:
    """Create ``state`` and check that files can be written in it (ConfigError if not).

    Without the check a read-only folder would only show up as a service that dies at start-up.
    """
    probe = state / f".up-write-test-{os.getpid()}"
    try:
        (state / "logs").mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"state folder {state} is not writable ({exc.strerror or exc}); pass --state-dir DIR"
        ) from exc


def _watch(processes: dict[str, tuple[subprocess.Popen, Path]]) -> None:
    """Block until Ctrl-C/SIGTERM (return) or until a service exits on its own (V4Error naming it)."""
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            for name, (process, log) in processes.items():
                if process.poll() is not None:
                    raise V4Error(f"the {name} {_how_it_ended(process.returncode, log)} (log: {log}); everything else was stopped")
            time.sleep(0.5)


def run(args: argparse.Namespace) -> int:
    """Run the stack; see the module docstring."""
    previous = signal.getsignal(signal.SIGTERM)
    # SIGTERM (a supervisor, `timeout`, `kill`) stops everything the same way Ctrl-C does, so the
    # child services are terminated by their context managers instead of being orphaned.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return _run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    from v4runtime.config import load_settings
    from v4runtime.demo import run_demo  # imported late: pulls in the scanner

    # The services read the same V4_* variables: a bad one would only kill them at start-up, with
    # the reason buried in their logs. Checked here, it is one clear line before anything starts.
    settings = load_settings()
    if settings.monitor.read_tokens and not settings.monitor.write_tokens:
        raise ConfigError(
            "monitor.read_tokens is set but monitor.write_tokens is not: the scan service could not "
            "report scans; set V4_MONITOR__WRITE_TOKENS too, or unset V4_MONITOR__READ_TOKENS"
        )
    token = settings.monitor.write_tokens[0] if settings.monitor.write_tokens else None
    if not args.skip_site and not Path("mkdocs.yml").is_file():
        # mkdocs would only say its config is missing, after the state folder was made.
        raise ConfigError(
            f"the docs site is built from mkdocs.yml in the current folder, and {Path.cwd()} has none: "
            "run `v4runtime up` from the repository root, or pass --skip-site"
        )
    state: Path = args.state_dir.resolve()
    logs = state / "logs"
    prepare_state_dir(state)
    taken: set[int] = set()
    monitor_port = free_port(args.monitor_port, taken)
    taken.add(monitor_port)
    scan_port = free_port(args.scan_port, taken)
    taken.add(scan_port)
    monitor_url = f"http://127.0.0.1:{monitor_port}"
    scan_url = f"http://127.0.0.1:{scan_port}"
    db_url = f"sqlite:///{state / 'monitor.db'}"
    exe = [sys.executable, "-m", "v4runtime"]
    # --host: up promises loopback and polls 127.0.0.1, whatever V4_*__HOST says.
    monitor_argv = [*exe, "monitor", "serve", "--db", db_url, "--host", "127.0.0.1", "--port", str(monitor_port)]
    scan_argv = [*exe, "service", "serve", "--host", "127.0.0.1", "--port", str(scan_port), "--monitor-url", monitor_url]
    # The token travels in the environment: a command line is readable by every user through ps.
    scan_env = {"V4_SCANNER__MONITOR_TOKEN": token} if token else None

    if not args.skip_site:
        build_site(state / "site")
    with (
        service("monitor", monitor_argv, logs) as monitor,
        service("scan", scan_argv, logs, env=scan_env) as scan,
    ):
        wait_ready(f"{monitor_url}/health/ready", monitor, log=logs / "monitor.log")
        wait_ready(f"{scan_url}/health/ready", scan, log=logs / "scan.log")
        print(f"monitoring API  {monitor_url}  (SQLite: {db_url})")
        print(f"scan service    {scan_url}")
        summary = run_demo(state / "demo", scan_url, monitor_url, images=args.demo_images, token=token)
        print(summary)
        if args.check:
            return 0
        watched = {"monitoring API": (monitor, logs / "monitor.log"), "scan service": (scan, logs / "scan.log")}
        if args.skip_site:
            print("press Ctrl-C to stop", flush=True)
            _watch(watched)
            return 0
        site_port = free_port(args.site_port, taken)
        server = serve_site(state / "site", site_port)
        print(f"docs site       http://127.0.0.1:{site_port}/   (Ctrl-C stops everything)", flush=True)
        try:
            _watch(watched)
        finally:
            server.shutdown()
            server.server_close()
    return 0
