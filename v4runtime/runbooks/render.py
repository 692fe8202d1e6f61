"""Rendering runbooks and record templates to Markdown with Jinja2.

Runbook pages use the package template ``templates/page.md.j2``; record templates (incident
record, post-rollback verification) live beside the runbooks in ``runbooks/templates/`` and
are rendered either blank (for the docs) or filled from a run in the audit log.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2

from v4runtime.errors import RunbookError
from v4runtime.runbooks.model import Param, Runbook, Step

TEMPLATE_SUFFIX = ".md.j2"


def _cell(text: Any) -> str:
    """Make text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _default(param: Param) -> str:
    if param.secret:
        return "*(secret)*" if param.default is not None else "required"
    return "required" if param.default is None else f"`{_cell(param.default)}`"


def _constraints(param: Param) -> str:
    parts = []
    if param.enum:
        parts.append("one of " + ", ".join(f"`{_cell(v)}`" for v in param.enum))
    if param.pattern:
        parts.append(f"matches `{_cell(param.pattern)}`")
    if param.minimum is not None:
        parts.append(f"≥ {param.minimum:g}")
    if param.maximum is not None:
        parts.append(f"≤ {param.maximum:g}")
    if param.secret:
        parts.append("secret")
    return "; ".join(parts) or "—"


def _verify_text(step: Step) -> str:
    verify = step.verify
    subject = "the command below" if verify.run else "the run command"
    text = f"{subject} exits with status {verify.exit_code}"
    if verify.expect:
        text += f" and its output matches `{_cell(verify.expect)}`"
    if verify.attempts > 1:
        text += f" (polled up to {verify.attempts} times, every {verify.interval:g} s)"
    return text + "."


def _environment(loader: jinja2.BaseLoader) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=loader,
        autoescape=False,  # Markdown output, not HTML
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["cell"] = _cell
    env.globals.update(default=_default, constraints=_constraints, verify_text=_verify_text)
    return env


def render_page(book: Runbook, source: str | None = None, repo_url: str = "") -> str:
    """Render the documentation page of ``book`` (parameters, steps, commands, verify, rollback).

    Args:
        book: the runbook.
        source: path shown as the page's source (default: ``runbooks/<name>.yml``).
        repo_url: prefix for the link to the source (empty: a relative text link).
    """
    env = _environment(jinja2.PackageLoader("v4runtime.runbooks", "templates"))
    required = [p for p in book.params if p.required]
    hint = "".join(f" --param {p.name}=..." for p in required)
    source = source or f"runbooks/{Path(book.path).name}"
    text = env.get_template("page.md.j2").render(book=book, source=source, repo_url=repo_url, param_hint=hint)
    if not repo_url:  # no repository browser configured: show the path without a link
        text = text.replace(f"[`{source}`]({source})", f"`{source}`")
    return text


def template_names(directory: Path) -> list[str]:
    """Names of the record templates in ``directory`` (``incident`` for ``incident.md.j2``)."""
    if not directory.is_dir():
        return []
    return sorted(p.name[: -len(TEMPLATE_SUFFIX)] for p in directory.glob(f"*{TEMPLATE_SUFFIX}"))


def render_template(directory: Path, name: str, context: dict[str, Any]) -> str:
    """Render record template ``name`` from ``directory`` with ``context``.

    Raises:
        RunbookError: no such template, or it uses a variable the context lacks.
    """
    if name not in template_names(directory):
        known = ", ".join(template_names(directory)) or "none"
        raise RunbookError(f"no template {name!r} in {directory} (templates: {known})")
    env = _environment(jinja2.FileSystemLoader(str(directory)))
    try:
        return env.get_template(name + TEMPLATE_SUFFIX).render(**context)
    except jinja2.UndefinedError as exc:
        raise RunbookError(f"template {name!r}: {exc.message}") from None


def _schema_type(spec: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in spec:
        return _schema_type(defs[spec["$ref"].rsplit("/", 1)[-1]], defs)
    if "oneOf" in spec:
        return " or ".join(_schema_type(s, defs) for s in spec["oneOf"])
    if "enum" in spec:
        return " \\| ".join(f"`{v}`" for v in spec["enum"])
    kind = spec.get("type", "")
    kind = " \\| ".join(kind) if isinstance(kind, list) else kind
    limits = []
    if "minimum" in spec:
        limits.append(f"≥ {spec['minimum']}")
    if "exclusiveMinimum" in spec:
        limits.append(f"> {spec['exclusiveMinimum']}")
    if "maximum" in spec:
        limits.append(f"≤ {spec['maximum']}")
    return kind + (f" ({', '.join(limits)})" if limits else "")


def schema_table(schema: dict[str, Any]) -> str:
    """Markdown table of every key of the runbook format, read from the JSON Schema itself."""
    defs = schema["$defs"]
    rows = ["| Key | Type | Default | Meaning |", "|---|---|---|---|"]

    def add(prefix: str, node: dict[str, Any]) -> None:
        required = set(node.get("required", []))
        for key, spec in node["properties"].items():
            default = f"`{json.dumps(spec['default'])}`" if "default" in spec else ("required" if key in required else "—")
            meaning = _cell(spec.get("description", ""))
            rows.append(f"| `{prefix}{key}` | {_schema_type(spec, defs)} | {default} | {meaning} |")

    add("", schema)
    add("params.NAME.", defs["param"])
    add("steps[].", defs["step"])
    add("steps[].verify.", defs["verify"])
    return "\n".join(rows)
