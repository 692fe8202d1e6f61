"""Validation of runbook documents: the JSON Schema, then checks a schema cannot express.

Every problem names the file, the step (by id, or by position when it has no id) and the field,
e.g. ``runbooks/site.yml: step 'build' (#2): field 'timeout': -1 is less than or equal to the
minimum of 0``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from v4runtime.errors import RunbookError
from v4runtime.runbooks.model import Param, Runbook, Step, Verify
from v4runtime.runbooks.params import (
    BUILTINS,
    arithmetic_problems,
    coerce,
    placeholder_problems,
    placeholders,
)


@dataclass(frozen=True)
class Problem:
    """One reason a runbook is invalid."""

    file: str
    step: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        parts = [self.file]
        if self.step is not None:
            parts.append(f"step {self.step}")
        if self.field is not None:
            parts.append(f"field {self.field!r}")
        return ": ".join([*parts, self.message])


class RunbookValidationError(RunbookError):
    """A runbook does not conform to the schema; ``problems`` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid runbook ({len(problems)} problem(s)):\n{lines}", reason="invalid_runbook")


@cache
def schema() -> dict[str, Any]:
    """The runbook JSON Schema (shipped as package data ``v4runtime/runbooks/schema.json``)."""
    text = resources.files("v4runtime.runbooks").joinpath("schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def _step_label(data: Any, index: int) -> str:
    steps = data.get("steps") if isinstance(data, dict) else None
    step = steps[index] if isinstance(steps, list) and index < len(steps) else None
    if isinstance(step, dict) and isinstance(step.get("id"), str):
        return f"{step['id']!r} (#{index + 1})"
    return f"#{index + 1}"


def _locate(data: Any, path: list[Any]) -> tuple[str | None, str | None]:
    """Turn a JSON path into (step label, dotted field name)."""
    step = None
    rest = list(path)
    if len(rest) >= 2 and rest[0] == "steps" and isinstance(rest[1], int):
        step = _step_label(data, rest[1])
        rest = rest[2:]
    field = ".".join(str(p) for p in rest) or None
    return step, field


def _schema_problems(data: Any, file: str) -> list[Problem]:
    from jsonschema import Draft202012Validator, FormatChecker

    validator = Draft202012Validator(schema(), format_checker=FormatChecker())
    problems = []
    for error in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
        # oneOf failures hide the useful detail one level down; report the deepest sub-error,
        # and on a tie one that is not a mere type mismatch (``verify: {}`` is an empty mapping,
        # not "not a string").
        detail = error
        if error.validator == "oneOf" and error.context:
            detail = max(error.context, key=lambda e: (len(e.absolute_path), e.validator != "type"))
        step, field = _locate(data, list(detail.absolute_path))
        if detail.validator == "required":
            missing = re.search(r"'([^']+)' is a required property", detail.message)
            if missing:
                field = f"{field}.{missing.group(1)}" if field else missing.group(1)
        elif detail.validator == "additionalProperties":
            extra = re.findall(r"'([^']+)'", detail.message.split("(")[-1])
            if extra:
                field = f"{field}.{extra[0]}" if field else extra[0]
        message = "must not be blank" if detail.validator == "pattern" and detail.validator_value == r"\S" else detail.message
        problems.append(Problem(file, step, field, message))
    return problems


def _non_finite_problems(data: Any, file: str) -> list[Problem]:
    """YAML's ``.nan``/``.inf``: every range check passes NaN (a timeout that never fires)."""
    problems = []

    def walk(value: Any, path: list[Any]) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(Problem(file, *_locate(data, path), f"{value!r} is not a finite number"))
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, item in items:
            walk(item, [*path, key])

    walk(data, [])
    return problems


def _semantic_problems(data: dict[str, Any], file: str) -> list[Problem]:
    problems: list[Problem] = []
    params = data.get("params") or {}
    for name, spec in params.items():
        if name in BUILTINS:
            problems.append(Problem(file, None, f"params.{name}", f"{name!r} is reserved by the runner"))
        for value in spec.get("enum") or []:
            if not _is_of_type(value, spec.get("type", "string")):
                problems.append(Problem(file, None, f"params.{name}.enum",
                                        f"{value!r} is not of type {spec.get('type', 'string')}: no --param value could match it"))
        if "default" in spec:
            try:
                coerce(Param(name=name, **spec), spec["default"])
            except RunbookError as exc:
                problems.append(Problem(file, None, f"params.{name}.default", str(exc)))
    numeric = {n for n, spec in params.items() if spec.get("type") in ("integer", "number") and not spec.get("secret")}
    seen: dict[str, int] = {}
    for index, step in enumerate(data["steps"]):
        label = _step_label(data, index)
        if step["id"] in seen:
            problems.append(Problem(file, label, "id", f"duplicate step id (first used by step #{seen[step['id']] + 1})"))
        seen.setdefault(step["id"], index)
        verify = step["verify"] if isinstance(step["verify"], dict) else {"run": step["verify"]}
        commands = {"run": step["run"], "rollback": step.get("rollback"), "verify.run": verify.get("run")}
        for field, command in commands.items():
            for name in placeholders(command or ""):
                if name not in params and name not in BUILTINS:
                    problems.append(Problem(file, label, field, f"unknown parameter {{{{ {name} }}}}"))
            for message in [*placeholder_problems(command or ""), *arithmetic_problems(command or "", numeric)]:
                problems.append(Problem(file, label, field, message))
            if "\0" in (command or ""):
                problems.append(Problem(file, label, field, "contains a NUL byte, which a command cannot hold"))
    return problems


def _is_of_type(value: Any, kind: str) -> bool:
    """Whether an enum item is already a value of the parameter's type (what ``coerce`` returns)."""
    if isinstance(value, bool) or kind == "boolean":
        return isinstance(value, bool) and kind == "boolean"
    return {"string": isinstance(value, str), "integer": isinstance(value, int),
            "number": isinstance(value, int | float)}.get(kind, False)


def validate(data: Any, file: str, name: str) -> Runbook:
    """Validate a parsed YAML document and build the typed :class:`Runbook`.

    Args:
        data: the document as loaded by ``yaml.safe_load``.
        file: file name used in error messages.
        name: the runbook's name (its file stem).

    Raises:
        RunbookValidationError: listing every problem with file, step and field.
    """
    problems = _non_finite_problems(data, file) or _schema_problems(data, file)
    if not problems:
        problems = _semantic_problems(data, file)
    if problems:
        raise RunbookValidationError(problems)
    steps = []
    for raw in data["steps"]:
        verify = raw["verify"] if isinstance(raw["verify"], dict) else {"run": raw["verify"]}
        steps.append(Step(**{**raw, "verify": Verify(**verify)}))
    params = [Param(name=k, **v) for k, v in (data.get("params") or {}).items()]
    return Runbook(
        name=name,
        path=file,
        title=data["title"],
        purpose=data["purpose"],
        ci_exempt=data.get("ci_exempt"),
        params=params,
        steps=steps,
    )
