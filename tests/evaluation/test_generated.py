"""The committed reports under docs/generated/eval are fresh: same model, same rendering, same verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from v4runtime.evaluation import render_files
from v4runtime.model.registry import resolve_model

REPO = Path(__file__).resolve().parents[2]
GENERATED = REPO / "docs" / "generated" / "eval"
REAL_CLEAN = REPO.parent / "shared" / "data" / "real-clean"
REPORTS = sorted(p for p in GENERATED.glob("*.json") if not p.name.startswith("bench-scan"))
REGENERATE = "regenerate with the commands on docs/architecture/performance.md"


def test_the_pages_reports_exist() -> None:
    for name in ("heldout", "real-clean", "bench-scan"):
        assert (GENERATED / f"{name}.json").is_file(), f"missing docs/generated/eval/{name}.json: {REGENERATE}"


@pytest.mark.parametrize("path", REPORTS, ids=lambda p: p.stem)
def test_evaluation_report_is_fresh(path: Path) -> None:
    report = json.loads(path.read_text())
    shipped = resolve_model(report["meta"]["model"])
    assert report["meta"]["model_sha256"] == shipped.sha256, f"{path.name} was made with another model: {REGENERATE}"
    for name, text in render_files(report, path.stem).items():
        assert (GENERATED / name).read_text() == text, f"{name} differs from its JSON: {REGENERATE}"


def test_bench_report_is_fresh() -> None:
    from v4runtime.bench.scan import render, render_targets

    path = GENERATED / "bench-scan.json"
    report = json.loads(path.read_text())
    assert report["model_sha256"] == resolve_model(report["model"]).sha256, f"bench-scan: {REGENERATE}"
    assert (GENERATED / "bench-scan.md").read_text() == render(report)
    assert (GENERATED / "bench-scan-targets.md").read_text() == render_targets(report), f"bench-scan-targets: {REGENERATE}"


def test_bench_host_record_holds_the_latest_report() -> None:
    """The page's table of CPUs is its JSON rendered, and the newest bench-scan report is its own CPU's row."""
    from v4runtime.bench import hosts

    rows = hosts.read_record(GENERATED / hosts.RECORD_JSON)
    assert (GENERATED / hosts.RECORD_MARKDOWN).read_text() == hosts.render_record(rows)
    report = json.loads((GENERATED / "bench-scan.json").read_text())
    newest = hosts.row_from_report(report)
    counted = {"runs", "p95_met_runs"}  # the stored row carries its CPU's earlier runs in these
    without_counts = [{k: v for k, v in r.items() if k not in counted} for r in rows]
    assert {k: v for k, v in newest.items() if k not in counted} in without_counts, f"bench-scan-hosts: {REGENERATE}"
    assert len({hosts.row_key(r) for r in rows}) == len(rows)


@pytest.mark.skipif(not REAL_CLEAN.is_dir(), reason=f"{REAL_CLEAN} is absent (only CI and the build machine have ../shared)")
def test_real_clean_verdicts_match_the_report() -> None:
    """Re-scan the 311 real images: every file is readable and the flagged set is the one the page shows."""
    from v4runtime.scanner import Scanner

    report = json.loads((GENERATED / "real-clean.json").read_text())
    scanner = Scanner(threshold=report["meta"]["threshold"])
    files = sorted(p for p in REAL_CLEAN.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".gif", ".webp"})
    assert len(files) == report["meta"]["files"]
    results = scanner.scan_many([str(p) for p in files], workers=1)
    assert [r.path for r in results if r.error] == []
    flagged = sorted(Path(r.path).name for r in results if r.is_stego)
    assert flagged == sorted(fp["path"] for fp in report["false_positives"])


def test_heldout_corpus_is_not_the_training_corpus() -> None:
    """The held-out figures come from a corpus built with another seed and another manifest than training's."""
    report = json.loads((GENERATED / "heldout.json").read_text())
    card = resolve_model(report["meta"]["model"]).card
    corpora = card.training.get("corpus") or []
    corpora = corpora if isinstance(corpora, list) else [corpora]
    assert report["meta"]["corpus_seed"] not in {c.get("seed") for c in corpora}
    assert report["meta"]["manifest_sha256"] != card.training_manifest_sha256
