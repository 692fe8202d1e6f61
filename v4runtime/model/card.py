"""The model card: what a shipped model is, how it was made and how well it does.

A card is JSON next to its model (``v4-default.onnx`` -> ``v4-default.card.json``). Training
writes the identity, size and training fields; ``v4runtime evaluate --update-card`` fills
``metrics``. :func:`render_markdown` turns a card into the page included by the docs.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from v4runtime.errors import ModelError
from v4runtime.files import read_file

CARD_SUFFIX = ".card.json"


class TensorSpec(BaseModel):
    """Name, shape (``"N"`` marks the dynamic batch axis) and element type of a graph input/output."""

    model_config = ConfigDict(extra="forbid")

    name: str
    shape: list[int | str]
    dtype: str = "float32"


class ModelCard(BaseModel):
    """Identity, signature, size, training provenance and measured metrics of one model."""

    model_config = ConfigDict(extra="forbid")

    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    created: datetime
    training_manifest_sha256: str | None = Field(default=None, description="sha256 of the corpus manifest.jsonl")
    parameters: int = Field(ge=0)
    flops: int = Field(ge=0, description="FLOPs per image, counted over the ONNX graph")
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    threshold: float = Field(ge=0.0, le=1.0, description="stego probability at or above which a file is flagged")
    opset: int | None = None
    size_bytes: int | None = None
    training: dict[str, Any] = Field(default_factory=dict, description="command, seed, epochs, corpus, wall time")
    metrics: dict[str, Any] = Field(default_factory=dict, description="filled by `v4runtime evaluate --update-card`")
    calibration: dict[str, Any] = Field(
        default_factory=dict, description="how the threshold was chosen, filled by `v4runtime calibrate`"
    )


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def card_path(model_path: str | Path) -> Path:
    """Where the card of ``model_path`` lives (``x.onnx`` -> ``x.card.json``)."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.name.removesuffix(".onnx") + CARD_SUFFIX)


def read_card(path: str | Path) -> ModelCard:
    """Load and validate a card.

    Raises:
        ModelError: the file is missing, not JSON, or not a valid card.
    """
    path = Path(path)
    try:
        text = read_text_file(path)
    except ModelError as exc:
        if exc.reason == "not_found":
            raise ModelError(f"model card not found: {path}", reason="card_missing") from None
        raise ModelError(f"cannot read model card: {exc}", reason="card_invalid") from None
    except UnicodeDecodeError as exc:
        raise ModelError(f"cannot read model card {path}: {exc}", reason="card_invalid") from None
    try:
        return ModelCard.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "card"
        raise ModelError(f"invalid model card {path}: {where}: {first['msg']}", reason="card_invalid") from None


def read_text_file(path: str | Path, max_bytes: int = 64 * 1024 * 1024) -> str:
    """The UTF-8 text of the regular file at ``path``, without ever blocking on a named pipe.

    Raises:
        ModelError: ``reason`` ``not_found``, ``not_a_file`` (a folder, pipe or device),
            ``too_large`` or ``unreadable`` (see :func:`v4runtime.files.read_file`).
        UnicodeDecodeError: not UTF-8 text.
    """
    return read_file(path, max_bytes, error=ModelError).decode("utf-8")


def write_card(card: ModelCard, path: str | Path) -> Path:
    """Write ``card`` as indented JSON to ``path`` and return the path."""
    path = Path(path)
    path.write_text(card.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return path


def build_card(model_path: str | Path, *, name: str, threshold: float, manifest_sha256: str | None = None,
               training: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None) -> ModelCard:
    """Make a card for the ONNX file at ``model_path``: hash, signature, parameters and FLOPs are
    read from the file itself, never typed."""
    import onnx

    from v4runtime.model.flops import graph_cost

    model_path = Path(model_path)
    model = onnx.load(str(model_path))
    cost = graph_cost(model_path)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    return ModelCard(
        name=name,
        sha256=sha256_file(model_path),
        created=datetime.now(UTC).replace(microsecond=0),
        training_manifest_sha256=manifest_sha256,
        parameters=cost.parameters,
        flops=cost.flops,
        inputs=[_tensor_spec(v) for v in model.graph.input],
        outputs=[_tensor_spec(v) for v in model.graph.output],
        threshold=threshold,
        opset=opset,
        size_bytes=model_path.stat().st_size,
        training=training or {},
        metrics=metrics or {},
    )


def _tensor_spec(value: Any) -> TensorSpec:
    from onnx import helper

    ttype = value.type.tensor_type
    shape: list[int | str] = ["N" if d.dim_param or not d.HasField("dim_value") else d.dim_value
                              for d in ttype.shape.dim]
    return TensorSpec(name=value.name, shape=shape, dtype=str(helper.tensor_dtype_to_np_dtype(ttype.elem_type)))


def render_markdown(card: ModelCard) -> str:
    """Render a card as the Markdown page fragment the docs include."""
    lines = [
        "| Field | Value |",
        "|---|---|",
        f"| Name | `{card.name}` |",
        f"| sha256 | `{card.sha256}` |",
        f"| Created | {card.created.isoformat()} |",
        f"| Training manifest sha256 | `{card.training_manifest_sha256 or 'n/a'}` |",
        f"| Parameters | {card.parameters:,} |",
        f"| FLOPs per image | {card.flops:,} ({card.flops / 1e6:.1f} MFLOPs) |",
        f"| Threshold | {card.threshold:.4f} |",
    ]
    if card.opset is not None:
        lines.append(f"| ONNX opset | {card.opset} |")
    if card.size_bytes is not None:
        lines.append(f"| File size | {card.size_bytes:,} bytes |")
    lines += ["", "**Inputs and outputs**", "", "| Direction | Name | Shape | Type |", "|---|---|---|---|"]
    for direction, specs in (("input", card.inputs), ("output", card.outputs)):
        for s in specs:
            lines.append(f"| {direction} | `{s.name}` | ({', '.join(str(d) for d in s.shape)}) | {s.dtype} |")
    if card.training:
        lines += ["", "**Training**", "", "| Key | Value |", "|---|---|"]
        lines += [f"| {k} | {_cell(v)} |" for k, v in card.training.items()]
    if card.calibration:
        lines += ["", "**Threshold calibration**", "", "| Key | Value |", "|---|---|"]
        lines += [f"| {k} | {_cell(v)} |" for k, v in card.calibration.items()]
    lines += ["", "**Metrics**", ""]
    if card.metrics:
        lines += ["| Metric | Value |", "|---|---|"]
        lines += [f"| {k} | {_cell(v)} |" for k, v in _flatten(card.metrics)]
    else:
        lines.append("No metrics yet: run `v4runtime evaluate --update-card`.")
    return "\n".join(lines) + "\n"


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out += _flatten(value, name + ".")
        else:
            out.append((name, value))
    return out


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, dict)):
        return "`" + json.dumps(value) + "`"
    return str(value).replace("|", "\\|")
