"""The committed OpenAPI document matches the code, and a schema-based fuzzer finds no 5xx or schema drift."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from v4runtime.monitoring.commands import openapi_text

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "docs" / "generated" / "monitoring" / "openapi.json"
TOKEN = "fuzz-writer"  # the write token of the fuzz_base_url server (conftest.py)
EXAMPLES_PER_OPERATION = 6
CASES: list[str] = []

schema = schemathesis.openapi.from_path(str(COMMITTED))


def test_committed_openapi_matches_the_code() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == openapi_text(), (
        "docs/generated/monitoring/openapi.json is stale: run "
        "`v4runtime monitor openapi --output docs/generated/monitoring/openapi.json`"
    )
    document = json.loads(COMMITTED.read_text())
    assert {"/health", "/v1/metrics/log", "/v1/metrics/stats", "/v1/alerts/recent", "/v1/models/versions",
            "/metrics"} <= set(document["paths"])


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_api_conforms_to_its_schema(case, fuzz_base_url: str) -> None:
    CASES.append(case.operation.label)
    # positive_data_acceptance is left out: some schema-valid requests are refused on purpose by rules a
    # schema cannot express (a 7d window at 1m granularity, a model path that is not a file) with a 422.
    case.call_and_validate(
        base_url=fuzz_base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10,
        excluded_checks=[positive_data_acceptance],
    )


def test_report_fuzz_case_count(capsys: pytest.CaptureFixture[str]) -> None:
    operations = len({c for c in CASES})
    with capsys.disabled():
        print(f"\nschemathesis: {len(CASES)} cases over {operations} operations, no 5xx, responses match the schema")
    assert len(CASES) >= 100
