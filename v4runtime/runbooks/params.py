"""Runbook parameters: parse ``--param k=v``, check types and constraints, substitute shell-safely.

Commands reference parameters as ``{{ name }}``. A plain parameter is substituted according
to where it stands: outside quotes as one ``shlex.quote``-d shell word, inside double quotes
backslash-escaped; inside single quotes, backticks or a here-document it is refused (validation error).
The context is found by a small lexer that follows bash (a ``case`` pattern's ``)`` inside ``$( )``
does not close it); a command it cannot read with certainty has its placeholders refused too.
So a value can never inject shell syntax (where bash evaluates text as a number, see
:mod:`v4runtime.runbooks.arithmetic`). A secret parameter is never written into a command
at all: it is passed in the environment and the placeholder becomes ``"$RB_NAME"``, so the
value stays out of ``ps``, the printed command, the command digest and the audit log.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from v4runtime.errors import RunbookError
from v4runtime.runbooks.arithmetic import NUMBER, arithmetic_context, subscript_expansion
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
    if isinstance(value, float) and not math.isfinite(value):  # NaN passes every range check
        raise RunbookError(f"parameter {param.name!r}: {shown} is not a finite number")
    if subscript_expansion(_text(value)):
        raise RunbookError(
            f"parameter {param.name!r}: {shown} holds an array subscript with an expansion ([...$...]), "
            "which bash would run as a command wherever the value is evaluated as a number"
        )
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
#: Control operators (longest first); the ``;;`` family ends a branch of a ``case``.
_OPERATORS = (";;&", ";;", ";&", "&&", "||", "|&", ";", "&", "|", "\n")
#: Reserved words the lexer needs: ``case``/``in``/``esac``, and those after which a command starts.
_RESERVED = re.compile(r"(?:case|esac|in|if|then|else|elif|do|while|until|time|!|\{)(?=[\s;&|()<>]|\Z)")
#: Reserved words after which the next word is again a command (so may be ``case``).
_COMMAND_PREFIXES = {"if", "then", "else", "elif", "do", "while", "until", "time", "!", "{"}


@dataclass
class _Frame:
    """One level of shell nesting: the top-level command, a ``( )``/``$( )``, quotes or backticks."""

    kind: str  # plain | double | single | backtick
    opener: str = ""  # "(" or "$(" for a nested plain frame
    start: bool = True  # at the start of a command, where a reserved word is recognised
    cases: list[str] = field(default_factory=list)  # each open `case`: subject | patterns | pattern | body


class _Lexer:
    """Finds each placeholder's quoting context, following bash's grammar closely enough to prove it.

    Quotes, backslashes, ``$( )``/``( )`` and backticks (which reset quoting inside double
    quotes), ``#`` comments (a quote in a comment opens nothing; a newline ends it), ``<<``
    here-documents (everything after one counts as heredoc) and ``case`` statements: as in bash,
    the ``)`` that ends a case pattern does not close an enclosing ``$(``. Where the lexer cannot
    be sure of its reading (``doubt``), the command's placeholders are refused rather than guessed.
    """

    def __init__(self, command: str) -> None:
        self.text = command
        self.i = 0
        self.stack = [_Frame("plain")]
        self.heredoc = False
        self.found: list[tuple[re.Match[str], str]] = []
        self.doubt: str | None = None

    def run(self) -> _Lexer:
        """Lex the whole command; returns self."""
        while self.i < len(self.text):
            self._step()
        if not self.heredoc and (len(self.stack) > 1 or self.stack[0].cases):
            self._doubt("a quote, a parenthesis or a case statement is not closed")
        return self

    def _doubt(self, why: str) -> None:
        self.doubt = self.doubt or why

    def _step(self) -> None:
        text, top = self.text, self.stack[-1]
        match = PLACEHOLDER.match(text, self.i)
        if match:
            self.found.append((match, "heredoc" if self.heredoc else top.kind))
            self._word(top)
            self.i = match.end()
        elif top.kind == "single":
            if text[self.i] == "'":
                self.stack.pop()
            self.i += 1
        elif top.kind == "double":
            self._double(text[self.i])
        else:
            self._command(top, text[self.i])

    def _double(self, c: str) -> None:
        """Inside double quotes only backslash, ``$(``, backticks and the closing quote matter."""
        if c == "\\":
            self.i += 2
            return
        if self.text.startswith("$(", self.i):
            self._push(_Frame("plain", "$("), 2)
            return
        if c == "`":
            self._push(_Frame("backtick"), 1)
            return
        if c == '"':
            self.stack.pop()
        self.i += 1

    def _command(self, top: _Frame, c: str) -> None:
        """Unquoted shell text (top level, ``$( )``, ``( )`` or backticks)."""
        text, i = self.text, self.i
        at_word = i == 0 or text[i - 1] in _WORD_BREAK
        if c == "#" and top.kind == "plain" and at_word and not self.heredoc:
            self._comment()
        elif c == "\\":
            self._word(top)
            self.i += 2
        elif text.startswith("$(", i):
            self._word(top)
            self._push(_Frame("plain", "$("), 2)
        elif c == "(" and top.cases and top.cases[-1] == "patterns":
            top.cases[-1] = "pattern"  # the optional "(" before a case pattern opens nothing
            self.i += 1
        elif c == "(":
            self._push(_Frame("plain", "("), 1)
        elif c == "`" and top.kind == "backtick":
            self.stack.pop()
            self.i += 1
        elif c in "`'\"":
            self._word(top)
            self._push(_Frame({"`": "backtick", "'": "single", '"': "double"}[c]), 1)
        elif c == ")":
            self._close(top)
        elif text.startswith("<<<", i):
            self.i += 3
        elif text.startswith("<<", i):
            self.heredoc = True
            self.i += 2
        elif op := next((o for o in _OPERATORS if text.startswith(o, i)), None):
            self._operator(top, op)
        elif c in " \t":
            self.i += 1
        else:
            self._bare(top, at_word)

    def _comment(self) -> None:
        end = self.text.find("\n", self.i)
        end = len(self.text) if end < 0 else end
        self.found.extend((m, "comment") for m in PLACEHOLDER.finditer(self.text, self.i, end))
        self.i = end

    def _push(self, frame: _Frame, width: int) -> None:
        self.stack.append(frame)
        self.i += width

    def _word(self, top: _Frame) -> None:
        """A word (or part of one) is read: no reserved word until the next command; a case pattern has begun."""
        top.start = False
        if top.cases and top.cases[-1] == "patterns":
            top.cases[-1] = "pattern"

    def _close(self, top: _Frame) -> None:
        """``)``: ends a case pattern, else closes the innermost ``( )``/``$( )``."""
        self.i += 1
        if top.cases and top.cases[-1] in ("patterns", "pattern"):
            top.cases[-1], top.start = "body", True
        elif top.opener:
            if top.cases:
                self._doubt("a case statement is not closed before its ')'")
            self.stack.pop()
            self.stack[-1].start = top.opener == "("  # after a subshell: `f() { ...`

    def _operator(self, top: _Frame, op: str) -> None:
        self.i += len(op)
        state = top.cases[-1] if top.cases else None
        if op in (";;", ";&", ";;&") and state == "body":
            top.cases[-1] = "patterns"
        elif state not in ("patterns", "pattern"):  # there `|` separates patterns
            top.start = True

    def _bare(self, top: _Frame, at_word: bool) -> None:
        """An unquoted word character; at a word's start, a reserved word may change the state."""
        match = _RESERVED.match(self.text, self.i) if at_word else None
        word = match.group(0) if match else ""
        if word and self._reserved(top, word):
            self.i += len(word)
            return
        state = top.cases[-1] if top.cases else None
        if word in ("case", "esac") and state not in ("subject", "patterns", "pattern") and len(self.stack) > 1:
            self._doubt(f"unsure whether {word!r} at offset {self.i} starts or ends a case statement")
        self._word(top)
        self.i += 1

    @staticmethod
    def _reserved(top: _Frame, word: str) -> bool:
        """Apply the reserved word ``word``; False when, where it stands, it is an ordinary word."""
        state = top.cases[-1] if top.cases else None
        if state == "subject" and word == "in":
            top.cases[-1] = "patterns"
        elif word == "esac" and (state == "patterns" or (state == "body" and top.start)):
            top.cases.pop()
            top.start = False
        elif top.start and word == "case":
            top.cases.append("subject")
            top.start = False
        else:
            return top.start and word in _COMMAND_PREFIXES
        return True


def _placeholder_contexts(command: str) -> list[tuple[re.Match[str], str]]:
    """Each placeholder with its shell context.

    The context is ``plain``, ``double``, ``single``, ``backtick``, ``heredoc`` or ``comment``;
    ``unsure`` for every placeholder when the lexer cannot prove its reading of the command.
    """
    lexer = _Lexer(command).run()
    return [(match, "unsure" if lexer.doubt else context) for match, context in lexer.found]


def placeholder_problems(command: str) -> list[str]:
    """Placeholders that cannot be substituted safely (single quotes, backticks, a here-document, unprovable)."""
    lexer = _Lexer(command).run()
    problems = []
    for match, context in lexer.found:
        name, env = match.group(0), f"$RB_{match.group(1).upper()}"
        if lexer.doubt:
            problems.append(f'cannot prove how placeholder {name} is quoted ({lexer.doubt}); use "{env}" instead')
        elif context == "single":
            problems.append(f"placeholder {name} is inside single quotes; move it outside them")
        elif context == "backtick":
            problems.append(f"placeholder {name} is inside backticks; use $( ) instead")
        elif context == "heredoc":
            problems.append(f"placeholder {name} is in a here-document; use {env}")
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
        _check_arithmetic(command, match, params, builtins)
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


def _check_arithmetic(command: str, match: re.Match[str], params: ResolvedParams, builtins: Mapping[str, str]) -> None:
    """Refuse anything but a number for a placeholder where bash evaluates text as arithmetic."""
    construct = arithmetic_context(command, match.start(), match.end())
    if construct is None:
        return
    name = match.group(1)
    text = _text(params.values[name]) if name in params.values else builtins.get(name, "")
    if name in params.secrets or name in builtins or not NUMBER.fullmatch(text):
        shown = MASK if name in params.secrets else repr(text)
        raise RunbookError(
            f"parameter {name!r}: {shown} stands in {construct}, where bash evaluates text as code: "
            "only a number can go there (declare the parameter `type: integer` or `type: number`)"
        )


def arithmetic_problems(command: str, numeric: Iterable[str]) -> list[str]:
    """Placeholders in an arithmetic context whose parameter is not a plain ``integer``/``number``."""
    allowed = set(numeric)
    problems = []
    for match in PLACEHOLDER.finditer(command):
        construct = arithmetic_context(command, match.start(), match.end())
        if construct is not None and match.group(1) not in allowed:
            problems.append(
                f"placeholder {match.group(0)} stands in {construct}, where bash evaluates text as code: "
                "declare its parameter `type: integer` or `type: number` (and not secret)"
            )
    return problems


def mask(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret value in ``text`` with ``***``."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
