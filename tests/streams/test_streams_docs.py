"""The generated docs tables are current, and the committed benchmark table matches its JSON."""

from __future__ import annotations

import json
from pathlib import Path

from v4runtime.bench.streams import _markdown
from v4runtime.cli import main
from v4runtime.streams.doctables import render

GENERATED = Path(__file__).resolve().parents[2] / "docs" / "generated" / "streams"


def test_generated_tables_are_current() -> None:
    for name, text in render().items():
        path = GENERATED / name
        assert path.is_file(), f"missing {path}: run python -m v4runtime.streams.doctables docs/generated/streams"
        assert path.read_text(encoding="utf-8") == text, (
            f"{path} is stale: run python -m v4runtime.streams.doctables docs/generated/streams"
        )


def test_bench_table_matches_its_json() -> None:
    result = json.loads((GENERATED / "bench.json").read_text(encoding="utf-8"))
    assert (GENERATED / "bench.md").read_text(encoding="utf-8") == _markdown(result, result["size"])
    assert result["images"] >= 100 and result["ratio_extract_over_decode"] > 0


def test_bench_streams_writes_both_reports_naming_the_cpu(tmp_path: Path) -> None:
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    assert main(["bench", "streams", "--images", "20", "--size", "128", "--rounds", "1",
                 "--json", str(out_json), "--markdown", str(out_md)]) == 0
    result = json.loads(out_json.read_text(encoding="utf-8"))
    assert result["images"] == 20 and result["extract_images_per_s"] > 0 and result["cpu_vector"]
    assert sum(row["images"] for row in result["per_format"].values()) == 20
    md = out_md.read_text(encoding="utf-8")
    assert md == _markdown(result, 128) and md.endswith(f"Measured on {result['cpu']} ({result['cpu_vector']}).\n")


def test_reasons_table_lists_every_reason_a_scan_can_report() -> None:
    from v4runtime.scanner import INTERNAL_REASONS
    from v4runtime.streams.extract import REASONS

    text = (GENERATED / "reasons.md").read_text(encoding="utf-8")
    missing = [r for r in sorted({*REASONS, *INTERNAL_REASONS}) if f"| `{r}` |" not in text]
    assert not missing, f"docs/generated/streams/reasons.md lacks {missing}"
