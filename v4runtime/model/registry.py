"""Find a model by name or path and verify it before anyone runs it (no PyTorch needed).

``resolve_model()`` is how the scanner, the evaluation and quantisation get a model: it checks
that the file's sha256 equals the one in its card (so a card always describes the bytes it sits
next to) and that the graph has the detector's 8-input signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from v4runtime.errors import ModelError
from v4runtime.model.card import ModelCard, card_path, read_card, sha256_file
from v4runtime.model.signature import check_signature

#: Directory of the models shipped inside the package.
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
#: Name resolved when none is given.
DEFAULT_MODEL = "v4-default"


@dataclass(frozen=True)
class ResolvedModel:
    """A verified model file, its sha256 and its card."""

    path: Path
    sha256: str
    card: ModelCard


def available_models() -> list[str]:
    """Names of the models shipped in the package."""
    return sorted(p.name.removesuffix(".onnx") for p in MODELS_DIR.glob("*.onnx"))


def model_path(name_or_path: str | Path | None = None) -> Path:
    """Turn a shipped model's name, or a path, into a path (without verifying anything)."""
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or "/" in text or text.endswith(".onnx") or Path(text).exists():
        return Path(text)
    shipped = MODELS_DIR / f"{text}.onnx"
    if not shipped.exists():
        names = ", ".join(available_models()) or "none"
        raise ModelError(f"unknown model {text!r} (shipped models: {names}; or pass a path to an .onnx file)",
                         reason="unknown_model")
    return shipped


def resolve_model(name_or_path: str | Path | None = None) -> ResolvedModel:
    """Resolve and verify a model.

    Args:
        name_or_path: a shipped model's name (default ``"v4-default"``) or a path to an ``.onnx``
            file with a ``.card.json`` beside it.

    Raises:
        ModelError: unknown name, missing file or card, sha256 differing from the card, or a graph
            without the detector's input/output signature.
    """
    path = model_path(name_or_path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}", reason="model_missing")
    card = read_card(card_path(path))
    digest = sha256_file(path)
    if digest != card.sha256:
        raise ModelError(
            f"sha256 mismatch for {path}: file is {digest}, card {card_path(path).name} says {card.sha256} "
            "(the model was modified or the card belongs to another file)",
            reason="sha256_mismatch",
        )
    check_signature(path)
    return ResolvedModel(path=path.resolve(), sha256=digest, card=card)
