"""Find every code fence in a Markdown page, wherever it sits.

pytest-markdown-docs parses pages with CommonMark, which sees a fence indented inside an
admonition (``!!! note``) or a content tab (``=== "Tab"``) as an indented code block and skips
it. This scanner is line-based instead: any line that opens a fence (at any indentation) starts
one, and the matching closing line ends it. The body is dedented by the opening indentation.
"""

from __future__ import annotations

import contextlib
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

PYTHON_LANGS = frozenset({"python", "py", "python3"})
BASH_LANGS = frozenset({"bash", "sh", "shell"})
CONSOLE_LANGS = frozenset({"console"})
#: Languages the gate covers: each such fence must run or carry ``exempt="reason"``.
EXECUTABLE_LANGS = PYTHON_LANGS | BASH_LANGS | CONSOLE_LANGS
#: Languages of data and output, which nothing runs. Every other language is code: it must run or
#: carry an exemption (an allow-list, so a new shell dialect such as `bash-session` cannot slip by).
DATA_LANGS = frozenset({"text", "txt", "plaintext", "output", "json", "yaml", "yml", "toml", "ini", "csv",
                        "markdown", "md", "mermaid", "html", "xml", "diff", "jinja", "log"})

_OPEN = re.compile(r"^(?P<quote>(?:[ \t]*>)*)(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_QUOTE = re.compile(r"^[ \t]*> ?")


@dataclass
class Fence:
    """One fenced block of a page."""

    path: Path
    line: int  # 1-based line of the opening fence
    indent: int
    info: str
    lang: str
    flags: frozenset[str] = frozenset()
    attrs: dict[str, str] = field(default_factory=dict)
    body: str = ""
    attr_form: bool = False  # written as {.lang ...}
    problem: str | None = None  # set when the info string cannot be parsed

    @property
    def body_line(self) -> int:
        """1-based line of the first body line."""
        return self.line + 1

    @property
    def exempt(self) -> str | None:
        """The written exemption reason, or None."""
        return self.attrs.get("exempt")

    @property
    def executable(self) -> bool:
        return self.lang not in DATA_LANGS

    def where(self, root: Path | None = None) -> str:
        """``docs/page.md:LINE`` (relative to root when given)."""
        path = self.path
        if root is not None:
            with contextlib.suppress(ValueError):
                path = self.path.relative_to(root)
        return f"{path}:{self.line}"


def parse_info(info: str) -> tuple[str, frozenset[str], dict[str, str], bool, str | None]:
    """Split an info string into (lang, flags, attributes, attr_form, problem).

    Accepts the superfences attribute form ``{.bash exempt="reason" timeout="30"}`` and the plain
    form ``python title="x.py"``.
    """
    text = info.strip()
    attr_form = text.startswith("{")
    if attr_form:
        if not text.endswith("}"):
            return "", frozenset(), {}, True, f"unclosed attribute list: {info!r}"
        text = text[1:-1]
    try:
        tokens = shlex.split(text)
    except ValueError as exc:
        return "", frozenset(), {}, attr_form, f"cannot parse fence options {info!r}: {exc}"
    lang = ""
    flags: set[str] = set()
    attrs: dict[str, str] = {}
    for i, token in enumerate(tokens):
        if "=" in token:
            key, _, value = token.partition("=")
            attrs[key] = value
        elif attr_form and token.startswith(".") and not lang:
            lang = token[1:]
        elif not attr_form and i == 0:
            lang = token
        else:
            flags.add(token)
    return lang.lower(), frozenset(flags), attrs, attr_form, None


def _dedent(line: str, indent: int, quotes: int = 0) -> str:
    """Remove ``quotes`` blockquote markers, then up to ``indent`` leading spaces."""
    for _ in range(quotes):
        line = _QUOTE.sub("", line, count=1)
    removed = 0
    i = 0
    while i < len(line) and removed < indent and line[i] in " \t":
        removed += 4 if line[i] == "\t" else 1
        i += 1
    return line[i:]


def find_fences(text: str, path: Path) -> list[Fence]:
    """Every fence in ``text`` in page order, including indented ones."""
    lines = text.splitlines()
    fences: list[Fence] = []
    i = 0
    while i < len(lines):
        match = _OPEN.match(lines[i])
        if not match or (match["fence"][0] == "`" and "`" in match["info"]):
            i += 1
            continue
        quotes = match["quote"].count(">")
        indent = len(match["indent"].expandtabs(4))
        if quotes:  # "> ```bash": the space after ">" belongs to the quote marker
            indent = max(indent - 1, 0)
        marker = match["fence"]
        close = re.compile(rf"^(?:[ \t]*>)*[ \t]*{re.escape(marker[0])}{{{len(marker)},}}[ \t]*$")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            body.append(_dedent(lines[j], indent, quotes))
            j += 1
        lang, flags, attrs, attr_form, problem = parse_info(match["info"])
        if j >= len(lines):
            problem = problem or "fence is never closed"
        fences.append(
            Fence(
                path=path,
                line=i + 1,
                indent=indent,
                info=match["info"].strip(),
                lang=lang,
                flags=flags,
                attrs=attrs,
                body="\n".join(body) + ("\n" if body else ""),
                attr_form=attr_form,
                problem=problem,
            )
        )
        i = j + 1
    return fences


def markdown_docs_lines(text: str) -> set[int]:
    """Opening-fence lines of the Python fences pytest-markdown-docs itself will run.

    Uses the plugin's own extraction (superfences syntax, CommonMark parser), so the harness and
    the plugin can never disagree about which fences it covers.
    """
    from markdown_it import MarkdownIt
    from pytest_markdown_docs.plugin import FenceSyntax, extract_fence_tests

    tests = extract_fence_tests(
        MarkdownIt(config="commonmark"),
        text,
        start_line_offset=0,
        source_path=Path("page.md"),
        markdown_type="md",
        fence_syntax=FenceSyntax.superfences,
    )
    return {test.start_line for test in tests}
