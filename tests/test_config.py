"""Settings layering: code defaults, then a YAML file, then V4_* environment variables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from v4runtime.config import Settings, load_settings, masked
from v4runtime.errors import ConfigError


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "v4.yaml"
    path.write_text(text)
    return path


def test_defaults_without_file_or_environment() -> None:
    settings = load_settings(environ={})
    assert settings == Settings()
    assert settings.monitor.db_url.startswith("sqlite:///")
    assert settings.monitor.host == settings.scanner.host == "127.0.0.1"  # loopback unless told otherwise


def test_yaml_overrides_defaults_and_keeps_the_rest(tmp_path: Path) -> None:
    settings = load_settings(_yaml(tmp_path, "monitor:\n  port: 9000\nscanner:\n  threshold: 0.7\n"), environ={})
    assert settings.monitor.port == 9000
    assert settings.scanner.threshold == 0.7
    assert settings.monitor.db_url == Settings().monitor.db_url


def test_environment_overrides_yaml(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "monitor:\n  port: 9000\n  db_url: sqlite:///file.db\n")
    settings = load_settings(path, environ={"V4_MONITOR__PORT": "9100", "UNRELATED": "x", "V4_NOSECTION": "y"})
    assert settings.monitor.port == 9100  # parsed as YAML: an int, not the string "9100"
    assert settings.monitor.db_url == "sqlite:///file.db"


def test_environment_values_are_typed() -> None:
    settings = load_settings(
        environ={"V4_SCANNER__THRESHOLD": "0.25", "V4_MONITOR__WEBHOOK_URLS": "[http://127.0.0.1:9/hook]"}
    )
    assert settings.scanner.threshold == 0.25
    assert settings.monitor.webhook_urls == ["http://127.0.0.1:9/hook"]


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("V4_SCANNER__PORT", "8555")
    assert load_settings().scanner.port == 8555


@pytest.mark.parametrize(
    ("text", "environ", "message"),
    [
        ("monitor:\n  port: 70000\n", {}, "invalid setting monitor.port"),
        ("monitor:\n  colour: blue\n", {}, "invalid setting monitor.colour"),
        ("monitor:\n  body_timeout_s: 0\n", {}, "invalid setting monitor.body_timeout_s"),
        ("- a list\n", {}, "must hold a mapping"),
        ("monitor: [unclosed\n", {}, "not valid YAML"),
        # before: the second section silently replaced the first
        ("monitor:\n  port: 1\nmonitor:\n  port: 2\n", {}, r"not valid YAML: line 3: duplicate key 'monitor' \(first on line 1\)"),
        ("[" * 5000 + "]" * 5000, {}, "not valid YAML: nested too deeply"),  # before: a RecursionError
        ("", {"V4_SCANNER__THRESHOLD": "1.5"}, "invalid setting scanner.threshold"),
    ],
)
def test_bad_settings_raise_config_error(tmp_path: Path, text: str, environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(_yaml(tmp_path, text), environ=environ)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file .*nope.yaml: no such file"):
        load_settings(tmp_path / "nope.yaml", environ={})


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load_settings(_yaml(tmp_path, ""), environ={}) == Settings()


def test_masked_hides_tokens_and_url_passwords() -> None:
    settings = load_settings(
        environ={
            "V4_MONITOR__READ_TOKENS": "[alpha, beta]",
            "V4_MONITOR__DB_URL": "postgresql://v4:hunter2@127.0.0.1:5432/v4",
        }
    )
    shown = masked(settings)
    assert shown["monitor"]["read_tokens"] == ["***", "***"]
    assert shown["monitor"]["db_url"] == "postgresql://v4:***@127.0.0.1:5432/v4"
    assert "hunter2" not in repr(shown) and "alpha" not in repr(shown)
    assert shown["monitor"]["port"] == settings.monitor.port  # non-secrets untouched


# --- bad files, bad variables: always a one-line ConfigError, never a traceback or a hang ----------


def test_config_path_that_is_a_directory_or_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory, not a file"):
        load_settings(tmp_path, environ={})
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"monitor:\n  host: caf\xe9\n")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_settings(latin1, environ={})


def test_config_path_that_is_a_named_pipe_does_not_hang(tmp_path: Path) -> None:
    """Opening a FIFO for reading blocks until a writer comes; the loader must refuse it instead."""
    fifo = tmp_path / "v4.yaml"
    os.mkfifo(fifo)
    result = subprocess.run(
        [sys.executable, "-m", "v4runtime", "doctor", "--config", str(fifo)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: config file {fifo} is a named pipe, not a file"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"V4_MONITOR__PORT": "true"}, "invalid setting monitor.port: expected int, got the boolean True"),
        ({"V4_SCANNER__THRESHOLD": ".nan"}, "invalid setting scanner.threshold: Input should be a finite number"),
        ({"V4_MONITOR__ALERT_INTERVAL_S": ".inf"}, "invalid setting monitor.alert_interval_s: Input should be a finite"),
        ({"V4_MONITOR__RATE_LIMIT_PER_SECOND": "-1"}, "invalid setting monitor.rate_limit_per_second"),
        ({"V4_MONITOR__SQLITE_TIMEOUT_S": "0"}, "invalid setting monitor.sqlite_timeout_s"),
        ({"V4_MONITOR__SQLITE_TIMEOUT_S": "7200"}, "invalid setting monitor.sqlite_timeout_s"),
        ({"V4_MONITOR__DB_URL": ""}, "invalid setting monitor.db_url: use sqlite:///FILE"),
        ({"V4_MONITOR__DB_URL": "sqlite:///:memory:"}, "in-memory is refused"),
        ({"V4_MONITOR__DB_URL": "sqlite://relative.db"}, "invalid setting monitor.db_url"),
        ({"V4_MONITOR__HOST": ""}, "invalid setting monitor.host"),
        ({"V4_SCANNER__MONITOR_URL": "localhost:8400"}, "must be an http:// or https:// URL with a host"),
        ({"V4_SCANNER__MONITOR_URL": "http://[::1"}, "is not a valid URL"),
        ({"V4_MONITOR__WEBHOOK_URLS": "[ftp://x]"}, "invalid setting monitor.webhook_urls"),
        ({"V4_MONITOR__PORT": "1", "V4_MONITOR__PORT__X": "2"}, "conflicts with another V4_\\* variable"),
    ],
)
def test_bad_environment_values_are_config_errors(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=environ)


def test_bad_url_errors_do_not_print_the_password() -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(environ={"V4_MONITOR__DB_URL": "postgresql://v4:hunter2@127.0.0.1:99999/v4"})
    assert "Port out of range" in str(exc.value) and "hunter2" not in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        load_settings(environ={"V4_SCANNER__MONITOR_URL": "http://u:hunter2@[::1/"})
    assert "hunter2" not in str(exc.value)


def test_text_settings_from_the_environment_are_taken_verbatim() -> None:
    """Tokens and names are text: YAML would cut `abc #1` at the comment, read `0123` as 83, `null` as None."""
    settings = load_settings(
        environ={
            "V4_MONITOR__WEBHOOK_TOKEN": "null",
            "V4_MONITOR__WRITE_TOKENS": "abc #1,0123",
            "V4_MONITOR__READ_TOKENS": "0123",
            "V4_SCANNER__MODEL": "2024",
            "V4_SCANNER__MONITOR_URL": "",  # empty: unset an optional setting
        }
    )
    assert settings.monitor.webhook_token == "null"
    assert settings.monitor.write_tokens == ["abc #1", "0123"]
    assert settings.monitor.read_tokens == ["0123"]
    assert settings.scanner.model == "2024"
    assert settings.scanner.monitor_url is None


def test_cli_overrides_that_break_a_setting_are_one_line(tmp_path: Path) -> None:
    """`monitor serve --port 70000` re-validates the settings with the option applied."""
    for argv, message in (
        (["--port", "70000"], "error: invalid setting port: Input should be less than or equal to 65535"),
        (["--db", "sqlite:///:memory:"], "error: invalid setting db_url: a sqlite URL needs a file path"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "v4runtime", "monitor", "serve", *argv],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(message) and len(result.stderr.strip().splitlines()) == 1, result.stderr
