"""``v4runtime doctor``: what this machine and configuration provide, at a glance.

Prints library versions, the CPU instruction-set features that decide how fast INT8 inference
runs, whether the bundled model is present, whether the configured services answer, and the
effective settings with secrets masked. It never changes anything and never imports the model
code (the model may not exist yet); it only looks at files, sockets and URLs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import socket
import struct
import sys
import threading
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from v4runtime.config import Settings, load_settings, masked

#: CPU flags (as spelled in /proc/cpuinfo) that matter for INT8 kernels, with display names.
INT8_FLAGS: dict[str, str] = {
    "avx2": "AVX2",
    "avx512f": "AVX-512F",
    "avx512_vnni": "AVX512-VNNI",
    "avx_vnni": "AVX-VNNI",
}
#: The bundled default model, relative to the package directory.
DEFAULT_MODEL = Path("models") / "v4-default.onnx"
#: Seconds to wait for a service before calling it unreachable (doctor must never hang).
PROBE_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class Check:
    """One line of the report: a name, a status word and a human-readable detail."""

    name: str
    status: str
    detail: str = ""


def library_versions() -> dict[str, str]:
    """Versions of Python and the runtime libraries (``absent`` when not installed)."""
    versions = {"python": platform.python_version()}
    for dist in ("onnxruntime", "numpy", "Pillow"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "absent"
    return versions


def parse_cpu_flags(cpuinfo: str) -> set[str]:
    """The set of flags on the first ``flags`` line of a /proc/cpuinfo text."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def cpu_features(cpuinfo_path: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """INT8-relevant CPU features; ``known`` is False where /proc/cpuinfo is unavailable."""
    try:
        flags = parse_cpu_flags(cpuinfo_path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        flags = None
    if not flags:
        return {
            "known": False,
            "machine": platform.machine(),
            "features": {},
            "int8_note": "unknown: no /proc/cpuinfo flags on this platform; measure with `v4runtime bench scan`",
        }
    features = {label: flag in flags for flag, label in INT8_FLAGS.items()}
    return {
        "known": True,
        "machine": platform.machine(),
        "features": features,
        "int8_note": int8_note(features),
    }


def int8_note(features: dict[str, bool]) -> str:
    """One sentence on what the detected features mean for INT8 inference."""
    if features.get("AVX512-VNNI") or features.get("AVX-VNNI"):
        return "VNNI present: INT8 dot products run in one instruction (fast INT8 path)"
    if features.get("AVX2"):
        return "AVX2 without VNNI: INT8 may be no faster than FP32; per-channel U8S8 needs reduce_range"
    return "no AVX2: INT8 kernels fall back to slow generic code; prefer the FP32 model"


def model_status(package_dir: Path | None = None) -> Check:
    """Whether the bundled default model file exists (by file, without importing model code)."""
    base = package_dir if package_dir is not None else Path(__file__).resolve().parent
    path = base / DEFAULT_MODEL
    if not path.is_file():
        return Check("bundled model", "absent", f"{path} does not exist yet")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Check("bundled model", "present", f"{path} ({path.stat().st_size} bytes, sha256 {digest[:12]})")


#: The PostgreSQL SSLRequest message: any PostgreSQL server (or pooler) answers it with one byte, S or N.
PG_SSL_REQUEST = struct.pack("!ii", 8, 80877103)


def _postgres_probe(host: str, port: int, timeout: float) -> tuple[str, str | None]:
    """``("reachable", None)`` when a PostgreSQL server answers on ``host:port``, else a status and why.

    A bare TCP connect would call any listener "reachable"; the SSLRequest is the first message of
    every PostgreSQL session and needs no credentials, so it tells PostgreSQL from anything else.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(PG_SSL_REQUEST)
            answer = sock.recv(64)  # PostgreSQL answers exactly one byte; a greeting (SSH-2.0-...) is longer
    except TimeoutError:
        return "not postgresql", f"no answer to the PostgreSQL handshake within {timeout:g} s"
    except OSError as exc:
        return "unreachable", str(exc) or type(exc).__name__
    if answer in (b"S", b"N"):
        return "reachable", None
    return "not postgresql", f"something else answers there ({answer[:16]!r}, expected b'S' or b'N')"


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (a dangling link counts: mkdir fails on it)."""
    while not os.path.lexists(path) and path.parent != path:
        path = path.parent
    return path


#: The files SQLite's WAL mode keeps beside the database file, by suffix of its name.
WAL_SUFFIXES = ("-wal", "-shm")


def _wal_problem(path: Path) -> str | None:
    """Why SQLite's WAL mode could not use its files beside the existing database ``path``, or None.

    Every connection of the store opens ``<db>-wal`` and ``<db>-shm`` read-write, creating them when
    missing, beside the file a link points to: each must exist writable, or its folder be writable.
    """
    real = Path(os.path.realpath(path))  # SQLite resolves links: the WAL files sit beside the target
    missing = []
    for suffix in WAL_SUFFIXES:
        wal_file = real.with_name(real.name + suffix)
        if not os.path.lexists(wal_file):
            missing.append(wal_file.name)
        elif not os.access(wal_file, os.W_OK):
            return f"{wal_file} is not writable (WAL mode writes it)"
    if missing and not os.access(real.parent, os.W_OK | os.X_OK):
        return f"folder {real.parent} is not writable, and WAL mode must create {' and '.join(missing)} there"
    return None


def _sqlite_status(path: Path) -> Check:
    """Whether the SQLite store can open ``path``, without creating anything.

    The store makes the file's missing folders (``mkdir -p``), then the file and its WAL files
    beside it, so the file's folder, or else its nearest existing ancestor, must be writable. An
    existing file needs its WAL files too: already there and writable, or a writable folder.
    """
    name = "monitor database"
    if os.path.isdir(path):
        return Check(name, "not a file", f"SQLite path {path} is a directory")
    if os.path.lexists(path):
        if not os.access(path, os.W_OK):
            return Check(name, "not writable", f"SQLite file {path}")
        problem = _wal_problem(path)
        if problem is not None:
            return Check(name, "not writable", f"SQLite file {path}: {problem}")
        return Check(name, "ok", f"SQLite file {path}")
    directory = path.parent
    if os.path.isdir(directory):
        if not os.access(directory, os.W_OK | os.X_OK):
            return Check(name, "not writable", f"cannot create SQLite file {path}: folder {directory} is not writable")
        return Check(name, "ok", f"SQLite file {path} (created on first use)")
    ancestor = _nearest_existing(directory)
    if not os.path.isdir(ancestor):
        what = "a file, not a folder" if os.path.isfile(ancestor) else "not a folder"
        return Check(name, "not a directory", f"cannot create folder {directory}: {ancestor} is {what}")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return Check(name, "not writable", f"cannot create folder {directory}: {ancestor} is not writable")
    return Check(name, "ok", f"SQLite file {path} (created on first use, with its folder {directory})")


def database_status(db_url: str, timeout: float = PROBE_TIMEOUT_S) -> Check:
    """Check the monitoring store URL: the SQLite file can be opened or created, or PostgreSQL answers."""
    parts = urlsplit(db_url)
    if parts.scheme == "sqlite":
        # sqlite:///relative.db and sqlite:////absolute.db (SQLAlchemy-style spelling), as open_store reads them
        raw = db_url[len("sqlite:///") :] if db_url.startswith("sqlite:///") else ""
        if not raw or raw == ":memory:":
            return Check(
                "monitor database", "unsupported",
                f"{db_url!r}: the monitoring API needs a SQLite file (sqlite:///FILE); in-memory is refused",
            )
        return _sqlite_status(Path(raw))
    if parts.scheme.startswith("postgres"):
        try:
            host = parts.hostname or "127.0.0.1"
            port = parts.port or 5432
        except ValueError as exc:
            return Check("monitor database", "invalid", f"PostgreSQL URL: {exc}")
        status, error = _postgres_probe(host, port, timeout)
        if error is None:
            return Check("monitor database", status, f"PostgreSQL at {host}:{port}")
        return Check("monitor database", status, f"PostgreSQL at {host}:{port}: {error}")
    return Check("monitor database", "unsupported", f"unknown scheme {parts.scheme!r} (use sqlite or postgresql)")


def monitor_api_status(url: str | None, timeout: float = PROBE_TIMEOUT_S) -> Check:
    """GET ``<url>/health`` of the monitoring API the scanner reports to, if one is configured."""
    if not url:
        return Check("monitor API", "not configured", "set scanner.monitor_url (V4_SCANNER__MONITOR_URL)")
    import httpx  # local import: keeps `v4runtime --help` fast

    health = url.rstrip("/") + "/health"
    outcome: list[httpx.Response | Exception] = []

    def probe() -> None:
        try:
            outcome.append(httpx.get(health, timeout=timeout))
        except Exception as exc:  # noqa: BLE001 - reported below, whatever it is
            outcome.append(exc)

    # httpx's timeout bounds each read, not the whole answer: a server that trickles bytes would
    # hold the doctor for ever. The probe runs on a daemon thread with a deadline for all of it.
    worker = threading.Thread(target=probe, name="v4-doctor-probe", daemon=True)
    worker.start()
    worker.join(timeout * 3)
    if not outcome:
        return Check("monitor API", "unreachable", f"{health}: no complete answer within {timeout * 3:g} s")
    response = outcome[0]
    if isinstance(response, Exception):
        return Check("monitor API", "unreachable", f"{health}: {response or type(response).__name__}")
    if response.status_code not in (200, 503):
        return Check("monitor API", "unhealthy", f"{health} answered {response.status_code}")
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or "events_ingested" not in body or "dependencies" not in body:
        return Check(
            "monitor API", "not the monitoring API",
            f"{health} answered {response.status_code} without the monitoring API's health report "
            "(is the URL another service, such as the scan service?)",
        )
    if response.status_code == 200:
        return Check("monitor API", "healthy", f"{health} answered 200")
    failing = sorted(k for k, v in body["dependencies"].items() if isinstance(v, dict) and not v.get("ok"))
    return Check("monitor API", "unhealthy", f"{health} answered 503 (failing: {', '.join(failing) or 'unknown'})")


def collect(settings: Settings, *, cpuinfo_path: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """Everything the doctor reports, as plain data (what ``--json`` prints)."""
    checks = [
        model_status(),
        database_status(settings.monitor.db_url),
        monitor_api_status(settings.scanner.monitor_url),
    ]
    return {
        "versions": library_versions(),
        "cpu": cpu_features(cpuinfo_path),
        "checks": [asdict(check) for check in checks],
        "settings": masked(settings),
    }


def render(report: dict[str, Any]) -> str:
    """The human-readable form of :func:`collect`'s report."""
    lines = ["versions:"]
    lines += [f"  {name}: {value}" for name, value in report["versions"].items()]
    cpu = report["cpu"]
    lines.append(f"cpu ({cpu['machine']}):")
    if cpu["known"]:
        lines += [f"  {name}: {'yes' if on else 'no'}" for name, on in cpu["features"].items()]
    lines.append(f"  int8: {cpu['int8_note']}")
    lines.append("checks:")
    lines += [f"  {c['name']}: {c['status']} - {c['detail']}" for c in report["checks"]]
    lines.append("settings:")
    for section, values in report["settings"].items():
        for key, value in values.items():
            lines.append(f"  {section}.{key}: {json.dumps(value)}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run the doctor; always exits 0 (it reports, it does not judge)."""
    settings = load_settings(args.config)
    report = collect(settings)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(render(report))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``v4runtime doctor``."""
    parser = subparsers.add_parser(
        "doctor", help="show versions, CPU INT8 features, model and service status, effective settings"
    )
    parser.add_argument("--config", metavar="FILE", default=None, help="YAML settings file (optional)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run)
