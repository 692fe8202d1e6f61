"""`v4runtime evaluate` end to end on a real corpus folder, with the real ONNX runtime."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scanfix import png_bytes

from v4runtime.cli import main
from v4runtime.errors import V4Error
from v4runtime.evaluation import evaluate, load_corpus, render_ablation
from v4runtime.model.card import card_path, read_card
from v4runtime.scanner import Scanner
from v4runtime.streams.spec import STREAM_NAMES


def test_load_corpus_manifest_and_plain_folder(corpus: Path, tmp_path: Path) -> None:
    samples = load_corpus(corpus)
    assert len(samples) == 11
    assert sum(s.is_stego for s in samples) == 4
    assert samples[6].payload_size == 20 and samples[6].method == "raw" and samples[6].format == "png"
    (tmp_path / "a.PNG").write_bytes(png_bytes(1))
    (tmp_path / "b.txt").write_text("skip me")
    plain = load_corpus(tmp_path)
    assert [(Path(s.path).name, s.label, s.format) for s in plain] == [("a.PNG", "clean", "png")]
    with pytest.raises(V4Error, match="no images"):
        load_corpus(_empty(tmp_path))
    with pytest.raises(V4Error, match="not found"):
        load_corpus(tmp_path / "absent")
    bad = _empty(tmp_path, "bad")
    (bad / "manifest.jsonl").write_text('{"label": "clean"}\n')
    with pytest.raises(V4Error, match="manifest.jsonl:1"):
        load_corpus(bad)


def _empty(root: Path, name: str = "empty") -> Path:
    d = root / name
    d.mkdir(exist_ok=True)
    return d


def test_evaluate_metrics_baselines_ablation(corpus: Path, toy_model_path: Path) -> None:
    report = evaluate(Scanner(toy_model_path), load_corpus(corpus), workers=2, batch_size=3)
    m = report["model"]
    assert m["errors"] == {"clean": 1}
    assert (m["fpr"]["k"], m["fpr"]["n"]) == (0, 6)
    # the toy flags tails of >= 31 bytes (p = sigmoid(200 * len / 2048 - 3)): the 20-byte one is missed
    assert (m["tpr"]["k"], m["tpr"]["n"]) == (3, 4)
    assert m["tpr_by_method_min64"]["raw"]["rate"] == 1.0
    assert m["tpr_by_payload"]["1-63 B"]["rate"] == 0.0
    assert m["method_accuracy"]["rate"] == 1.0
    # the same scores at other thresholds: the lowest FPR level keeps the card's 0 false positives here
    points = report["operating_points"]
    assert points["tpr_target_needs"]["raw"]["tpr"]["n"] == m["tpr_by_method_min64"]["raw"]["n"]
    named = points["tpr_target_needs"]["raw"]["fpr_named"]
    assert named["n"] == 6 and named["k"] <= points["tpr_target_needs"]["raw"]["fpr"]["k"]
    assert points["levels"][0]["fpr"]["k"] == 0 and points["levels"][0]["tpr_min64"]["raw"]["n"] >= 1
    assert m["confusion"]["raw"] == {"clean": 1, "alpha": 0, "palette": 0, "lsb.rgb": 0, "exif": 0, "raw": 3}
    assert report["errors"][0]["path"].endswith("broken.png")
    assert set(report["ablation"]) == set(STREAM_NAMES)
    assert report["ablation"]["meta"]["delta_tpr_pp"] == pytest.approx(-75.0)  # tails live in `meta`: 3 of 4 lost
    assert report["ablation"]["pixel"]["delta_tpr_pp"] == 0.0
    v3 = report["baselines"]["V3-style"]
    assert v3["tpr_by_method"]["raw"]["k"] == 4  # its tail rule sees every non-zero tail
    assert set(report["latency"]) == {"read_ms", "streams_ms", "inference_ms", "total_ms"}
    # every readable file also runs through the whole graph: skipping empty encoders changed nothing
    skipping = report["empty_stream_skipping"]
    assert skipping["files"] == m["fpr"]["n"] + m["tpr"]["n"] == 10
    assert skipping["max_abs_diff"] <= 1e-6 and skipping["decisions_changed"] == 0
    assert "on all 10 readable files" in render_ablation(report) and "changes 0 decisions" in render_ablation(report)


def test_evaluate_cli_writes_reports_and_updates_card(corpus: Path, toy_model_path: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "m" / "toy.onnx"
    model.parent.mkdir()
    model.write_bytes(toy_model_path.read_bytes())
    card_path(model).write_text(card_path(toy_model_path).read_text())
    code = main(["evaluate", "--data", str(corpus), "--model", str(model), "--out-dir", str(tmp_path / "out"),
                 "--name", "tiny", "--update-card"])
    out = capsys.readouterr().out
    assert code == 0
    assert "FPR 0.000% (0/6" in out and "unreadable 1" in out
    report = json.loads((tmp_path / "out" / "tiny.json").read_text())
    assert report["meta"]["files"] == 11 and report["meta"]["model"] == "toy"
    md = (tmp_path / "out" / "tiny.md").read_text()
    assert "false-positive rate | 0.000% (0/6, 95% CI 0.000%-39.03" in md
    assert "| truth \\ predicted |" in md
    assert "**Operating points**" in md and "| 0 (0.000%): the card's threshold |" in md
    assert "| V4 model |" in (tmp_path / "out" / "tiny-comparison.md").read_text()
    assert "| meta |" in (tmp_path / "out" / "tiny-ablation.md").read_text()
    metrics = read_card(card_path(model)).metrics["tiny"]
    assert metrics["fpr"] == 0.0 and metrics["false_positives"] == 0 and metrics["tpr"] == 0.75
    Scanner(model)  # the ONNX file is untouched: its sha256 still matches the card


def test_evaluate_plain_folder(toy_model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(3):
        (tmp_path / f"img{i}.png").write_bytes(png_bytes(i))
    code = main(["evaluate", "--data", str(tmp_path), "--model", str(toy_model_path), "--out-dir",
                 str(tmp_path / "o"), "--no-ablation", "--no-baselines"])
    assert code == 0
    report = json.loads((tmp_path / "o" / f"{tmp_path.name}.json").read_text())
    assert report["model"]["clean"] == 3 and report["model"]["stego"] == 0
    assert "ablation" not in report and "baselines" not in report and "operating_points" not in report
    assert report["model"]["tpr"]["rate"] is None


def test_ablation_stride_compares_on_the_same_files(corpus: Path, toy_model_path: Path) -> None:
    report = evaluate(Scanner(toy_model_path), load_corpus(corpus), baselines=False, batch_size=3,
                      ablation_stride=2)
    base = report["ablation_base"]
    assert (base["files"], base["stride"]) == (6, 2)  # batches 0 and 2 of 4: files 0-2 and 6-8
    meta = report["ablation"]["meta"]
    assert meta["fpr"]["n"] + meta["tpr"]["n"] == base["fpr"]["n"] + base["tpr"]["n"]
    assert meta["tpr"]["n"] == 3 and meta["delta_tpr_pp"] == pytest.approx(-100 * base["tpr"]["rate"])
    assert "baselines" not in report


def test_model_verdicts_name_the_top_method_below_the_threshold_too(corpus: Path, toy_model_path: Path) -> None:
    """``top_method`` (what the operating points count per method) is set for every readable file,
    clean ones included, from the same method probabilities the scanner reports."""
    from v4runtime.evaluation import _EvalState

    scanner = Scanner(toy_model_path)
    paths = sorted(str(p) for p in corpus.rglob("*.png"))
    verdicts = _EvalState(scanner, baselines=False, ablation=False).run((0, paths))[0]
    readable = [(path, v) for path, v in zip(paths, verdicts, strict=True) if v.error is None]
    assert any(not v.is_stego for _, v in readable)  # below the threshold: no method, but a top method
    for path, v in readable:
        probabilities = scanner.scan(path).method_probabilities
        assert v.top_method == max(probabilities, key=probabilities.__getitem__)
        assert v.method == (v.top_method if v.is_stego else None)
