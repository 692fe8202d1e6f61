"""Configuration: defaults in code, then a YAML file, then ``V4_*`` environment variables.

Later layers override earlier ones. Nested keys map to environment variables with a double
underscore: ``monitor.db_url`` is ``V4_MONITOR__DB_URL``. A variable for a text setting (a token,
a URL, a name) is taken verbatim; others (numbers, lists) are parsed as YAML; an empty variable
unsets an optional setting. ``v4runtime doctor`` prints the effective values with secrets masked.
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from v4runtime import strict_yaml
from v4runtime.errors import ConfigError
from v4runtime.files import read_file

ENV_PREFIX = "V4_"
#: Field names whose values are masked when settings are displayed.
SECRET_FIELDS = frozenset({"read_tokens", "write_tokens", "webhook_token", "monitor_token", "password"})
#: A config file larger than this is refused (a settings file is a few hundred bytes).
MAX_CONFIG_BYTES = 1_048_576
#: Longest retention accepted, in days (100 years): far more, and "now minus the retention" is no date.
MAX_RETENTION_DAYS = 36_500
#: Requests the scan service lets wait beyond the scans it runs at once (``scanner.scan_queue``).
DEFAULT_SCAN_QUEUE = 64


def _shown(value: str) -> str:
    """``value`` as it may appear in an error message: a URL's password masked."""
    try:
        return _mask_url_password(value)
    except ValueError:  # unparseable: show no part that could be a password
        return value.split("://", 1)[0] + "://..." if "@" in value else value


def _check_http_url(value: str, what: str) -> str:
    """``value`` if it is an http(s) URL with a host (and a valid port), else ValueError."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in 0-65535
    except ValueError as exc:
        raise ValueError(f"{what} {_shown(value)!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} {_shown(value)!r} must be an http:// or https:// URL with a host")
    return value


def _check_db_url(value: str) -> str:
    """``value`` if the monitoring store can open it (the rules of ``open_store``), else ValueError."""
    if value.startswith("sqlite:///"):
        if value[len("sqlite:///") :] in ("", ":memory:"):
            raise ValueError("a sqlite URL needs a file path, e.g. sqlite:///v4-monitor.db (in-memory is refused)")
        return value
    if value.startswith(("postgresql://", "postgres://")):
        try:
            urlsplit(value).port  # noqa: B018 - validates the port
        except ValueError as exc:
            raise ValueError(f"{_shown(value)!r} is not a valid URL: {exc}") from None
        return value
    raise ValueError("use sqlite:///FILE or postgresql://USER@HOST:PORT/DB")


class _Section(BaseModel):
    """Common rules of every settings section: no unknown keys, no NaN/infinity, no booleans as numbers."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic turns `port: true` into 1 in lax mode; a boolean is never a valid number here.
        if isinstance(value, bool) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            if bool not in _leaf_types(annotation):
                raise ValueError(f"expected {_type_name(annotation)}, got the boolean {value!r}")
        return value


