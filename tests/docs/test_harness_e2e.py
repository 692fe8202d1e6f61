"""The harness end to end on scratch projects: it passes good pages and fails bad ones loudly.

Each test builds a throwaway project in a temporary directory (never the real docs) and runs the
real tools on it: pytest with our plugin and pytest-markdown-docs, and ``mkdocs build --strict``
with a config that inherits the real ``mkdocs.yml``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from docharness.site import build_site

HARNESS = Path(__file__).resolve().parent
REPO = HARNESS.parents[1]

GOOD_PAGE = textwrap.dedent(
    '''\
    # Good

    ```bash
    echo "from bash" > note.txt
    sleep 300 &
    echo $! > "$V4_REPO/bg.pid"
    ```

    ```python
    from pathlib import Path
    assert Path("note.txt").read_text() == "from bash\\n"
    Path("py.txt").write_text("from python")
    ```

    !!! example "In an admonition"

        ```console
        $ cat py.txt; echo
        from python
        $ date
        ...
        ```
    '''
)

# Runs after good.md (alphabetical): the background process of good.md must be gone by then.
LATER_PAGE = textwrap.dedent(
    '''\
    # Later

    ```bash
    pid=$(cat "$V4_REPO/bg.pid")
    if [ -e /proc/$pid ] && ! grep -q '^[^)]*) Z' /proc/$pid/stat; then echo "still running: $pid"; exit 1; fi
    ```
    '''
)

BAD_PAGE = textwrap.dedent(
    '''\
    # Bad

    Some prose.

    ```console
    $ echo hello
    hello
    $ echo world
    planet
    ```

    ```bash
    echo "not reached: the page stopped at its first failure"
    ```

    === "Tab"

        ```python
        raise RuntimeError("hidden in a tab")
        ```
    '''
)


def _scratch_project(tmp_path: Path, pages: dict[str, str]) -> Path:
    project = tmp_path / "project"
    (project / "docs").mkdir(parents=True)
    for name, text in pages.items():
        (project / "docs" / name).write_text(text)
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "conftest.py").write_text(
        f"import sys\nsys.path.insert(0, {str(HARNESS)!r})\n"
        "from docharness.plugin import DocsPlugin\n\n\n"
        "def pytest_configure(config):\n"
        "    config.pluginmanager.register(DocsPlugin(config), 'v4-docharness')\n"
    )
    return project


def _pytest(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfs",
         "--markdown-docs", "--markdown-docs-syntax=superfences", "docs"],
        cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120,
    )


@pytest.fixture(scope="module")
def scratch_run(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess:
    """One pytest run over three scratch pages: two good ones and a bad one."""
    pages = {"good.md": GOOD_PAGE, "later.md": LATER_PAGE, "z-bad.md": BAD_PAGE}
    return _pytest(_scratch_project(tmp_path_factory.mktemp("pages"), pages))


def test_good_pages_pass_with_state_flow_and_cleanup(scratch_run: subprocess.CompletedProcess) -> None:
    out = scratch_run.stdout
    # bash + python (pytest-markdown-docs) + console on good.md, bash on later.md; z-bad.md: 1 failure, 2 skipped
    assert "1 failed, 4 passed, 2 skipped" in out, out
    assert "docs/good.md" not in out.split("short test summary")[-1] and "docs/later.md" not in out, out


def test_bad_page_fails_naming_page_and_line(scratch_run: subprocess.CompletedProcess) -> None:
    out = scratch_run.stdout
    assert scratch_run.returncode == 1, out
    # the console failure names the `$` line whose output differs and shows a diff and the block
    assert "docs/z-bad.md:8: console fence failed" in out, out
    assert "-planet" in out and "+world" in out and " 8 | $ echo world" in out, out
    # the later blocks are reported as not run because of that failure (not silently dropped)
    assert "docs/z-bad.md:12 not run: an earlier block of this page failed (docs/z-bad.md::[console][line:5])" in out
    assert "docs/z-bad.md:18 not run: an earlier block" in out, out


def test_hidden_fences_run_and_fail_with_page_line(tmp_path: Path) -> None:
    """A Python fence inside a content tab is found and run (pytest-markdown-docs alone skips it)."""
    page = BAD_PAGE.split("```console")[0] + BAD_PAGE.split("```\n\n", 2)[-1]
    result = _pytest(_scratch_project(tmp_path, {"tab.md": page}))
    assert result.returncode == 1, result.stdout
    assert "docs/tab.md:" in result.stdout and "python fence raised" in result.stdout, result.stdout
    assert "hidden in a tab" in result.stdout, result.stdout


def _site_project(tmp_path: Path, index: str) -> Path:
    project = tmp_path / "site-project"
    (project / "docs").mkdir(parents=True)
    (project / "snippets").mkdir()
    (project / "snippets" / "hello.py").write_text("print('hello')\n")
    (project / "docs" / "index.md").write_text(index)
    (project / "docs" / "other.md").write_text("# Other\n\n## Real section\n\nText.\n")
    (project / "mkdocs.yml").write_text(
        f"INHERIT: {REPO / 'mkdocs.yml'}\n"
        "docs_dir: docs\n"
        "extra_javascript: []\n"
        "extra_css: []\n"
        "hooks: []\n"  # project hooks (runbook pages) need the real repository
        "nav:\n  - index.md\n  - other.md\n"
    )
    return project


GOOD_INDEX = '# Home\n\nSee [a section](other.md#real-section).\n\n```python\n--8<-- "hello.py"\n```\n'
BROKEN = {
    "link": ("[gone](missing-page.md)", "missing-page.md"),
    "anchor": ("[gone](other.md#no-such-section)", "no-such-section"),
    "snippet": ('```python\n--8<-- "no-such-snippet.py"\n```', "no-such-snippet.py"),
}


@pytest.fixture(scope="module")
def scratch_builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, Path]]:
    """Build the good scratch site and one broken variant per defect (in parallel, via build_site)."""
    variants = [("good", ""), *((k, v[0]) for k, v in BROKEN.items())]
    projects = {name: _site_project(tmp_path_factory.mktemp(name), GOOD_INDEX + "\n" + extra + "\n") for name, extra in variants}

    def build(name: str) -> tuple[str, tuple[int, str, Path]]:
        project = projects[name]
        result = build_site(project / "mkdocs.yml", project / "site", cwd=project)
        return name, (result.returncode, result.stdout, project / "site")

    with ThreadPoolExecutor(max_workers=len(projects)) as pool:
        return dict(pool.map(build, projects))


def test_scratch_site_without_defects_builds(scratch_builds) -> None:
    rc, out, site = scratch_builds["good"]
    assert rc == 0, out
    assert "print(&#39;hello&#39;)" in (site / "index.html").read_text() or "hello" in (site / "index.html").read_text()


@pytest.mark.parametrize("defect", sorted(BROKEN))
def test_strict_build_fails_on(scratch_builds, defect: str) -> None:
    rc, out, _ = scratch_builds[defect]
    assert rc != 0, f"{defect}: strict build passed:\n{out}"
    assert BROKEN[defect][1] in out, out
