"""Which fences run, which are exempt, and which slip through (the coverage gate).

One function, :func:`classify`, decides for every fence who runs it. The collector uses the
same function to pick its blocks, so the gate and the collectors cannot drift apart.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from docharness.fences import (
    BASH_LANGS,
    CONSOLE_LANGS,
    EXECUTABLE_LANGS,
    PYTHON_LANGS,
    Fence,
    find_fences,
    markdown_docs_lines,
)

MARKDOWN_DOCS = "pytest-markdown-docs"
DOCHARNESS = "docharness"
RUNBOOKS = "runbook e2e tests"


@dataclass(frozen=True)
class Verdict:
    """What happens to one fence: run by ``runner``, exempt with ``reason``, or an ``error``."""

    runner: str | None = None
    exempt: str | None = None
    error: str | None = None


def classify(fence: Fence, md_lines: set[int]) -> Verdict:
    """Decide who runs a fence. ``md_lines``: fences pytest-markdown-docs collects on its page."""
    if fence.problem:
        return Verdict(error=fence.problem)
    if not fence.lang:
        return Verdict(error="fence has no language: name it (`text` for output, `bash`, `python`, ...)")
    if not fence.executable:
        return Verdict()
    reason = fence.exempt
    if reason is not None:
        if not reason.strip():
            return Verdict(error='empty exemption: write the reason, exempt="..."')
        if not fence.attr_form:
            return Verdict(error='write exemptions in the attribute form: {.LANG exempt="..."}')
        if fence.line in md_lines:
            return Verdict(error="exempt Python fence lacks `notest`: pytest-markdown-docs would still run it")
        return Verdict(exempt=reason.strip())
    if fence.lang not in EXECUTABLE_LANGS:
        return Verdict(error=f"no collector runs `{fence.lang}` fences: use bash/console/python, a data language "
                             "(text, json, yaml, ...) or exempt it")
    if fence.lang in PYTHON_LANGS:
        if fence.line in md_lines:
            return Verdict(runner=MARKDOWN_DOCS)
        if "notest" in fence.flags:
            return Verdict(error='`notest` without a written reason: add exempt="..."')
        if "continuation" in fence.flags:
            return Verdict(error="`continuation` is only honoured by pytest-markdown-docs (top-level fences)")
        return Verdict(runner=DOCHARNESS)  # indented: pytest-markdown-docs cannot see it
    if fence.lang in BASH_LANGS | CONSOLE_LANGS:
        return Verdict(runner=DOCHARNESS)
    raise AssertionError(f"unhandled executable language {fence.lang}")  # pragma: no cover


def page_fences(path: Path) -> list[tuple[Fence, Verdict]]:
    """Every fence of one page with its verdict."""
    text = path.read_text(encoding="utf-8")
    md_lines = markdown_docs_lines(text)
    return [(fence, classify(fence, md_lines)) for fence in find_fences(text, path)]


def doc_pages(docs_dir: Path) -> list[Path]:
    """Markdown pages of the site (``generated/`` holds includes, not pages: not walked)."""
    return sorted(p for p in docs_dir.rglob("*.md") if "generated" not in p.relative_to(docs_dir).parts[:1])


@dataclass(frozen=True)
class Entry:
    """One gated unit: a fence of a page, or a step of a runbook."""

    where: str
    kind: str
    runner: str | None = None
    exempt: str | None = None
    error: str | None = None


@dataclass
class Coverage:
    """The gate's result."""

    entries: list[Entry] = field(default_factory=list)

    @property
    def executed(self) -> list[Entry]:
        return [e for e in self.entries if e.runner]

    @property
    def exempted(self) -> list[Entry]:
        return [e for e in self.entries if e.exempt]

    @property
    def errors(self) -> list[Entry]:
        return [e for e in self.entries if e.error]

    def summary_lines(self) -> list[str]:
        """``fences: N executed, M exempt`` followed by one line per exemption."""
        lines = [f"fences: {len(self.executed)} executed, {len(self.exempted)} exempt"]
        lines += [f"  exempt {e.where} ({e.kind}): {e.exempt}" for e in self.exempted]
        runners: dict[str, int] = {}
        for entry in self.executed:
            runners[entry.runner or ""] = runners.get(entry.runner or "", 0) + 1
        lines.append("  executed by: " + ", ".join(f"{name} {count}" for name, count in sorted(runners.items())))
        return lines


RunbookSource = Callable[[], Iterable[object]]


