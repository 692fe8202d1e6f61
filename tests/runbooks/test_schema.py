"""The JSON Schema: every shipped runbook conforms; malformed ones are rejected naming file, step, field."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from v4runtime.runbooks.loader import load_file, runbook_files
from v4runtime.runbooks.schema import RunbookValidationError, schema

from .helpers import REPO, cli, write_runbook

SHIPPED = runbook_files(REPO / "runbooks")

GOOD_STEP = """
  - id: first
    description: ok
    run: "true"
    verify: {exit_code: 0}
"""


def test_there_are_runbooks_to_check() -> None:
    assert {p.stem for p in SHIPPED} >= {"dev-check", "site", "monitor-api"}


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_runbook_validates(path: Path) -> None:
    book = load_file(path)
    assert book.steps and all(step.verify for step in book.steps)


def test_schema_is_package_data_and_strict() -> None:
    s = schema()
    assert s["$schema"].endswith("2020-12/schema")
    assert s["$defs"]["step"]["additionalProperties"] is False
    assert set(s["$defs"]["step"]["required"]) == {"id", "description", "run", "verify"}


@pytest.mark.parametrize(
    ("body", "step", "field", "message"),
    [
        ("  - id: build\n    description: d\n    run: make\n", "step 'build' (#2)", "verify", "required property"),
        (
            "  - id: build\n    description: d\n    run: make\n    verify: {exit_code: 0}\n    timeout: -5\n",
            "step 'build' (#2)",
            "timeout",
            "less than or equal to the minimum",
        ),
        (
            "  - id: build\n    description: d\n    run: make\n    verify: {exit_code: 0}\n    retry: 2\n",
            "step 'build' (#2)",
            "retry",
            "Additional properties",
        ),
        (
            "  - id: build\n    description: d\n    run: make\n    verify: {expect: '(unclosed'}\n",
            "step 'build' (#2)",
            "verify.expect",
            "is not a 'regex'",
        ),
        (
            "  - id: Build Step\n    description: d\n    run: make\n    verify: {exit_code: 0}\n",
            "step 'Build Step' (#2)",
            "id",
            "does not match",
        ),
        (
            "  - id: build\n    description: d\n    run: make {{ target }}\n    verify: {exit_code: 0}\n",
            "step 'build' (#2)",
            "run",
            "unknown parameter {{ target }}",
        ),
        (
            "  - id: first\n    description: d\n    run: make\n    verify: {exit_code: 0}\n",
            "step 'first' (#2)",
            "id",
            "duplicate step id (first used by step #1)",
        ),
        (
            "  - id: hang\n    description: d\n    run: sleep 30\n    verify: {exit_code: 0}\n    timeout: .nan\n",
            "step 'hang' (#2)",
            "timeout",
            "nan is not a finite number",  # before: valid, and a step that never timed out
        ),
        (
            "  - id: poll\n    description: d\n    run: 'true'\n    verify: {run: 'false', attempts: 3, interval: .nan}\n",
            "step 'poll' (#2)",
            "verify.interval",
            "nan is not a finite number",  # before: valid, then a ValueError traceback with no rollback
        ),
        (
            "  - id: blank\n    description: '   '\n    run: 'true'\n    verify: {exit_code: 0}\n",
            "step 'blank' (#2)",
            "description",
            "must not be blank",  # before: valid, then `runbook show` crashed
        ),
    ],
    ids=["missing-verify", "bad-timeout", "unknown-field", "bad-regex", "bad-id", "unknown-param", "duplicate-id",
         "nan-timeout", "nan-interval", "blank-description"],
)
def test_malformed_step_names_file_step_and_field(
    tmp_path: Path, body: str, step: str, field: str, message: str
) -> None:
    path = write_runbook(tmp_path, "broken", "title: T\npurpose: P\nsteps:\n" + GOOD_STEP.lstrip("\n") + body)
    with pytest.raises(RunbookValidationError) as info:
        load_file(path)
    problem = info.value.problems[0]
    assert (problem.file, f"step {problem.step}", problem.field) == (str(path), step, field)
    assert message in problem.message
    assert f"{path}: {step}: field {field!r}: " in str(info.value)


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write_runbook(tmp_path, "yaml", "title: T\npurpose: P\nsteps:\n  - id: a\n   run: [unclosed\n")
    with pytest.raises(RunbookValidationError, match=r"yaml.yml: field 'line \d+': not valid YAML"):
        load_file(path)


def test_bad_parameter_default_is_rejected(tmp_path: Path) -> None:
    text = "title: T\npurpose: P\nparams:\n  n:\n    description: d\n    type: integer\n    default: many\n"
    path = write_runbook(tmp_path, "param", text + "steps:\n" + GOOD_STEP.lstrip("\n"))
    with pytest.raises(RunbookValidationError, match=r"field 'params.n.default': parameter 'n': 'many' is not"):
        load_file(path)


def test_an_enum_item_of_another_type_is_rejected(tmp_path: Path) -> None:
    # Before: valid, and then `--param port=8400` failed with "'8400' is not one of: 8400, 8401".
    text = 'title: T\npurpose: P\nparams:\n  port: {description: d, type: integer, enum: ["8400", 8401]}\n'
    path = write_runbook(tmp_path, "enum", text + "steps:\n" + GOOD_STEP.lstrip("\n"))
    with pytest.raises(RunbookValidationError, match=r"field 'params.port.enum': '8400' is not of type integer"):
        load_file(path)


def test_validate_command_reports_every_file(tmp_path: Path) -> None:
    write_runbook(tmp_path, "good", "title: T\npurpose: P\nsteps:\n" + GOOD_STEP.lstrip("\n"))
    write_runbook(tmp_path, "bad", "title: T\npurpose: P\nsteps:\n  - id: x\n    description: d\n    run: a\n")
    result = cli(["validate"], cwd=tmp_path)
    assert result.returncode == 1
    assert "invalid: runbooks/bad.yml: step 'x' (#1): field 'verify': 'verify' is a required property" in result.stderr
    assert "1 of 2 runbook(s) valid (1 steps)" in result.stdout


def test_validate_command_accepts_shipped_runbooks() -> None:
    result = cli(["validate"], cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert f"{len(SHIPPED)} of {len(SHIPPED)} runbook(s) valid" in result.stdout


def test_model_defaults_match_schema_defaults() -> None:
    """The pydantic model and the JSON Schema state the same defaults (the page shows the schema's)."""
    from v4runtime.runbooks.model import Param, Step, Verify

    defs = schema()["$defs"]
    pairs = [(Param, defs["param"]), (Step, defs["step"]), (Verify, defs["verify"])]
    checked = 0
    for model, node in pairs:
        for key, spec in node["properties"].items():
            if "default" in spec:
                assert model.model_fields[key].default == spec["default"], f"{model.__name__}.{key}"
                checked += 1
    assert checked == 7


def test_schema_table_lists_every_key() -> None:
    from v4runtime.runbooks.render import schema_table

    table = schema_table(schema())
    for key in ("title", "steps[].timeout", "steps[].verify.expect", "params.NAME.secret"):
        assert f"| `{key}` |" in table
    assert "| `steps[].timeout` | number (> 0, ≤ 86400) | `60` |" in table


def _alias_bomb() -> str:
    lines = ["a0: &a0 [" + ", ".join(["lol"] * 10) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    return "\n".join([*lines, "title: *a8", "purpose: P", "steps: []"]) + "\n"


STEP_WITH = "title: T\npurpose: P\nsteps:\n  - id: a\n    description: d\n    run: 'true'\n    verify: 'true'\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\xff\xfe binary", "not UTF-8 text (byte 0xff at offset 1)"),
        (STEP_WITH.encode() + b"    run: 'false'\n", "field 'line 8': not valid YAML: duplicate key 'run' (first on line 6)"),
        (STEP_WITH.replace("steps:", "params:\n  1: {description: x}\nsteps:").encode(), "field 'line 4': not valid YAML: mapping key 1 is not a string"),
        (("[" * 5000 + "]" * 5000).encode(), "not valid YAML: nested too deeply"),
        (_alias_bomb().encode(), "document expands to more than 50000 values"),
        (STEP_WITH.replace("verify: 'true'", "verify: {}").encode(), "step 'a' (#1): field 'verify': {} should be non-empty"),
        (STEP_WITH.replace("run: 'true'", 'run: "echo \\0"').encode(), "step 'a' (#1): field 'run': contains a NUL byte"),
        (
            STEP_WITH.replace("steps:", "params:\n  p: {description: x, default: \"a\\0b\"}\nsteps:").encode(),
            "field 'params.p.default': parameter 'p': 'a\\x00b' contains a NUL byte",
        ),
    ],
    ids=["binary", "duplicate-key", "non-string-key", "deep", "alias-bomb", "empty-verify", "nul-command", "nul-default"],
)
def test_malformed_file_is_a_validation_error_not_a_crash(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "runbooks" / "broken.yml"
    path.parent.mkdir()
    path.write_bytes(content)
    result = cli(["validate", "runbooks/broken.yml"], cwd=tmp_path, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"invalid: runbooks/broken.yml: {message}" in result.stderr
    with pytest.raises(RunbookValidationError):
        load_file(path)


def test_validate_reports_unreadable_paths_and_still_checks_the_rest(tmp_path: Path) -> None:
    good = write_runbook(tmp_path, "good", "title: T\npurpose: P\nsteps:\n" + GOOD_STEP.lstrip("\n"))
    (tmp_path / "runbooks" / "dir.yml").mkdir()
    os.mkfifo(tmp_path / "runbooks" / "pipe.yml")  # opening it for reading would block forever
    args = ["validate", "runbooks/dir.yml", "runbooks/pipe.yml", "runbooks/missing.yml", str(good)]
    result = cli(args, cwd=tmp_path, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "invalid: runbooks/dir.yml: cannot read: is a directory, not a runbook file" in result.stderr
    assert "invalid: runbooks/pipe.yml: cannot read: not a regular file" in result.stderr
    assert "invalid: runbooks/missing.yml: cannot read: No such file or directory" in result.stderr
    assert "1 of 4 runbook(s) valid (1 steps)" in result.stdout
    ran = cli(["run", "runbooks/pipe.yml"], cwd=tmp_path, timeout=60)
    assert ran.returncode == 2 and ran.stderr == "error: runbooks/pipe.yml: cannot read: not a regular file\n"
