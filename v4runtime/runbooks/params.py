"""Runbook parameters: parse ``--param k=v``, check types and constraints, substitute shell-safely.

Commands reference parameters as ``{{ name }}``. A plain parameter is substituted according
to where it stands: outside quotes as one ``shlex.quote``-d shell word, inside double quotes
backslash-escaped; inside single quotes, backticks or a here-document it is refused (validation error).
So a value can never inject shell syntax. A secret parameter is never written into a command
at all: it is passed in the environment and the placeholder becomes ``"$RB_NAME"``, so the
value stays out of ``ps``, the printed command, the command digest and the audit log.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from v4runtime.errors import RunbookError
from v4runtime.runbooks.model import Param, ParamValue, Runbook

#: ``{{ name }}`` placeholders in commands.
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
#: Names the runner provides itself; runbooks may not declare parameters with these names.
BUILTINS = {"run_dir": "per-run scratch directory, removed when the run ends"}
MASK = "***"


@dataclass(frozen=True)
class ResolvedParams:
    """Effective parameter values of one run."""

    values: dict[str, ParamValue]
    secrets: frozenset[str] = field(default_factory=frozenset)

    def env(self) -> dict[str, str]:
        """Environment variables ``RB_<NAME>`` for every parameter (secrets travel only this way)."""
        return {env_name(k): _text(v) for k, v in self.values.items()}

    def masked(self) -> dict[str, ParamValue]:
        """Values for display and the audit log, secrets replaced by ``***``."""
        return {k: (MASK if k in self.secrets else v) for k, v in self.values.items()}

    def secret_values(self) -> list[str]:
        """The secret values themselves (to mask them in captured output); empty ones skipped."""
        return [_text(self.values[k]) for k in self.secrets if _text(self.values[k])]


def env_name(name: str) -> str:
    """Environment variable that carries parameter ``name``."""
    return "RB_" + name.upper()


def _text(value: ParamValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def placeholders(command: str) -> list[str]:
    """Names referenced by ``{{ name }}`` in ``command``, in order."""
    return PLACEHOLDER.findall(command)


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """Parse ``--param k=v`` strings; raises RunbookError on a malformed item."""
    result: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RunbookError(f"--param {item!r}: expected NAME=VALUE")
        result[key.strip()] = value
    return result


def coerce(param: Param, raw: ParamValue) -> ParamValue:
    """Convert ``raw`` to the parameter's type and check pattern, enum and range.

    Raises:
        RunbookError: naming the parameter and what is wrong with the value.
    """
    shown = MASK if param.secret else repr(raw)
    try:
        value = _convert(param.type, raw)
    except ValueError:
        raise RunbookError(f"parameter {param.name!r}: {shown} is not a valid {param.type}") from None
    if "\0" in _text(value):  # cannot travel in a command line or the environment
        raise RunbookError(f"parameter {param.name!r}: {shown} contains a NUL byte")
    if param.enum is not None and value not in param.enum:
        allowed = ", ".join(_text(v) for v in param.enum)
        raise RunbookError(f"parameter {param.name!r}: {shown} is not one of: {allowed}")
    if param.pattern is not None and not re.fullmatch(param.pattern, _text(value)):
        raise RunbookError(f"parameter {param.name!r}: {shown} does not match pattern {param.pattern!r}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if param.minimum is not None and value < param.minimum:
            raise RunbookError(f"parameter {param.name!r}: {shown} is below the minimum {param.minimum:g}")
        if param.maximum is not None and value > param.maximum:
            raise RunbookError(f"parameter {param.name!r}: {shown} is above the maximum {param.maximum:g}")
    return value


def _convert(kind: str, raw: ParamValue) -> ParamValue:
    if kind == "string":
        return _text(raw)
    if kind == "boolean":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in {"true", "yes", "1", "on"}:
            return True
        if text in {"false", "no", "0", "off"}:
            return False
        raise ValueError(raw)
    if isinstance(raw, bool):
        raise ValueError(raw)
    if kind == "integer":
        if isinstance(raw, float) and not raw.is_integer():
            raise ValueError(raw)
        return int(raw) if not isinstance(raw, str) else int(raw.strip(), 10)
    return float(raw)


def resolve(runbook: Runbook, given: Mapping[str, ParamValue]) -> ResolvedParams:
    """Merge defaults with ``given`` values and validate every parameter.

    Raises:
        RunbookError: for an unknown or missing parameter, or an invalid value.
    """
    declared = {p.name: p for p in runbook.params}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        known = ", ".join(sorted(declared)) or "none"
        raise RunbookError(f"runbook {runbook.name!r} has no parameter {unknown[0]!r} (parameters: {known})")
    values: dict[str, ParamValue] = {}
    for name, param in declared.items():
        if name in given:
            values[name] = coerce(param, given[name])
        elif param.default is not None:
            values[name] = coerce(param, param.default)
        else:
            raise RunbookError(f"runbook {runbook.name!r}: parameter {name!r} is required (--param {name}=...)")
    return ResolvedParams(values, frozenset(p.name for p in runbook.params if p.secret))


#: Characters after which a ``#`` starts a shell comment (it must begin a word).
_WORD_BREAK = " \t\n;&|()<>"


def _placeholder_contexts(command: str) -> list[tuple[re.Match[str], str]]:
    """Each placeholder with its shell context: ``plain``, ``double``, ``single``, ``heredoc`` or ``comment``.

    A small lexer: quotes, backslashes, ``$( )``/``( )`` and backticks (which reset quoting
    inside double quotes), ``#`` comments (a quote in a comment opens nothing; a newline ends
    it), and ``<<`` here-documents (everything after one counts as heredoc).
    """
    found: list[tuple[re.Match[str], str]] = []
    stack = ["plain"]
    heredoc = False
    i = 0
    while i < len(command):
        match = PLACEHOLDER.match(command, i)
        if match:
            found.append((match, "heredoc" if heredoc else stack[-1]))
            i = match.end()
            continue
        c, top = command[i], stack[-1]
        if c == "#" and top == "plain" and not heredoc and (i == 0 or command[i - 1] in _WORD_BREAK):
            end = command.find("\n", i)
            end = len(command) if end < 0 else end
            found.extend((m, "comment") for m in PLACEHOLDER.finditer(command, i, end))
            i = end
            continue
        if top == "single":
            if c == "'":
                stack.pop()
        elif c == "\\":
            i += 2
            continue
        elif command.startswith("$(", i) or (c == "(" and top != "double"):
            stack.append("plain")
            i += 2 if c == "$" else 1
            continue
        elif c == "`":
            if top == "backtick":
                stack.pop()
            else:
                stack.append("backtick")
        elif top == "double":
            if c == '"':
                stack.pop()
        elif c == "'":
            stack.append("single")
        elif c == '"':
            stack.append("double")
        elif c == ")" and len(stack) > 1:
            stack.pop()
        elif command.startswith("<<<", i):
            i += 3
            continue
        elif command.startswith("<<", i):
            heredoc = True
        i += 1
    return found


def placeholder_problems(command: str) -> list[str]:
    """Placeholders that cannot be substituted safely (single quotes, backticks, a here-document)."""
    problems = []
    for match, context in _placeholder_contexts(command):
        if context == "single":
            problems.append(f"placeholder {match.group(0)} is inside single quotes; move it outside them")
        elif context == "backtick":
            problems.append(f"placeholder {match.group(0)} is inside backticks; use $( ) instead")
        elif context == "heredoc":
            problems.append(f"placeholder {match.group(0)} is in a here-document; use $RB_{match.group(1).upper()}")
    return problems


def _double_quoted(text: str) -> str:
    """``text`` escaped for use inside double quotes (only $, `, \\ and " are special there)."""
    return re.sub(r'([$`"\\\\])', r"\\\1", text)


def substitute(command: str, params: ResolvedParams, builtins: Mapping[str, str]) -> str:
    """Replace ``{{ name }}`` placeholders shell-safely, according to their quoting context.

    Outside quotes a value becomes one ``shlex.quote``-d word; inside double quotes it is
    backslash-escaped; a secret becomes a reference to its environment variable instead.

    Raises:
        RunbookError: unknown placeholder, or one inside single quotes or a here-document.
    """
    if problems := placeholder_problems(command):
        raise RunbookError(problems[0])
    parts: list[str] = []
    last = 0
    for match, context in _placeholder_contexts(command):
        name = match.group(1)
        if name in params.secrets:
            value = f"${{{env_name(name)}}}" if context == "double" else f'"${env_name(name)}"'
        elif name in params.values or name in builtins:
            text = _text(params.values[name]) if name in params.values else builtins[name]
            if context == "double":
                value = _double_quoted(text)
            elif context == "comment":  # a newline would end the comment: the rest would run
                value = shlex.quote(text).replace("\r", "\\r").replace("\n", "\\n")
            else:
                value = shlex.quote(text)
        else:
            raise RunbookError(f"unknown placeholder {{{{ {name} }}}} in command: {command!r}")
        parts.append(command[last : match.start()] + value)
        last = match.end()
    return "".join(parts) + command[last:]


def mask(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret value in ``text`` with ``***``."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
