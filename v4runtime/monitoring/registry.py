"""Model versions: register (current or canary), list, and roll back.

A version's sha256 and size come from the model file when a path is given; FPR and TPR come from the
model card (``v4runtime.model.card``, or the ``<model>.card.json`` file beside the model) when it has them.
A version names one file: it cannot be registered again with another sha256 or size. Every change is one
read-modify-write transaction under the store's models lock (:meth:`Store.update_models`).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, TypeAlias

from v4runtime.monitoring.api_errors import APIError
from v4runtime.monitoring.schemas import ModelVersion, ModelVersions, RegisterModel, Rollback
from v4runtime.monitoring.store import ModelRecord, Store


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _find_rate(metrics: Any, key: str) -> float | None:
    """``metrics[key]``, or the first ``metrics[*][key]`` one level down."""
    if not isinstance(metrics, dict):
        return None
    value = metrics.get(key)
    if isinstance(value, int | float):
        return float(value)
    for nested in metrics.values():
        if isinstance(nested, dict) and isinstance(nested.get(key), int | float):
            return float(nested[key])
    return None


def card_rates(model_path: Path) -> tuple[float | None, float | None]:
    """FPR and TPR from the model's card (``x.onnx`` -> ``x.card.json``), when it exists and carries them.

    The card is validated with ``v4runtime.model.card.ModelCard`` when that package is installed; a card
    that does not validate still gives its ``metrics`` mapping.
    """
    card_file = model_path.with_name(model_path.name.removesuffix(".onnx") + ".card.json")
    if not card_file.is_file():
        return None, None
    try:
        raw = json.loads(card_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    metrics: Any = raw.get("metrics") if isinstance(raw, dict) else None
    try:  # optional: the model package owns the card format
        from v4runtime.model.card import ModelCard

        metrics = ModelCard.model_validate(raw).metrics
    except Exception:  # noqa: BLE001 - missing package or a partial card: keep the raw metrics
        pass
    fpr = _find_rate(metrics, "fpr")
    tpr = _find_rate(metrics, "tpr")
    return fpr, tpr


def _resolve_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    try:
        if path.is_file():
            if path.suffix.lower() != ".onnx":  # else any file the server can read could be fingerprinted
                raise APIError(
                    422, "validation_error", f"invalid field 'path': {name_or_path} is not an .onnx model file",
                    details=[{"field": "path", "message": "not an .onnx file", "type": "value_error"}],
                )
            return path
    except (OSError, ValueError):  # name too long, NUL byte, ...: not a usable path
        pass
    try:  # a shipped model name such as "v4-default"
        from v4runtime.model.registry import resolve_model  # type: ignore[import-not-found]

        return Path(resolve_model(name_or_path).path)
    except Exception as exc:  # noqa: BLE001 - missing package or unknown name: same answer
        raise APIError(
            422, "validation_error", f"invalid field 'path': no model file at {name_or_path}",
            details=[{"field": "path", "message": "no such file", "type": "value_error"}],
        ) from exc


#: sha256, size in bytes, FPR and TPR of a version to register.
Fingerprint: TypeAlias = tuple[str, int, float | None, float | None]


def _public(record: ModelRecord) -> ModelVersion:
    from datetime import UTC, datetime

    def ts(x: float | None) -> datetime | None:
        return None if x is None else datetime.fromtimestamp(x, UTC)

    return ModelVersion(
        version=record.version, role=record.role, sha256=record.sha256, size_bytes=record.size_bytes,  # type: ignore[arg-type]
        fpr=record.fpr, tpr=record.tpr, registered_at=ts(record.registered_at), deployed_at=ts(record.deployed_at),  # type: ignore[arg-type]
    )


def list_versions(store: Store) -> ModelVersions:
    """Current, canary and previous versions, and all of them."""
    return _versions(store.list_models())


def _versions(records: list[ModelRecord]) -> ModelVersions:
    """The answer of ``GET /models/versions`` for ``records`` (newest first)."""
    by_role = {r.role: r for r in records if r.role in ("current", "canary", "previous")}
    return ModelVersions(
        current=_public(by_role["current"]) if "current" in by_role else None,
        canary=_public(by_role["canary"]) if "canary" in by_role else None,
        previous=_public(by_role["previous"]) if "previous" in by_role else None,
        versions=[_public(r) for r in records],
    )


def _mismatch(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message, "type": "value_error"}


def _fingerprint(body: RegisterModel) -> Fingerprint:
    """sha256, size, FPR and TPR of the version to register: from its file when a path is given.

    Raises:
        APIError: 422 without a path or a sha256 + size, when the path is not a model file, or when a
            sha256 or size given beside the path is not the file's.
    """
    if body.path is None:
        if body.sha256 is None or body.size_bytes is None:
            raise APIError(
                422, "validation_error", "invalid field 'path': give path, or sha256 and size_bytes",
                details=[{"field": "path", "message": "give path, or sha256 and size_bytes", "type": "missing"}],
            )
        return body.sha256, body.size_bytes, body.fpr, body.tpr
    path = _resolve_path(body.path)
    try:
        sha256, size = _sha256(path), path.stat().st_size
    except OSError as exc:
        raise APIError(422, "validation_error", f"invalid field 'path': cannot read {path}: {exc.strerror}",
                       details=[{"field": "path", "message": "unreadable", "type": "value_error"}]) from exc
    # A checksum given beside the path is the caller's expectation of the file: a different file is refused,
    # not registered under a fingerprint the caller did not mean.
    details = []
    if body.sha256 is not None and body.sha256 != sha256:
        details.append(_mismatch("sha256", f"does not match the file at path (its sha256 is {sha256})"))
    if body.size_bytes is not None and body.size_bytes != size:
        details.append(_mismatch("size_bytes", f"does not match the file at path (its size is {size} bytes)"))
    if details:
        raise APIError(422, "validation_error", f"invalid field '{details[0]['field']}': {details[0]['message']}",
                       details=details)
    card_fpr, card_tpr = card_rates(path)
    return sha256, size, card_fpr if body.fpr is None else body.fpr, card_tpr if body.tpr is None else body.tpr


def _check_same_content(existing: ModelRecord, sha256: str, size: int) -> None:
    """A version names one file: registering it again with another one is a conflict, not a replacement.

    Raises:
        APIError: 409 when ``existing`` has another sha256 or size.
    """
    details = [
        {"field": field, "message": f"{existing.version} is registered with {field} {old}, not {new}",
         "type": "conflict"}
        for field, old, new in (("sha256", existing.sha256, sha256), ("size_bytes", existing.size_bytes, size))
        if old != new
    ]
    if details:
        raise APIError(
            409, "conflict",
            f"model version {existing.version!r} is already registered with other content "
            f"(sha256 {existing.sha256}, {existing.size_bytes} bytes): register the new file as a new version",
            details=details,
        )


def _check_not_demoting_current(existing: ModelRecord, role: str) -> None:
    """The current version leaves that role only when another one takes it (a registration or a rollback).

    Registering it again as ``canary`` or ``retired`` would leave no version current.

    Raises:
        APIError: 409 when ``existing`` is current and ``role`` is not.
    """
    if existing.role == "current" and role != "current":
        raise APIError(
            409, "conflict",
            f"model version {existing.version!r} is current: register another version as current, or roll back, "
            "to take it out of service",
            details=[{"field": "role", "type": "conflict",
                      "message": f"{existing.version} is current; it cannot be registered as {role}"}],
        )


def _plan_register(records: list[ModelRecord], body: RegisterModel, fingerprint: Fingerprint,
                   now: float) -> list[ModelRecord]:
    """The records a registration changes, the registered version last (``records`` are changed in place).

    Raises:
        APIError: 409 when the version exists with other content, or is current and ``body`` names
            another role.
    """
    sha256, size, fpr, tpr = fingerprint
    existing = next((r for r in records if r.version == body.version), None)
    if existing is not None:
        _check_same_content(existing, sha256, size)
        _check_not_demoting_current(existing, body.role)
    # Registering a version again in the role it has (a retried request) changes no other version:
    # demoting again would retire the previous version, the rollback target.
    unchanged_role = existing is not None and existing.role == body.role
    changed: list[ModelRecord] = []
    for record in records:
        if record.version == body.version or unchanged_role:
            continue
        if record.role == body.role and body.role in ("current", "canary"):
            record.role = "previous" if body.role == "current" else "retired"
            changed.append(record)
        elif body.role == "current" and record.role == "previous":
            record.role = "retired"
            changed.append(record)
    new = ModelRecord(
        version=body.version, role=body.role, sha256=sha256, size_bytes=size, fpr=fpr, tpr=tpr,
        registered_at=existing.registered_at if existing else now,
        deployed_at=(existing.deployed_at if unchanged_role and existing is not None
                     else now if body.role in ("current", "canary") else None),
    )
    return [*changed, new]


def register(store: Store, body: RegisterModel) -> ModelVersion:
    """Register a version; as ``current`` it demotes the current one to ``previous``.

    The file is hashed first; the roles are then read, changed and written in one serialised transaction,
    so concurrent registrations and rollbacks (on any server of the database) cannot interleave.

    Raises:
        APIError: 422 without a path or a sha256 + size, when the path is not a file, or when a given
            sha256 or size is not the file's; 409 when the version exists with another sha256 or size,
            or is the current version and the request names another role.
    """
    fingerprint = _fingerprint(body)  # outside the transaction: hashing a large file must not hold the lock
    now = time.time()
    records = store.update_models(lambda current: _plan_register(current, body, fingerprint, now))
    return _public(next(r for r in records if r.version == body.version))


def _plan_rollback(records: list[ModelRecord], body: Rollback, now: float) -> list[ModelRecord]:
    """The records a rollback changes (``records`` are changed in place).

    Raises:
        APIError: 409 when there is nothing to roll back to, 404 for an unknown version.
    """
    by_version = {r.version: r for r in records}
    current = next((r for r in records if r.role == "current"), None)
    if body.to_version is not None:
        target = by_version.get(body.to_version)
        if target is None:
            raise APIError(404, "not_found", f"unknown model version {body.to_version!r}")
    else:
        target = next((r for r in records if r.role == "previous"), None)
        if target is None:
            raise APIError(409, "conflict", "no previous version to roll back to")
    if current is not None and current.version == target.version:
        raise APIError(409, "conflict", f"{target.version} is already current")
    changed = []
    for record in records:
        if record.role == "previous" and record.version != target.version:
            record.role = "retired"
            changed.append(record)
    if current is not None:
        current.role = "retired"
        changed.append(current)
    target.role, target.deployed_at = "current", now
    changed.append(target)
    return changed


def rollback(store: Store, body: Rollback) -> ModelVersions:
    """Make the previous (or the named) version current; the current one is retired.

    One serialised transaction: of two rollbacks racing, the second finds no previous version (409).

    Raises:
        APIError: 409 when there is nothing to roll back to, 404 for an unknown version.
    """
    now = time.time()
    return _versions(store.update_models(lambda current: _plan_rollback(current, body, now)))
