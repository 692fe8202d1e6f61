"""Where bash evaluates a runbook parameter's text as an arithmetic expression, and so as code.

Quoting protects a value as a shell word, but not inside an arithmetic context: there bash
expands ``$( )`` within ``$(( ))`` even between single quotes, and an array subscript in the
value (``x[$(cmd)]``) runs its command wherever the value is evaluated as a number: ``[[ v -gt 0 ]]``,
``(( ))``, ``let``, ``declare -i``, ``${s:offset}`` or an array index. So:

* a placeholder in such a context may only receive a number (:func:`arithmetic_context` finds
  them; the schema asks for ``type: integer`` or ``type: number`` there, and substitution checks
  the value itself);
* no value may hold an array subscript with an expansion (:func:`subscript_expansion`), because a
  value stored in a variable can still reach an arithmetic context later in the command.

The detection is textual and errs towards finding a context: a false find costs a runbook
author a ``type: integer``, a miss would cost a command run by a parameter value.
"""

from __future__ import annotations

import re

#: The number forms a parameter can take in an arithmetic context (what ``integer``/``number`` give).
NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
#: ``name[ ... $ or ` ... ]``: a subscript whose expansion bash runs when the text is evaluated as a number.
_SUBSCRIPT_EXPANSION = re.compile(r"\[[^\]]*[$`][^\]]*\]")
_ARITHMETIC_TEST = re.compile(r"-(?:eq|ne|lt|le|gt|ge)")
#: Characters that end a shell word (a command substitution's ``)`` included).
_WORD_END = frozenset(" \t\n;&|<>()`")
#: Where a new simple command starts (a segment boundary for ``let`` and ``declare -i``).
_SEGMENT_BREAK = re.compile(r"[;&|\n(){}]|\b(?:then|do|else|elif|if|while|until|time)\b")
_LET = re.compile(r"\s*(?:!\s*)?let\s")
_INTEGER_DECLARATION = re.compile(r"\s*(?:!\s*)?(?:declare|typeset|local|readonly|export)\s+(?:-\w+\s+)*-[a-zA-Z]*i")
#: ``${name:`` not followed by one of the default-value operators: an offset, evaluated as a number.
_SUBSTRING_OFFSET = re.compile(r"\$\{[#!]?[A-Za-z_][A-Za-z0-9_]*(?:\[[^\]]*\])?:(?![-=+?])[^{}]*$")
_SUBSCRIPT_OPEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\[[^\]\n]*$")


def subscript_expansion(text: str) -> bool:
    """True when ``text`` holds ``[...]`` with ``$`` or a backtick inside (see the module docstring)."""
    return _SUBSCRIPT_EXPANSION.search(text) is not None


def _spans(command: str) -> list[tuple[int, int, str]]:
    """``$(( ))``, ``(( ))`` and ``$[ ]`` spans as (start, end, name), matched by bracket depth."""
    spans = []
    i = 0
    while i < len(command):
        if command.startswith("$[", i):
            opener, close, depth_open, name = "[", "]", 1, "$[ ]"
            j = i + 2
        elif command.startswith("((", i):
            opener, close, depth_open, name = "(", ")", 2, "$(( ))" if command[i - 1 : i] == "$" else "(( ))"
            j = i + 2
        else:
            i += 1
            continue
        depth = depth_open
        while j < len(command) and depth:
            depth += {opener: 1, close: -1}.get(command[j], 0)
            j += 1
        spans.append((i, j, name))
        i += 2  # spans may nest: `$(( $(( 1 )) + 2 ))`
    return spans


def _neighbours(command: str, start: int, end: int) -> tuple[str, str]:
    """The tokens just before and just after the shell word holding ``[start, end)``."""
    while start > 0 and command[start - 1] not in _WORD_END:
        start -= 1
    while end < len(command) and command[end] not in _WORD_END:
        end += 1
    before, after = command[:start].split(), command[end:].split()
    return (before[-1] if before else "", after[0] if after else "")


def arithmetic_context(command: str, start: int, end: int) -> str | None:
    """The arithmetic construct that the text at ``command[start:end]`` stands in, or None."""
    for span_start, span_end, name in _spans(command):
        if span_start <= start and end <= span_end:
            return name
    head = command[:start]
    if head.count("[[") > head.count("]]"):  # `[ a -gt b ]` and `test` only compare: they run nothing
        for token in _neighbours(command, start, end):
            if _ARITHMETIC_TEST.fullmatch(token.strip("\"'")):
                return f"a numeric test ({token.strip(chr(34) + chr(39))})"
    segment = _SEGMENT_BREAK.split(head)[-1]
    if _LET.match(segment):
        return "let"
    if _INTEGER_DECLARATION.match(segment):
        return "an integer declaration (declare -i)"
    if _SUBSTRING_OFFSET.search(head):
        return "a ${name:offset} expansion"
    if _SUBSCRIPT_OPEN.search(head):
        return "an array subscript"
    return None
