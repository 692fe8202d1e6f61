"""The committed gate report for the shipped model is current and self-consistent.

Regenerate it with the commands in docs/deployment/guide.md ("The gate on the shipped model")
whenever the shipped model changes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from v4runtime.model.registry import resolve_model
from v4runtime.quantization import render_markdown
from v4runtime.quantization.host import host_features
from v4runtime.quantization.variant import choose_variant

GENERATED = Path(__file__).resolve().parents[2] / "docs" / "generated" / "quant"


#: Every committed gate report: S8S8 (``gate-report``) and A16W8 (``gate-report-a16w8``).
REPORTS = sorted(GENERATED.glob("gate-report*.json"))


def test_both_variants_are_reported() -> None:
    assert sorted(p.stem for p in REPORTS) == ["gate-report", "gate-report-a16w8"]


def _report(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", REPORTS, ids=lambda p: p.stem)
def test_report_belongs_to_the_shipped_model(path: Path) -> None:
    report = _report(path)
    shipped = resolve_model("v4-default")
    assert report["models"]["fp32_sha256"] == shipped.sha256, (
        "docs/generated/quant/gate-report.json was made for another model: rerun the commands in "
        "docs/deployment/guide.md ('The gate on the shipped model')"
    )
    assert report["quantization"]["fp32_sha256"] == shipped.sha256
    assert report["size"]["fp32_bytes"] == shipped.path.stat().st_size


@pytest.mark.parametrize("path", REPORTS, ids=lambda p: p.stem)
def test_markdown_matches_its_json(path: Path) -> None:
    assert path.with_suffix(".md").read_text(encoding="utf-8") == render_markdown(_report(path))


def test_a16w8_report_is_what_it_says() -> None:
    report = _report(GENERATED / "gate-report-a16w8.json")
    assert report["quantization"]["activation_type"] == "QInt16"
    assert report["quantization"]["weight_type"] == "QInt8"


@pytest.mark.parametrize("path", REPORTS, ids=lambda p: p.stem)
def test_committed_verdict_is_consistent_and_large_enough(path: Path) -> None:
    # The report is a measurement, not a promise: whether the shipped model passes is reported in the
    # closing notes. What must hold is that the verdict follows from its checks, that the corpus is of
    # a useful size, and that deployment never picks INT8 from a failed report.
    report = _report(path)
    failed = [c["name"] for c in report["checks"] if not c["passed"]]
    assert report["passed"] == (not failed)
    assert report["images"]["clean"] >= 1000 and report["images"]["stego"] >= 500
    variant, reason = choose_variant(report, host_features())
    if not report["passed"]:
        assert variant == "fp32" and "gate failed" in reason
