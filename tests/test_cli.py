"""The `v4runtime` entry point and `v4runtime doctor`, against real sockets, files and HTTP."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from jsonhttp import json_handler, serving

from v4runtime import __version__, doctor
from v4runtime.cli import main

CPUINFO_VNNI = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n\nprocessor\t: 1\nflags\t\t: fpu\n"
CPUINFO_AVX2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"


def test_version_from_the_console_script() -> None:
    result = subprocess.run([sys.executable, "-m", "v4runtime", "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.strip() == f"v4runtime {__version__}"


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "doctor" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2


def test_typed_errors_become_one_line_and_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--config", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: config file {tmp_path / 'missing.yaml'}: no such file"


def test_cli_start_does_not_import_torch() -> None:
    """The runtime never needs PyTorch: building the whole parser must not import it."""
    code = "import sys; from v4runtime.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# --- doctor -------------------------------------------------------------------------------------


def test_cpu_flags_parsing(tmp_path: Path) -> None:
    (tmp_path / "vnni").write_text(CPUINFO_VNNI)
    (tmp_path / "avx2").write_text(CPUINFO_AVX2)
    vnni = doctor.cpu_features(tmp_path / "vnni")
    assert vnni["features"] == {"AVX2": True, "AVX-512F": True, "AVX512-VNNI": True, "AVX-VNNI": False}
    assert "VNNI present" in vnni["int8_note"]
    avx2 = doctor.cpu_features(tmp_path / "avx2")
    assert avx2["features"]["AVX2"] and not avx2["features"]["AVX512-VNNI"]
    assert "reduce_range" in avx2["int8_note"]


def test_cpu_features_fall_back_without_proc_cpuinfo(tmp_path: Path) -> None:
    info = doctor.cpu_features(tmp_path / "absent")
    assert info["known"] is False and info["features"] == {}
    assert info["int8_note"].startswith("unknown")
    assert "cpu" in doctor.render({"versions": {}, "cpu": info, "checks": [], "settings": {}})


def test_model_presence_by_file(tmp_path: Path) -> None:
    assert doctor.model_status(tmp_path).status == "absent"
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "v4-default.onnx").write_bytes(b"\x08\x01")
    present = doctor.model_status(tmp_path)
    assert present.status == "present" and "2 bytes" in present.detail


def test_sqlite_database_checks(tmp_path: Path) -> None:
    assert doctor.database_status(f"sqlite:///{tmp_path}/v4.db").status == "ok"
    missing_dir = doctor.database_status(f"sqlite:///{tmp_path}/no/such/dir/v4.db")  # the store makes it
    assert missing_dir.status == "ok" and "with its folder" in missing_dir.detail
    assert not (tmp_path / "no").exists()
    assert doctor.database_status("sqlite:///:memory:").status == "unsupported"  # open_store refuses it
    assert doctor.database_status("mysql://127.0.0.1/x").status == "unsupported"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.postgres
def test_postgres_reachable_and_unreachable() -> None:
    assert doctor.database_status("postgresql://postgres@127.0.0.1:5432/test").status == "reachable"
    down = doctor.database_status(f"postgresql://postgres@127.0.0.1:{_closed_port()}/test", timeout=0.5)
    assert down.status == "unreachable" and "refused" in down.detail.lower()


#: The shape of the monitoring API's ``GET /health`` answer (what the doctor recognises it by).
MONITOR_HEALTH = {"status": "ok", "version": "0", "uptime_s": 1.0, "requests": {}, "events_ingested": 0,
                  "queue_depth": 0, "dependencies": {"store": {"ok": True, "detail": "sqlite"}}}


@pytest.fixture
def health_server() -> Iterator[str]:
    with serving(json_handler(200, MONITOR_HEALTH, path="/health")) as url:
        yield url


def test_monitor_api_health(health_server: str) -> None:
    assert doctor.monitor_api_status(None).status == "not configured"
    assert doctor.monitor_api_status(health_server).status == "healthy"
    assert doctor.monitor_api_status(health_server + "/nested").status == "unhealthy"  # /nested/health -> 404
    down = doctor.monitor_api_status(f"http://127.0.0.1:{_closed_port()}", timeout=0.5)
    assert down.status == "unreachable"


def test_doctor_json_report(health_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("V4_SCANNER__MONITOR_URL", health_server)
    monkeypatch.setenv("V4_MONITOR__DB_URL", f"sqlite:///{tmp_path}/m.db")
    monkeypatch.setenv("V4_MONITOR__WRITE_TOKENS", "[topsecret]")
    assert main(["doctor", "--json"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out)
    assert set(report["versions"]) == {"python", "onnxruntime", "numpy", "Pillow"}
    assert report["versions"]["onnxruntime"] != "absent"
    checks = {c["name"]: c["status"] for c in report["checks"]}
    assert checks["monitor API"] == "healthy" and checks["monitor database"] == "ok"
    assert checks["bundled model"] in {"present", "absent"}
    assert report["settings"]["monitor"]["write_tokens"] == ["***"] and "topsecret" not in out


def test_doctor_text_report(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("V4_SCANNER__MONITOR_URL", raising=False)
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for heading in ("versions:", "cpu (", "checks:", "settings:"):
        assert heading in out
    assert "monitor API: not configured" in out
    assert "  monitor.db_url: " in out
