"""The gate: pass on a robust model, fail (with the culprit layer named) on a fragile one, and recover."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from quant_fixtures import write_image_set

from v4runtime.cli import main
from v4runtime.errors import QuantizationError
from v4runtime.quantization import Tolerances, quantize_model, render_markdown, verify_quantization


def test_robust_model_passes(robust: Path, robust_int8: Path, images: Path) -> None:
    report = verify_quantization(robust, robust_int8, images, repeats=1)
    assert report.passed
    assert report.agreement_pct == 100.0
    assert {k: report.images[k] for k in ("total", "clean", "stego", "per_method")} == {
        "total": 24, "clean": 12, "stego": 12, "per_method": {"lsb.rgb": 12}}
    assert report.fpr["fp32_pct"] == report.fpr["int8_pct"] == 0.0
    assert report.tpr["lsb.rgb"]["fp32_pct"] == report.tpr["lsb.rgb"]["int8_pct"] == 100.0
    low, high = report.fpr["delta_ci95_pp"]
    assert low < 0.0 < high  # 12 clean images cannot resolve a small FPR change; the interval says so
    assert 0.0 <= report.probability["max_abs_diff"] < 0.05
    assert report.size["ratio"] == pytest.approx(robust.stat().st_size / robust_int8.stat().st_size)
    assert report.latency["ratio"] == pytest.approx(report.latency["int8_median_ms"] / report.latency["fp32_median_ms"])
    assert report.variant["choice"] in {"int8", "fp32"}
    assert report.worst_layers == []
    assert report.quantization["format"] == "QDQ"


def test_fragile_model_fails_and_names_the_layer(fragile: Path, fragile_int8: Path, images: Path) -> None:
    report = verify_quantization(fragile, fragile_int8, images, repeats=1, worst_k=3)
    assert not report.passed
    failed = {c["name"] for c in report.checks if not c["passed"]}
    assert failed == {"agreement_pct", "delta_tpr_pp[lsb.rgb]"}
    assert report.tpr["lsb.rgb"]["delta_pp"] == -100.0
    assert report.variant["choice"] == "fp32" and "gate failed" in report.variant["reason"]
    assert len(report.worst_layers) == 3
    assert report.worst_layers[0]["node"].startswith("stego_head")
    assert report.worst_layers[0]["sqnr_db"] < 10.0 < report.worst_layers[1]["sqnr_db"]
    text = render_markdown(report.as_dict())
    assert "FAILED" in text and "stego_head" in text


def test_exclude_worst_keeps_the_culprit_in_float(fragile: Path, images: Path, tmp_path: Path) -> None:
    result = quantize_model(fragile, images, tmp_path / "fixed.onnx", exclude_worst=1, float_head=False)
    assert result.excluded_nodes[0].startswith("stego_head")
    assert any(n.startswith("head_in") for n in result.excluded_nodes)  # the Concat feeding it stays float too
    assert result.layer_losses[0]["node"] == result.excluded_nodes[0]
    assert verify_quantization(fragile, result.output, images, repeats=1).passed


def test_float_head_is_the_default_and_keeps_the_decision_in_float(fragile: Path, images: Path, tmp_path: Path) -> None:
    result = quantize_model(fragile, images, tmp_path / "head.onnx")
    assert result.settings["float_head"] == "true"
    assert {"stego_sigmoid", "stego_flat"} <= set(result.excluded_nodes)
    assert any(n.startswith("stego_head") for n in result.excluded_nodes)
    assert verify_quantization(fragile, result.output, images, repeats=1).passed


def test_tolerances_are_configurable(robust: Path, robust_int8: Path, images: Path) -> None:
    report = verify_quantization(robust, robust_int8, images, repeats=1, tolerances=Tolerances(min_agreement_pct=100.1))
    assert not report.passed
    assert [c["name"] for c in report.checks if not c["passed"]] == ["agreement_pct"]


def test_threshold_changes_decisions(robust: Path, robust_int8: Path, images: Path) -> None:
    report = verify_quantization(robust, robust_int8, images, repeats=1, threshold=1e-9, worst_k=0)
    assert report.fpr["fp32_pct"] == 100.0 and report.threshold == 1e-9


def test_cli_exit_codes_and_reports(robust: Path, robust_int8: Path, fragile: Path, fragile_int8: Path,
                                    images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "gate.json"
    markdown = tmp_path / "gate.md"
    args = ["verify-quant", "--fp32", str(robust), "--int8", str(robust_int8), "--data", str(images),
            "--report", str(report), "--markdown", str(markdown), "--repeats", "1"]
    assert main(args) == 0
    assert json.loads(report.read_text())["passed"] is True
    assert "PASSED" in markdown.read_text() and "INT8/FP32" in capsys.readouterr().out
    assert main(["verify-quant", "--fp32", str(fragile), "--int8", str(fragile_int8), "--data", str(images),
                 "--repeats", "1", "--worst", "0"]) == 1
    assert "gate failed" in capsys.readouterr().err
    unlabelled = write_image_set(tmp_path / "unlabelled", clean=1, stego=1, manifest=False)
    assert main(["verify-quant", "--fp32", str(robust), "--int8", str(robust_int8), "--data", str(unlabelled)]) == 2
    assert "manifest.jsonl" in capsys.readouterr().err


def test_cli_quantize(robust: Path, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "q.onnx"
    assert main(["quantize", "--model", str(robust), "--calibration", str(images), "--out", str(out),
                 "--no-per-channel", "--reduce-range", "--max-images", "6", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["settings"]["per_channel"] == "false" and result["int8_bytes"] == out.stat().st_size
    assert result["settings"]["reduce_range"] == "true"
    assert main(["quantize", "--model", str(tmp_path / "none.onnx"), "--calibration", str(images),
                 "--out", str(tmp_path / "x.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "x.onnx").exists()


def test_verify_refuses_mismatched_inputs(robust: Path, images: Path, tmp_path: Path) -> None:
    with pytest.raises(QuantizationError, match="does not exist"):
        verify_quantization(robust, tmp_path / "missing.onnx", images)
