"""Settings layering: code defaults, then a YAML file, then V4_* environment variables."""

from __future__ import annotations

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
        ("- a list\n", {}, "must hold a mapping"),
        ("monitor: [unclosed\n", {}, "not valid YAML"),
        ("", {"V4_SCANNER__THRESHOLD": "1.5"}, "invalid setting scanner.threshold"),
    ],
)
def test_bad_settings_raise_config_error(tmp_path: Path, text: str, environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(_yaml(tmp_path, text), environ=environ)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
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
