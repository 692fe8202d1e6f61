"""The committed gate report for the shipped model is current and self-consistent.

Regenerate it with the commands in docs/deployment/guide.md ("The gate on the shipped model")
whenever the shipped model changes.
"""

from __future__ import annotations

import json
from pathlib import Path

from v4runtime.model.registry import resolve_model
from v4runtime.quantization import render_markdown

GENERATED = Path(__file__).resolve().parents[2] / "docs" / "generated" / "quant"


def _report() -> dict:
    return json.loads((GENERATED / "gate-report.json").read_text(encoding="utf-8"))


def test_report_belongs_to_the_shipped_model() -> None:
    report = _report()
    shipped = resolve_model("v4-default")
    assert report["models"]["fp32_sha256"] == shipped.sha256, (
        "docs/generated/quant/gate-report.json was made for another model: rerun the commands in "
        "docs/deployment/guide.md ('The gate on the shipped model')"
    )
    assert report["quantization"]["fp32_sha256"] == shipped.sha256
    assert report["size"]["fp32_bytes"] == shipped.path.stat().st_size


def test_markdown_matches_its_json() -> None:
    assert (GENERATED / "gate-report.md").read_text(encoding="utf-8") == render_markdown(_report())


def test_gate_passes_on_the_shipped_model() -> None:
    report = _report()
    failed = [c["name"] for c in report["checks"] if not c["passed"]]
    assert report["passed"] and not failed, f"the INT8 gate fails on the shipped model: {failed}"
    assert report["images"]["clean"] >= 1000 and report["images"]["stego"] >= 500