def _leaf_types(annotation: Any) -> set[Any]:
    """The plain types an annotation admits (``int | None`` -> {int, NoneType})."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return set().union(*(_leaf_types(arg) for arg in typing.get_args(annotation)))
    return {typing.get_origin(annotation) or annotation}


def _type_name(annotation: Any) -> str:
    names = sorted(getattr(t, "__name__", str(t)) for t in _leaf_types(annotation) if t is not type(None))
    return " or ".join(names) or "a value"


class MonitorSettings(_Section):
    """Settings of the monitoring API server."""

    db_url: str = "sqlite:///v4-monitor.db"
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8400, ge=0, le=65535)
    read_tokens: list[str] = Field(default_factory=list)
    write_tokens: list[str] = Field(default_factory=list)
    alert_rules: str | None = None
    webhook_urls: list[str] = Field(default_factory=list)
    retention_days: int = Field(default=30, ge=1)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # Seconds a request body may stall (no bytes arriving) before the request is answered 408.
    body_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    rate_limit_per_second: float = Field(default=2000.0, gt=0)
    # Added by H-monitor (issue 6): alerting, retention and webhook knobs of `v4runtime monitor serve`.
    rate_limit_burst: float | None = None  # at least 1 (see _whole_request_burst)
    webhook_token: str | None = None
    alert_interval_s: float = Field(default=15.0, gt=0)
    aggregate_retention_days: int = Field(default=400, ge=1)
    public_url: str | None = None
    # NORMAL (WAL): a committed event survives a killed process; FULL: also a power cut (an fsync per commit).
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    # How long a SQLite statement waits for a lock another connection holds before the request gets a 503.
    sqlite_timeout_s: float = Field(default=30.0, gt=0, le=3600)

    @field_validator("read_tokens", "write_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: Any) -> Any:
        # V4_MONITOR__WRITE_TOKENS=a,b is friendlier than a YAML list in an environment variable.
        if isinstance(value, str):
            return [t.strip() for t in value.split(",") if t.strip()]
        return value

    @field_validator("db_url")
    @classmethod
    def _valid_db_url(cls, value: str) -> str:
        return _check_db_url(value)

    @field_validator("retention_days", "aggregate_retention_days")
    @classmethod
    def _bounded_retention(cls, value: int) -> int:
        if value > MAX_RETENTION_DAYS:
            raise ValueError(f"must be at most {MAX_RETENTION_DAYS} days (100 years), got {value}")
        return value

    @field_validator("rate_limit_burst")
    @classmethod
    def _whole_request_burst(cls, value: float | None) -> float | None:
        # Every request takes one whole token: a bucket that holds less than one never lets one through.
        if value is not None and value < 1:
            raise ValueError(f"must be at least 1 (each request takes one token), got {value:g}")
        return value

    @field_validator("webhook_urls")
    @classmethod
    def _valid_webhook_urls(cls, value: list[str]) -> list[str]:
        return [_check_http_url(url, "webhook URL") for url in value]

    @field_validator("public_url")
    @classmethod
    def _valid_public_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url(value, "public URL")


class ScannerSettings(_Section):
    """Settings of the scanner and scan service."""

    model: str = Field(default="v4-default", min_length=1)
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8401, ge=0, le=65535)
    monitor_url: str | None = None
    #: Write token for the monitoring API. Set it as ``V4_SCANNER__MONITOR_TOKEN`` rather than
    #: ``--monitor-token``: a command line is visible to every user in ``ps``.
    monitor_token: str | None = Field(default=None, min_length=1)
    # Scans the service runs at once (None: the CPUs this process may use). A large image takes
    # hundreds of MB while it is scanned, so this bounds the service's memory as well as its CPU.
    max_scans: int | None = Field(default=None, ge=1)
    # Requests that may wait (uploading, or for a scan slot) beyond max_scans; more are answered 503.
    scan_queue: int = Field(default=DEFAULT_SCAN_QUEUE, ge=0)

    @field_validator("monitor_url")
    @classmethod
    def _valid_monitor_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url(value, "monitor URL")


class Settings(BaseModel):
    """All settings of v4runtime."""

    model_config = ConfigDict(extra="forbid")

    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    scanner: ScannerSettings = Field(default_factory=ScannerSettings)


def _field_annotation(path: list[str]) -> Any:
    """The annotation of the setting at ``path`` (e.g. ``["monitor", "port"]``), None if there is none."""
    model: Any = Settings
    annotation: Any = None
    for part in path:
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return None
        annotation = fields[part].annotation
        model = annotation
    return annotation


def _env_value(path: list[str], raw: str) -> Any:
    """The value of one ``V4_*`` variable: text settings take the text as is, others are parsed as YAML.

    Parsing a token or URL as YAML would silently change it (``abc #1`` -> ``abc``, ``null`` -> None,
    ``0123`` -> 83), so only numbers, lists and the like go through YAML. An empty variable unsets an
    optional setting.
    """
    leaves = _leaf_types(_field_annotation(path))
    if raw == "" and type(None) in leaves:
        return None
    if str in leaves and not leaves & {int, float, list}:
        return raw
    try:
        parsed = yaml.safe_load(raw) if raw else raw
    except yaml.YAMLError:
        return raw
    if list in leaves and not isinstance(parsed, list):
        return raw  # `a,b` or a single token: split by the field's validator
    return parsed


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Turn ``V4_SECTION__KEY=value`` variables into a nested dict (see :func:`_env_value`)."""
    result: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        path = key[len(ENV_PREFIX) :].lower().split("__")
        node = result
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"environment variable {key} conflicts with another V4_* variable")
            node = child
        if isinstance(node.get(path[-1]), dict):
            raise ConfigError(f"environment variable {key} conflicts with another V4_* variable")
        node[path[-1]] = _env_value(path, raw)
    return result


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Load settings from an optional YAML file and the environment, then ``overrides`` (a command's
    options, e.g. ``{"scanner": {"monitor_url": ...}}``), validated by the same rules.

    Raises:
        ConfigError: the file is missing, is not a YAML mapping, or a value is invalid.
    """
    data: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        try:
            loaded = strict_yaml.load(_read_config_file(file))
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {file} is not valid YAML: {strict_yaml.describe(exc)}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {file} must hold a mapping at the top level")
        data = loaded
    data = _merge(data, _env_overrides(os.environ if environ is None else environ))
    data = _merge(data, overrides or {})
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc) from exc


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _read_config_file(file: Path) -> str:
    """The text of a config file; ConfigError for anything that is not a readable UTF-8 regular file
    (see :func:`v4runtime.files.read_file`: a named pipe is refused, never waited on)."""
    data = read_file(file, MAX_CONFIG_BYTES, error=ConfigError, what="config file ")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {file} is not UTF-8 text (byte {exc.start} cannot be decoded)") from exc


def config_error(exc: ValidationError) -> ConfigError:
    """The one-line :class:`ConfigError` for a settings validation failure (its first error)."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    return ConfigError(f"invalid setting {where}: {_one_line(message)}")


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
