"""Model cards: build from a file, JSON round trip, Markdown rendering, the shipped card's page."""

from __future__ import annotations

from pathlib import Path

from v4runtime.cli import main
from v4runtime.model.card import ModelCard, build_card, card_path, read_card, render_markdown, sha256_file
from v4runtime.model.registry import resolve_model
from v4runtime.model.report import render_docs

REPO = Path(__file__).resolve().parents[2]
GENERATED = REPO / "docs" / "generated" / "model"


def test_card_is_read_from_the_file_and_round_trips(exported, tmp_path: Path) -> None:
    _, path = exported
    card = build_card(path, name="toy", threshold=0.7, manifest_sha256="ab" * 32, training={"epochs": 1},
                      metrics={"fpr": {"value": 0.001}})
    assert card.sha256 == sha256_file(path)
    assert [i.name for i in card.inputs][:2] == ["pixel", "meta"]
    assert card.inputs[0].shape == ["N", 4, 256, 256]
    assert card.size_bytes == path.stat().st_size
    again = ModelCard.model_validate_json(card.model_dump_json())
    assert again == card
    text = render_markdown(card)
    assert card.sha256 in text and "| fpr.value | 0.001 |" in text and "| Threshold | 0.7000 |" in text
    assert card_path(tmp_path / "a.onnx") == tmp_path / "a.card.json"


def test_model_card_command_writes_markdown(tmp_path: Path, capsys) -> None:
    out = tmp_path / "card.md"
    assert main(["model-card", "--markdown", str(out)]) == 0
    assert out.read_text() == render_markdown(resolve_model().card)
    assert main(["model-card"]) == 0
    assert resolve_model().sha256 in capsys.readouterr().out


def test_generated_pages_are_current() -> None:
    """docs/generated/model/{card,architecture,training}.md must render the shipped model and card
    (regenerate with `v4runtime model-card --docs docs/generated/model`)."""
    resolved = resolve_model()
    card = read_card(card_path(resolved.path))
    for name, text in render_docs(resolved.path, card).items():
        assert (GENERATED / name).read_text(encoding="utf-8") == text, f"{name} is stale"


def test_training_record_belongs_to_the_shipped_model() -> None:
    """docs/generated/model/training.json is the `--report` of the run that made the shipped model."""
    import json

    resolved = resolve_model()
    record = json.loads((GENERATED / "training.json").read_text(encoding="utf-8"))
    assert record["sha256"] == resolved.sha256
    assert record["history"] == resolved.card.training["history"]
    assert record["command"].startswith("v4runtime train ")
