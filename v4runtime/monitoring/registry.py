"""Model versions: register (current or canary), list, and roll back.

A version's sha256 and size come from the model file when a path is given; FPR and TPR come from the
model card (``v4runtime.model.card``, or the ``<model>.card.json`` file beside the model) when it has them.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

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
    records = store.list_models()
    by_role = {r.role: r for r in records if r.role in ("current", "canary", "previous")}
    return ModelVersions(
        current=_public(by_role["current"]) if "current" in by_role else None,
        canary=_public(by_role["canary"]) if "canary" in by_role else None,
        previous=_public(by_role["previous"]) if "previous" in by_role else None,
        versions=[_public(r) for r in records],
    )


def register(store: Store, body: RegisterModel) -> ModelVersion:
    """Register a version; as ``current`` it demotes the current one to ``previous``.

    Raises:
        APIError: 422 without a path or a sha256 + size, or when the path is not a file.
    """
    fpr, tpr = body.fpr, body.tpr
    if body.path is not None:
        path = _resolve_path(body.path)
        try:
            sha256, size = _sha256(path), path.stat().st_size
        except OSError as exc:
            raise APIError(422, "validation_error", f"invalid field 'path': cannot read {path}: {exc.strerror}",
                           details=[{"field": "path", "message": "unreadable", "type": "value_error"}]) from exc
        card_fpr, card_tpr = card_rates(path)
        fpr = card_fpr if fpr is None else fpr
        tpr = card_tpr if tpr is None else tpr
    elif body.sha256 is not None and body.size_bytes is not None:
        sha256, size = body.sha256, body.size_bytes
    else:
        raise APIError(
            422, "validation_error", "invalid field 'path': give path, or sha256 and size_bytes",
            details=[{"field": "path", "message": "give path, or sha256 and size_bytes", "type": "missing"}],
        )
    now = time.time()
    records = {r.version: r for r in store.list_models()}
    existing = records.get(body.version)
    # Registering a version again in the role it has (a retried request) changes no other version:
    # demoting again would retire the previous version, the rollback target.
    unchanged_role = existing is not None and existing.role == body.role
    changed: list[ModelRecord] = []
    for record in records.values():
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
    store.save_models([*changed, new])
    return _public(new)


def rollback(store: Store, body: Rollback) -> ModelVersions:
    """Make the previous (or the named) version current; the current one is retired.

    Raises:
        APIError: 409 when there is nothing to roll back to, 404 for an unknown version.
    """
    records = {r.version: r for r in store.list_models()}
    current = next((r for r in records.values() if r.role == "current"), None)
    if body.to_version is not None:
        target = records.get(body.to_version)
        if target is None:
            raise APIError(404, "not_found", f"unknown model version {body.to_version!r}")
    else:
        target = next((r for r in records.values() if r.role == "previous"), None)
        if target is None:
            raise APIError(409, "conflict", "no previous version to roll back to")
    if current is not None and current.version == target.version:
        raise APIError(409, "conflict", f"{target.version} is already current")
    now = time.time()
    changed = []
    for record in records.values():
        if record.role == "previous" and record.version != target.version:
            record.role = "retired"
            changed.append(record)
    if current is not None:
        current.role = "retired"
        changed.append(current)
    target.role, target.deployed_at = "current", now
    changed.append(target)
    store.save_models(changed)
    return list_versions(store)
