"""Reproductions: a training report set against the shipped model, the command, the docs record."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import pytest

from v4runtime.cli import main
from v4runtime.model.registry import resolve_model
from v4runtime.model.reproduction import RECORD_JSON, RECORD_MARKDOWN, compare, load_record, render

REPO = Path(__file__).resolve().parents[2]
GENERATED = REPO / "docs" / "generated" / "model"


def _shipped_report() -> dict:
    """The shipped model's own training report: by definition a reproduction of it."""
    return json.loads((GENERATED / "training.json").read_text(encoding="utf-8"))


def test_the_shipped_run_reproduces_the_shipped_model() -> None:
    card = resolve_model().card
    rep = compare(_shipped_report(), card, today=dt.date(2026, 1, 2))
    assert rep.same_model and rep.same_corpus and rep.same_command
    assert rep.parted_at_epoch is None
    assert rep.recorded == "2026-01-02" and rep.sha256 == card.sha256


def test_a_run_that_parted_names_the_epoch_and_what_else_differs() -> None:
    card = resolve_model().card
    report = copy.deepcopy(_shipped_report())
    report["sha256"] = "0" * 64
    report["history"][2]["loss"] += 1e-6
    report["config"]["seed"] = 7
    report["corpus"]["manifest_sha256"] = "f" * 64
    report.update(cpu_model="Some CPU", cpu_flags=["avx2"])
    rep = compare(report, card)
    assert not rep.same_model and not rep.same_corpus and not rep.same_command
    assert rep.parted_at_epoch == 3
    assert rep.cpu == "Some CPU (avx2)"


def test_the_one_command_recipe_counts_its_corpus_build_apart() -> None:
    report = copy.deepcopy(_shipped_report())
    report["seconds"] = {"corpus_build": 60.0, "streams": 200.0, "train": 800.0, "export": 5.0, "total": 1065.0}
    rep = compare(report, resolve_model().card)
    assert (rep.corpus_build_seconds, rep.training_seconds) == (60.0, 1005.0)
    report["seconds"] = {"streams": 200.0, "train": 800.0, "export": 5.0, "total": 1005.0}
    report["corpus"]["seconds"] = 70.0  # built beforehand by `dataset build`, which records it in corpus.json
    rep = compare(report, resolve_model().card)
    assert (rep.corpus_build_seconds, rep.training_seconds) == (70.0, 1005.0)


def test_command_exit_code_and_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    same = tmp_path / "same.json"
    same.write_text(json.dumps(_shipped_report()))
    other = copy.deepcopy(_shipped_report())
    other["sha256"] = "1" * 64
    other["history"][0]["loss"] = 0.5
    different = tmp_path / "different.json"
    different.write_text(json.dumps(other))

    assert main(["model-card", "--reproduction", str(same)]) == 0
    assert "reproduced v4-default" in capsys.readouterr().out
    assert not (tmp_path / RECORD_JSON).exists()

    docs = tmp_path / "docs"
    assert main(["model-card", "--reproduction", str(different), "--docs", str(docs)]) == 1
    out = capsys.readouterr().out
    assert "did not reproduce v4-default" in out and "parted from the shipped record at epoch 1" in out
    assert main(["model-card", "--reproduction", str(same), "--docs", str(docs)]) == 0
    entries = load_record(docs)
    assert [e["same_model"] for e in entries] == [False, True]
    table = (docs / RECORD_MARKDOWN).read_text()
    assert table == render(entries)
    assert "loss parted at epoch 1" in table and "**same model**" in table


def test_a_file_that_is_not_a_training_report_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["model-card", "--reproduction", str(bad)]) == 2
    bad.write_text(json.dumps({"loss": 1}))
    assert main(["model-card", "--reproduction", str(bad)]) == 2
    assert "not a training report" in capsys.readouterr().err
    bad.write_text(json.dumps({"sha256": "2" * 64, "history": ["?", 3], "seconds": [], "corpus": 7}))  # odd: "not it"
    assert main(["model-card", "--reproduction", str(bad)]) == 1
    assert "loss parted from the shipped record at epoch 1" in capsys.readouterr().out


def test_committed_record_is_current() -> None:
    """docs/generated/model/reproductions.md renders reproductions.json (rewritten by
    `v4runtime model-card --reproduction REPORT --docs docs/generated/model`)."""
    entries = load_record(GENERATED)
    assert entries, "the record of reproductions is missing"
    assert (GENERATED / RECORD_MARKDOWN).read_text(encoding="utf-8") == render(entries)
    assert all(e["shipped_sha256"] == resolve_model().sha256 for e in entries)
