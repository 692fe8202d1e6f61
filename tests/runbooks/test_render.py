"""Rendering: runbook pages, record templates, and the mkdocs hook in a real strict build."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from v4runtime.runbooks.loader import load_file, runbook_files
from v4runtime.runbooks.render import render_page, render_template

from .helpers import REPO, cli, events, write_runbook

SAMPLE = """
title: Sample | pipes
purpose: Shows every part of a page.
params:
  env:
    description: Target environment.
    enum: [staging, prod]
    default: staging
  token:
    description: API token.
    secret: true
steps:
  - id: deploy
    description: Deploy **it**.
    run: echo deploy {{ env }}
    verify:
      run: echo ok
      expect: ok
      attempts: 3
      interval: 0.1
    timeout: 30
    retries: 2
    rollback: echo undeploy
    confirm: Deploy to {{ env }}?
  - id: smoke
    description: Smoke test.
    run: echo smoke
    verify: {expect: smoke}
    ci_exempt: needs the production load balancer
"""


def test_page_shows_params_steps_commands_verify_rollback(tmp_path: Path) -> None:
    page = render_page(load_file(write_runbook(tmp_path, "sample", SAMPLE)))
    assert page.startswith("# Sample | pipes\n")
    assert "| `env` | string | `staging` | one of `staging`, `prod` | Target environment. |" in page
    assert "| `token` | string | required | secret | API token. |" in page
    assert "### 1. deploy { #deploy }" in page and "Deploy **it**." in page
    assert "```bash\necho deploy {{ env }}\n```" in page
    assert "the command below exits with status 0 and its output matches `ok` (polled up to 3 times" in page
    assert "```bash\necho undeploy\n```" in page
    assert '!!! warning "Confirmation gate"' in page
    assert "*Not run in CI*: needs the production load balancer" in page
    assert "--param token=..." in page  # the required parameter is in the run hint


def test_every_shipped_runbook_renders() -> None:
    for path in runbook_files(REPO / "runbooks"):
        book = load_file(path)
        page = render_page(book)
        for step in book.steps:
            assert step.run.strip() in page


def test_record_templates_render_blank_and_from_a_run(tmp_path: Path) -> None:
    templates = REPO / "runbooks" / "templates"
    blank = render_template(templates, "incident", {"run": None})
    assert "# Incident YYYY-MM-DD-NN" in blank and "<run id from `v4runtime runbook log`>" in blank
    write_runbook(
        tmp_path,
        "fails",
        """
        title: Fails
        purpose: For the record.
        steps:
          - id: a
            description: a
            run: "true"
            verify: {exit_code: 0}
            rollback: "true"
          - id: b
            description: b
            run: exit 3
            verify: {exit_code: 0}
        """,
    )
    log = tmp_path / "audit.jsonl"
    assert cli(["run", "fails"], cwd=tmp_path, log=log).returncode == 1
    run_id = events(log)[0]["run_id"]
    record = cli(["record", "post-rollback", "--dir", str(templates.parent), "--run", run_id[:-2]], cwd=tmp_path, log=log)
    assert record.returncode == 0, record.stderr
    assert f"Runbook `fails`, run `{run_id}`" in record.stdout
    assert "failed at step `b`" in record.stdout
    assert "| `a` | 0 | done |" in record.stdout
    incident = cli(["record", "incident", "--dir", str(templates.parent), "--run", run_id], cwd=tmp_path, log=log)
    assert "| rollback `a`: passed (exit 0) |" in incident.stdout


def test_hook_renders_pages_into_nav_under_strict_build(tmp_path: Path) -> None:
    write_runbook(tmp_path, "sample", SAMPLE)
    (tmp_path / "runbooks" / "templates").mkdir()
    (tmp_path / "runbooks" / "templates" / "incident.md.j2").write_text("# Incident\n\n{{ 'blank' if not run }}\n")
    docs = tmp_path / "docs" / "runbooks"
    docs.mkdir(parents=True)
    (tmp_path / "tests" / "runbooks").mkdir(parents=True)
    (tmp_path / "tests" / "runbooks" / "test_e2e.py").write_text("")
    (tmp_path / "docs" / "index.md").write_text("# Home\n\nSee [runbooks](runbooks/index.md).\n")
    (docs / "index.md").write_text("# Runbooks\n\n<!-- runbooks:list -->\n\n<!-- runbooks:coverage -->\n")
    hook = REPO / "v4runtime" / "runbooks" / "mkdocs_hook.py"
    (tmp_path / "mkdocs.yml").write_text(
        textwrap.dedent(
            f"""
            site_name: t
            strict: true
            validation: {{nav: {{omitted_files: warn}}, links: {{not_found: warn, anchors: warn}}}}
            markdown_extensions: [admonition, attr_list, tables, toc]
            plugins:
              - search
              - htmlproofer: {{enabled: true, validate_external_urls: false, raise_error: true}}
            hooks: [{hook}]
            nav:
              - Home: index.md
              - Runbooks:
                  - runbooks/index.md
            """
        )
    )
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert build.returncode == 0, build.stderr
    page = (tmp_path / "site" / "runbooks" / "sample" / "index.html").read_text()
    assert "Sample | pipes" in page and "echo undeploy" in page
    index = (tmp_path / "site" / "runbooks" / "index.html").read_text()
    assert 'href="sample/"' in index and "runs end to end" in index
    assert "<strong>1 of 2 steps</strong>" in index  # smoke is ci_exempt
    assert (tmp_path / "site" / "runbooks" / "templates" / "incident" / "index.html").exists()
    (tmp_path / "index.html").write_text(index)


def test_hook_fails_the_build_on_an_invalid_runbook(tmp_path: Path) -> None:
    write_runbook(tmp_path, "bad", "title: T\npurpose: P\nsteps:\n  - id: x\n    description: d\n    run: a\n")
    (tmp_path / "docs" / "runbooks").mkdir(parents=True)
    (tmp_path / "docs" / "index.md").write_text("# Home\n")
    (tmp_path / "docs" / "runbooks" / "index.md").write_text("# R\n\n<!-- runbooks:list -->\n")
    hook = REPO / "v4runtime" / "runbooks" / "mkdocs_hook.py"
    (tmp_path / "mkdocs.yml").write_text(
        f"site_name: t\nhooks: [{hook}]\nnav:\n  - index.md\n  - Runbooks:\n      - runbooks/index.md\n"
    )
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "-d", str(tmp_path / "site")],
        cwd=tmp_path, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, capture_output=True, text=True, timeout=120,
    )
    assert build.returncode != 0
    assert "step 'x' (#1): field 'verify': 'verify' is a required property" in build.stderr


def test_hook_markers_keep_the_indentation_of_their_line() -> None:
    from v4runtime.runbooks.mkdocs_hook import put_marker

    table = "| a |\n|---|\n| 1 |\n"
    page = "- item\n\n    <!-- m -->\n\ntext <!-- m --> inline\n"
    assert put_marker(page, "<!-- m -->", table) == (
        "- item\n\n    | a |\n    |---|\n    | 1 |\n\ntext | a |\n|---|\n| 1 |\n inline\n"
    )
    assert put_marker("<!-- m -->\n", "<!-- m -->", table) == "| a |\n|---|\n| 1 |\n"
