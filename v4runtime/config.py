"""Configuration: defaults in code, then a YAML file, then ``V4_*`` environment variables.

Later layers override earlier ones. Nested keys map to environment variables with a double
underscore: ``monitor.db_url`` is ``V4_MONITOR__DB_URL``. ``v4runtime doctor`` prints the
effective values with secrets masked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from v4runtime.errors import ConfigError

ENV_PREFIX = "V4_"
#: Field names whose values are masked when settings are displayed.
SECRET_FIELDS = frozenset({"read_tokens", "write_tokens", "webhook_token", "password"})


class MonitorSettings(BaseModel):
    """Settings of the monitoring API server."""

    model_config = ConfigDict(extra="forbid")

    db_url: str = "sqlite:///v4-monitor.db"
    host: str = "127.0.0.1"
    port: int = Field(default=8400, ge=0, le=65535)
    read_tokens: list[str] = Field(default_factory=list)
    write_tokens: list[str] = Field(default_factory=list)
    alert_rules: str | None = None
    webhook_urls: list[str] = Field(default_factory=list)
    retention_days: int = Field(default=30, ge=1)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    rate_limit_per_second: float = Field(default=2000.0, gt=0)
    # Added by H-monitor (issue 6): alerting, retention and webhook knobs of `v4runtime monitor serve`.
    rate_limit_burst: float | None = Field(default=None, gt=0)
    webhook_token: str | None = None
    alert_interval_s: float = Field(default=15.0, gt=0)
    aggregate_retention_days: int = Field(default=400, ge=1)
    public_url: str | None = None
    # NORMAL (WAL): a committed event survives a killed process; FULL: also a power cut (an fsync per commit).
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"

    @field_validator("read_tokens", "write_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: Any) -> Any:
        # V4_MONITOR__WRITE_TOKENS=a,b is friendlier than a YAML list in an environment variable.
        if isinstance(value, str):
            return [t.strip() for t in value.split(",") if t.strip()]
        return value


class ScannerSettings(BaseModel):
    """Settings of the scanner and scan service."""

    model_config = ConfigDict(extra="forbid")

    model: str = "v4-default"
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    host: str = "127.0.0.1"
    port: int = Field(default=8401, ge=0, le=65535)
    monitor_url: str | None = None


class Settings(BaseModel):
    """All settings of v4runtime."""

    model_config = ConfigDict(extra="forbid")

    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    scanner: ScannerSettings = Field(default_factory=ScannerSettings)


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Turn ``V4_SECTION__KEY=value`` variables into a nested dict (values parsed as YAML)."""
    result: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        path = key[len(ENV_PREFIX) :].lower().split("__")
        node = result
        for part in path[:-1]:
            node = node.setdefault(part, {})
        try:
            node[path[-1]] = yaml.safe_load(raw) if raw else raw
        except yaml.YAMLError:
            node[path[-1]] = raw
    return result


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Load settings from an optional YAML file and the environment.

    Raises:
        ConfigError: the file is missing, is not a YAML mapping, or a value is invalid.
    """
    data: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {file}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {file} is not valid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {file} must hold a mapping at the top level")
        data = loaded
    data = _merge(data, _env_overrides(os.environ if environ is None else environ))
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"invalid setting {where}: {first['msg']}") from exc


def _mask_url_password(value: str) -> str:
    """``scheme://user:secret@host`` -> ``scheme://user:***@host`` (other strings unchanged)."""
    parts = urlsplit(value) if "://" in value else None
    if parts is None or parts.password is None:
        return value
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def masked(settings: Settings) -> dict[str, Any]:
    """Settings as a dict with secret values (tokens, URL passwords) replaced by ``***``."""

    def mask(node: Any, key: str = "") -> Any:
        if isinstance(node, dict):
            return {k: mask(v, k) for k, v in node.items()}
        if key in SECRET_FIELDS and node:
            return "***" if not isinstance(node, list) else ["***"] * len(node)
        if isinstance(node, str):
            return _mask_url_password(node)
        if isinstance(node, list):
            return [_mask_url_password(v) if isinstance(v, str) else v for v in node]
        return node

    return mask(settings.model_dump())
