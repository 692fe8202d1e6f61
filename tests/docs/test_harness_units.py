"""The harness's parts, on scratch pages: fence finding, console matching, page sessions, the gate."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from docharness.fences import find_fences, markdown_docs_lines
from docharness.gate import DOCHARNESS, MARKDOWN_DOCS, collect_coverage, runbook_entries
from docharness.runner import BlockFailure, PageSession, output_matches, parse_console
from docharness.site import broken_internal_links, external_references

PAGE = textwrap.dedent(
    '''\
    # Scratch

    ```bash
    echo top
    ```

    !!! note "An admonition"

        ```python
        print("in admonition")
        ```

    === "Tab one"

        ```console
        $ echo tab
        tab
        ```

    ??? tip "Collapsed"

        ```{.bash exempt="needs a Kubernetes cluster"}
        kubectl get pods
        ```

    ```python
    top_level = True
    ```

    ````markdown
    ```bash
    this is text inside a markdown example
    ```
    ````
    '''
)


def test_finds_every_fence_including_indented_ones(tmp_path: Path) -> None:
    fences = find_fences(PAGE, tmp_path / "p.md")
    assert [(f.line, f.lang, f.indent) for f in fences] == [
        (3, "bash", 0),
        (9, "python", 4),
        (15, "console", 4),
        (22, "bash", 4),
        (26, "python", 0),
        (30, "markdown", 0),
    ]
    assert fences[1].body == 'print("in admonition")\n'  # dedented
    assert fences[3].exempt == "needs a Kubernetes cluster"


def test_pytest_markdown_docs_misses_indented_python() -> None:
    # the reason our collector exists: only the top-level fence is visible to the plugin
    assert markdown_docs_lines(PAGE) == {26}


def test_gate_assigns_each_fence(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "p.md").write_text(PAGE)
    coverage = collect_coverage(tmp_path, runbooks=list)
    by_line = {e.where: e for e in coverage.entries}
    assert by_line["docs/p.md:3"].runner == DOCHARNESS
    assert by_line["docs/p.md:9"].runner == DOCHARNESS  # indented python: ours
    assert by_line["docs/p.md:26"].runner == MARKDOWN_DOCS
    assert by_line["docs/p.md:22"].exempt == "needs a Kubernetes cluster"
    assert "docs/p.md:30" not in by_line  # non-code fence: not gated
    assert coverage.summary_lines() == [
        "fences: 4 executed, 1 exempt",
        "  exempt docs/p.md:22 (bash fence): needs a Kubernetes cluster",
        "  executed by: docharness 3, pytest-markdown-docs 1",
    ]
    assert not coverage.errors


@pytest.mark.parametrize(
    ("fence", "message"),
    [
        ("```{.python notest}\nx = 1\n```", "`notest` without a written reason"),
        ('```{.bash exempt=""}\nls\n```', "empty exemption"),
        ('```bash exempt="x"\nls\n```', "attribute form"),
        ('```{.python exempt="slow"}\nx = 1\n```', "lacks `notest`"),
        ("```zsh\nls\n```", "no collector runs `zsh`"),
        ("```bash-session\n$ ls\n```", "no collector runs `bash-session`"),  # before: passed, unrun
        ("```ruby\nputs 1\n```", "no collector runs `ruby`"),
        ("```\nls\n```", "has no language"),
    ],
)
def test_gate_fails_on_unexecuted_unexempted_fences(tmp_path: Path, fence: str, message: str) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "bad.md").write_text(f"# Bad\n\n{fence}\n")
    coverage = collect_coverage(tmp_path, runbooks=list)
    assert [e.where for e in coverage.errors] == ["docs/bad.md:3"]
    assert message in coverage.errors[0].error


def test_gate_skips_generated_includes_but_walks_runbooks(tmp_path: Path) -> None:
    (tmp_path / "docs" / "generated").mkdir(parents=True)
    (tmp_path / "docs" / "generated" / "x.md").write_text("```bash\nnever run\n```\n")
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "README.md").write_text("```bash\nnot run\n```\n")
    coverage = collect_coverage(tmp_path, runbooks=list)
    assert [e.where for e in coverage.errors] == ["runbooks/README.md:1"]


def test_gate_counts_runbook_steps() -> None:
    entries = runbook_entries(
        Path("."),
        lambda: [
            {"file": "runbooks/a.yml", "step": "check", "executed": True, "exempt": None},
            {"file": "runbooks/a.yml", "step": "page-oncall", "executed": False, "exempt": "sends a real page"},
            {"file": "runbooks/a.yml", "step": "forgotten", "executed": False, "exempt": None},
        ]
    )
    assert [(e.where, bool(e.runner), e.exempt, bool(e.error)) for e in entries] == [
        ("runbooks/a.yml#check", True, None, False),
        ("runbooks/a.yml#page-oncall", False, "sends a real page", False),
        ("runbooks/a.yml#forgotten", False, None, True),
    ]


@pytest.mark.parametrize(
    ("expected", "actual", "ok"),
    [
        (["hello"], "hello\n", True),
        (["hello"], "hullo\n", False),
        (["took ... ms"], "took 12.5 ms\n", True),
        (["took ... ms"], "took 12.5 s\n", False),
        (["first", "...", "last"], "first\na\nb\nlast\n", True),
        (["first", "...", "last"], "first\nlast\n", True),
        (["first", "last"], "first\nmiddle\nlast\n", False),
        (["a"], "a\nextra\n", False),
        ([], "", True),
    ],
)
def test_console_wildcards(expected: list[str], actual: str, ok: bool) -> None:
    assert output_matches(expected, actual) is ok


def test_console_parsing() -> None:
    cmds = parse_console("$ echo a \\\n  b\na b\n$ false\n[exit 1]\n", first_line=10)
    assert [(c.line, c.command, c.expected, c.exit_code) for c in cmds] == [
        (10, "echo a \\\n  b", ["a b"], 0),
        (13, "false", [], 1),
    ]
    with pytest.raises(BlockFailure):
        parse_console("output without a command\n", 1)


@pytest.fixture
def session(tmp_path: Path):
    page = PageSession("docs/scratch.md", tmp_path)
    yield page
    page.close()


def test_state_flows_down_the_page_without_rerunning(session: PageSession) -> None:
    session.run_bash_block("echo run >> log.txt\nexport GREETING=hello\nmkdir sub && cd sub\n", 3)
    session.run_console_block("$ pwd\n.../sub\n$ echo $GREETING\nhello\n$ wc -l < ../log.txt\n1\n", 8)
    assert (session.scratch / "log.txt").read_text() == "run\n"  # first block ran exactly once


def test_bash_blocks_run_with_errexit_and_pipefail(session: PageSession) -> None:
    with pytest.raises(BlockFailure, match="status 1") as err:
        session.run_bash_block("false | true\necho not reached\n", 20)
    assert "20 | false | true" in str(err.value)
    with pytest.raises(BlockFailure):
        session.run_bash_block("echo $UNDEFINED_VARIABLE_X\n", 30)


def test_environment_has_venv_and_repo(session: PageSession, tmp_path: Path) -> None:
    session.run_console_block(f"$ echo $V4_REPO\n{tmp_path}\n$ python -c 'import sys; print(sys.prefix)'\n...\n", 1)


def test_console_mismatch_names_the_command_line_and_shows_a_diff(session: PageSession) -> None:
    with pytest.raises(BlockFailure) as err:
        session.run_console_block("$ echo one\none\n$ echo two\nthree\n", 41)
    assert err.value.line == 43
    assert "-three" in str(err.value) and "+two" in str(err.value)


def test_expected_exit_status(session: PageSession) -> None:
    session.run_console_block("$ ls missing-file\nls: ...No such file or directory\n[exit 2]\n", 1)
    with pytest.raises(BlockFailure, match="exit status 0, expected 3"):
        session.run_console_block("$ true\n[exit 3]\n", 1)


def test_background_processes_die_with_the_page(tmp_path: Path) -> None:
    page = PageSession("docs/bg.md", tmp_path)
    page.run_bash_block("sleep 300 &\necho $! > \"$V4_REPO/bg.pid\"\n", 1)
    pid = int((tmp_path / "bg.pid").read_text())
    page.run_bash_block(f"kill -0 {pid}\n", 5)  # still alive for the next block
    page.close()
    assert not _running(pid)


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphaned zombie waits for init to reap it; it is dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def test_block_timeout(session: PageSession) -> None:
    with pytest.raises(BlockFailure, match="timed out after 0.5s"):
        session.run_bash_block("sleep 30\n", 1, timeout=0.5)


def test_python_block_tracebacks_point_at_page_lines(session: PageSession) -> None:
    with pytest.raises(ZeroDivisionError) as err:
        session.run_python_block("x = 1\ny = x / 0\n", 17, "docs/scratch.md")
    assert any(entry.lineno + 1 == 18 and str(entry.path).endswith("scratch.md") for entry in err.traceback)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_html_checker_finds_external_assets_and_broken_anchors(tmp_path: Path) -> None:
    _write(tmp_path / "index.html", '<a href="other/#there">ok</a><a href="other/#nowhere">bad</a>'
           '<a href="gone/">gone</a><a href="https://squidfunk.github.io/x">prose</a>'
           '<a href="https://evil.example/">unlisted</a>')
    _write(tmp_path / "other" / "index.html", '<h2 id="there">T</h2><script src="https://cdn.example/x.js"></script>'
           '<link rel="stylesheet" href="//fonts.example/css"><div style="background:url(https://img.example/a.png)">')
    _write(tmp_path / "assets" / "x.css", '@import "https://fonts.example/f.css";')
    broken = broken_internal_links(tmp_path)
    assert len(broken) == 2 and "nowhere" in broken[0] + broken[1] and "gone" in broken[0] + broken[1]
    external = external_references(tmp_path)
    for needle in ("evil.example", "cdn.example", "fonts.example/css", "img.example", "fonts.example/f.css"):
        assert any(needle in p for p in external), needle
    assert not any("squidfunk" in p for p in external)


def test_gate_covers_docstring_examples(tmp_path: Path) -> None:
    (tmp_path / "v4runtime").mkdir()
    (tmp_path / "v4runtime" / "mod.py").write_text(
        'def f():\n    """Do it.\n\n    ```python\n    f()\n    ```\n    """\n\n\n'
        'def g():\n    """Do it.\n\n    >>> g()\n    """\n\n\n'
        'def h():\n    """Do it.\n\n    ```{.python notest exempt=\"shown only\"}\n    h()\n    ```\n    """\n'
    )
    coverage = collect_coverage(tmp_path, runbooks=list)
    assert [(e.where, e.kind, bool(e.error), e.exempt) for e in coverage.entries] == [
        ("v4runtime/mod.py:4", "docstring fence", True, None),
        ("v4runtime/mod.py:13", "docstring doctest", True, None),
        ("v4runtime/mod.py:20", "docstring fence", False, "shown only"),
    ]


def test_finds_fences_in_blockquotes(tmp_path: Path) -> None:
    fences = find_fences("Intro\n\n> Quoted:\n>\n> ```bash\n> echo quoted\n> ```\n", tmp_path / "q.md")
    assert [(f.line, f.lang, f.body) for f in fences] == [(5, "bash", "echo quoted\n")]
