"""MkDocs hook: renders every runbook (and record template) into the Runbooks section at build time.

Registered in ``mkdocs.yml`` under ``hooks:``. It adds one generated page per runbook
(``runbooks/<name>.md``) and per record template (``runbooks/templates/<name>.md``) to the
files and to the nav under "Runbooks", so ``mkdocs build --strict`` sees no omitted page, and
replaces markers in pages with text generated now: ``<!-- runbooks:list -->`` (the table of
runbooks, required in ``runbooks/index.md``), ``<!-- runbooks:coverage -->`` (what CI runs),
``<!-- runbooks:alert-rules -->`` (the monitoring API's default alert rules) and
``<!-- runbooks:schema-table -->`` (every key of the format, from the JSON Schema). A marker alone on
its line is replaced indented like that line, so it also works inside a list item or an admonition.
An invalid runbook fails the build with the validation message (file, step, field).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

from v4runtime.errors import RunbookError
from v4runtime.runbooks.loader import load_all
from v4runtime.runbooks.model import Runbook
from v4runtime.runbooks.render import render_page, render_template, schema_table, template_names
from v4runtime.runbooks.schema import schema

NAV_SECTION = "Runbooks"
LIST_MARKER = "<!-- runbooks:list -->"
TEMPLATE_TITLES = {"incident": "Incident record template", "post-rollback": "Post-rollback verification"}

_state: dict[str, Any] = {}


def _root(config: Any) -> Path:
    return Path(config.config_file_path).resolve().parent


def _books(config: Any) -> list[Runbook]:
    try:
        return load_all(_root(config) / "runbooks")
    except RunbookError as exc:
        raise PluginError(f"runbooks: {exc}") from None


def on_config(config: Any) -> Any:
    """Load the runbooks and add their pages to the nav under "Runbooks"."""
    books = _books(config)
    templates = template_names(_root(config) / "runbooks" / "templates")
    _state.update(books=books, templates=templates)
    entries: list[Any] = [{b.title: f"runbooks/{b.name}.md"} for b in books]
    if templates:
        entries.append(
            {"Record templates": [{TEMPLATE_TITLES.get(t, t): f"runbooks/templates/{t}.md"} for t in templates]}
        )
    for item in config.nav or []:
        if isinstance(item, dict) and isinstance(item.get(NAV_SECTION), list):
            section = item[NAV_SECTION]
            present = {str(v) for e in section if isinstance(e, dict) for v in e.values()}
            section.extend(e for e in entries if str(next(iter(e.values()))) not in present)
            break
    else:
        raise PluginError(f"runbooks: mkdocs.yml nav has no {NAV_SECTION!r} section to add the runbook pages to")
    return config


@event_priority(100)  # before other plugins (htmlproofer indexes the files in its own on_files)
def on_files(files: Files, config: Any) -> Files:
    """Add the generated pages to the site's files."""
    root = _root(config)
    repo_url = (config.repo_url or "").rstrip("/")
    prefix = f"{repo_url}/blob/main/" if repo_url else ""
    for book in _state.get("books", []):
        content = render_page(book, repo_url=prefix)
        files.append(File.generated(config, f"runbooks/{book.name}.md", content=content))
    for name in _state.get("templates", []):
        body = render_template(root / "runbooks" / "templates", name, {"run": None})
        page = (
            f"# {TEMPLATE_TITLES.get(name, name)}\n\n"
            f"Source: `runbooks/templates/{name}.md.j2`. Fill it from a run of the audit log with "
            f"`v4runtime runbook record {name} --run RUN_ID > record.md`; below, the blank form.\n\n"
            "````markdown\n" + body + "````\n"
        )
        files.append(File.generated(config, f"runbooks/templates/{name}.md", content=page))
    return files


def list_table(books: list[Runbook]) -> str:
    """Markdown table of runbooks: page link, steps, purpose (first sentence), CI status."""
    rows = ["| Runbook | Steps | Purpose | CI |", "|---|---|---|---|"]
    for b in books:
        purpose = " ".join(b.purpose.split()).split(". ")[0].rstrip(".").replace("|", "\\|")
        ci = "exempt" if b.ci_exempt else "runs end to end"
        title = b.title.replace("|", "\\|")
        rows.append(f"| [{title}]({b.name}.md) (`{b.name}`) | {len(b.steps)} | {purpose}. | {ci} |")
    return "\n".join(rows)


def coverage_text(root: Path) -> str:
    """One sentence: how many runbooks and steps CI executes end to end (from :mod:`.coverage`)."""
    from v4runtime.runbooks.coverage import coverage_entries, summary

    counts = summary(coverage_entries(root))
    return (
        f"CI executes **{counts['executed']} of {counts['steps']} steps** of **{counts['runbooks']} runbooks** "
        f"end to end for real ({counts['commands_executed']} commands: run, verify and rollback); "
        f"{counts['exempt']} step(s) carry a written `ci_exempt` reason."
    )


def alert_rules_table() -> str:
    """Table of the monitoring API's default alert rules, read from the shipped rule file."""
    from importlib import resources

    import yaml

    text = resources.files("v4runtime.monitoring").joinpath("default_rules.yaml").read_text(encoding="utf-8")
    rules = (yaml.safe_load(text) or {}).get("rules", [])
    rows = ["| Alert | Metric | Condition | Window | For | Severity | Min. events |", "|---|---|---|---|---|---|---|"]
    for r in rules:
        rows.append(
            f"| `{r['name']}` | `{r['metric']}` | {r['comparison']} {r['threshold']} | {r.get('window', '')} "
            f"| {r.get('for', '')} | {r.get('severity', '')} | {r.get('min_events', '')} |"
        )
    return "\n".join(rows)


#: Markers a page may contain, and what replaces them at build time.
MARKERS = {
    LIST_MARKER: lambda config: list_table(_state.get("books", [])),
    "<!-- runbooks:coverage -->": lambda config: coverage_text(_root(config)),
    "<!-- runbooks:alert-rules -->": lambda config: alert_rules_table(),
    "<!-- runbooks:schema-table -->": lambda config: schema_table(schema()),
}


def put_marker(markdown: str, marker: str, text: str) -> str:
    """``markdown`` with every ``marker`` replaced by ``text``.

    A marker alone on its line is replaced by ``text`` indented like that line, so a table can sit
    in a list item or an admonition; a marker inside a line is replaced as it is.
    """

    def indented(match: re.Match[str]) -> str:
        indent = match.group(1)
        return "\n".join(indent + line if line.strip() else "" for line in text.rstrip("\n").split("\n"))

    markdown = re.sub(rf"^([ \t]*){re.escape(marker)}[ \t]*$", indented, markdown, flags=re.M)
    return markdown.replace(marker, text)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Replace the markers (runbook list, CI coverage, alert rules) with text generated now."""
    if page.file.src_uri == "runbooks/index.md" and LIST_MARKER not in markdown:
        raise PluginError(f"runbooks: docs/runbooks/index.md lacks the marker {LIST_MARKER}")
    for marker, produce in MARKERS.items():
        if marker in markdown:
            try:
                markdown = put_marker(markdown, marker, produce(config))
            except (OSError, KeyError, RunbookError) as exc:
                raise PluginError(f"runbooks: cannot expand {marker} in {page.file.src_uri}: {exc}") from None
    return markdown


def on_serve(server: Any, config: Any, builder: Any) -> Any:
    """Rebuild when a runbook or template changes under ``mkdocs serve``."""
    server.watch(str(_root(config) / "runbooks"))
    return server