def runbook_entries(repo: Path, source: RunbookSource | None = None) -> list[Entry]:
    """Runbook steps from ``v4runtime.runbooks.coverage.coverage_entries(repo)`` (none until it exists).

    Each entry provides ``file``, ``step`` (id), ``executed`` (bool) and ``exempt`` (reason or
    None), as attributes or mapping keys.
    """
    if source is None:
        try:
            module = importlib.import_module("v4runtime.runbooks.coverage")
        except ModuleNotFoundError as exc:
            if exc.name not in {"v4runtime.runbooks", "v4runtime.runbooks.coverage"}:
                raise
            return []
        def source() -> Iterable[object]:
            return module.coverage_entries(repo)
    entries = []
    for item in source():
        def get(key: str, item: object = item) -> object:
            return item.get(key) if isinstance(item, dict) else getattr(item, key, None)

        file = get("file")
        step = get("step") or get("step_id")
        exempt = get("exempt") or get("exempt_reason")
        where = f"{file}#{step}"
        if get("executed"):
            entries.append(Entry(where, "runbook step", runner=RUNBOOKS))
        elif exempt and str(exempt).strip():
            entries.append(Entry(where, "runbook step", exempt=str(exempt).strip()))
        else:
            entries.append(Entry(where, "runbook step", error="runbook step is neither executed nor exempt"))
    return entries


def collect_coverage(repo: Path, runbooks: RunbookSource | None = None, with_runbooks: bool = True) -> Coverage:
    """Walk docs/ (minus docs/generated/) and runbooks/ and classify every executable fence."""
    coverage = Coverage()
    pages = doc_pages(repo / "docs") if (repo / "docs").is_dir() else []
    runbook_dir = repo / "runbooks"
    if runbook_dir.is_dir():
        pages += sorted(runbook_dir.rglob("*.md"))
    for page in pages:
        md_lines = markdown_docs_lines(page.read_text(encoding="utf-8"))
        for fence in find_fences(page.read_text(encoding="utf-8"), page):
            verdict = classify(fence, md_lines)
            if page.is_relative_to(runbook_dir) and verdict.runner:
                # runbooks/*.md are not collected as pages: only an exemption can cover them
                verdict = Verdict(error="runbooks/*.md fences are not run: put commands in runbook YAML steps")
            if verdict.runner or verdict.exempt or verdict.error:
                coverage.entries.append(
                    Entry(
                        fence.where(repo),
                        f"{fence.lang or 'bare'} fence",
                        verdict.runner,
                        verdict.exempt,
                        verdict.error,
                    )
                )
    coverage.entries += docstring_entries(repo)
    if with_runbooks:
        coverage.entries += runbook_entries(repo, runbooks)
    return coverage


def docstring_entries(repo: Path, package: str = "v4runtime") -> list[Entry]:
    """Code examples in docstrings, which mkdocstrings renders into the API reference.

    No collector runs them (importing every module for pytest-markdown-docs would drag the
    training code in), so each executable fence or ``>>>`` example must carry an exemption;
    longer examples belong on a page or in ``snippets/``.
    """
    import ast

    entries: list[Entry] = []
    root = repo / package
    if not root.is_dir():
        return entries
    for source in sorted(root.rglob("*.py")):
        try:
            tree = ast.parse(source.read_text(encoding="utf-8"))
        except SyntaxError:
            continue
        nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef))]
        for node in nodes:
            doc = ast.get_docstring(node, clean=False)
            if not doc:
                continue
            first = node.body[0].lineno if getattr(node, "body", None) else 1
            where_base = source.relative_to(repo)
            for fence in find_fences(doc, source):
                verdict = classify(fence, set())
                line = first + fence.line - 1
                if verdict.exempt:
                    entries.append(Entry(f"{where_base}:{line}", "docstring fence", exempt=verdict.exempt))
                elif verdict.runner or verdict.error:
                    entries.append(
                        Entry(f"{where_base}:{line}", "docstring fence",
                              error=verdict.error or "docstring examples are not run: move it to a page or snippets/, or exempt it")
                    )
            for n, text in enumerate(doc.splitlines()):
                if text.lstrip().startswith(">>> "):
                    entries.append(
                        Entry(f"{where_base}:{first + n}", "docstring doctest",
                              error="doctest examples are not run: use a page, snippets/ or a test instead")
                    )
                    break
    return entries


def check_exemption_targets(repo: Path, coverage: Coverage) -> list[str]:
    """Exemptions that say "tested by PATH" must name an existing file."""
    problems = []
    for entry in coverage.exempted:
        reason = entry.exempt or ""
        if reason.lower().startswith("tested by "):
            target = reason.split()[2].rstrip(".,;:)")
            if not (repo / target).exists():
                problems.append(f"{entry.where}: exemption names {target}, which does not exist")
    return problems


__all__ = [
    "DOCHARNESS",
    "EXECUTABLE_LANGS",
    "MARKDOWN_DOCS",
    "Coverage",
    "Entry",
    "Verdict",
    "classify",
    "collect_coverage",
    "doc_pages",
    "page_fences",
    "runbook_entries",
]
