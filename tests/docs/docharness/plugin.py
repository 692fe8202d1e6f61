"""The pytest plugin that runs the site's shell, console and hidden Python fences.

Registered globally by the repository-root ``conftest.py`` (so it also sees ``docs/``, outside ``tests/``).
For each page under ``docs/`` it collects one item per fence that :func:`gate.classify` assigns
to us, orders them together with pytest-markdown-docs' items by line, gives each page one
:class:`PageSession` (scratch dir; also the cwd of the page's Python fences) and closes it after
the page's last item.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from docharness.fences import BASH_LANGS, CONSOLE_LANGS, PYTHON_LANGS, Fence
from docharness.gate import DOCHARNESS, Coverage, doc_pages, page_fences
from docharness.runner import DEFAULT_TIMEOUT_S, BlockFailure, PageSession

COVERAGE_KEY = pytest.StashKey[Coverage]()


class FenceItem(pytest.Item):
    """One fence run by the harness."""

    def __init__(self, *, fence: Fence, plugin: DocsPlugin, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fence = fence
        self.plugin = plugin
        self.page_key = fence.path.resolve()

    def runtest(self) -> None:
        session = self.plugin.session_for(self.page_key)
        self.plugin.skip_if_page_broken(self.page_key, self.fence.where(self.config.rootpath))
        fence = self.fence
        timeout = float(fence.attrs.get("timeout", DEFAULT_TIMEOUT_S))
        if fence.lang in BASH_LANGS:
            session.run_bash_block(fence.body, fence.body_line, timeout)
        elif fence.lang in CONSOLE_LANGS:
            session.run_console_block(fence.body, fence.body_line, timeout)
        elif fence.lang in PYTHON_LANGS:
            session.run_python_block(fence.body, fence.body_line, str(fence.path))
        else:  # pragma: no cover - classify() only hands us the languages above
            raise BlockFailure(f"no runner for {fence.lang}")

    def repr_failure(self, excinfo, style=None):  # type: ignore[override]
        where = self.fence.where(self.config.rootpath)
        if isinstance(excinfo.value, BlockFailure):
            if excinfo.value.line is not None:
                where = f"{where.rsplit(':', 1)[0]}:{excinfo.value.line}"
            return f"{where}: {self.fence.lang} fence failed: {excinfo.value}"
        # Python blocks: the traceback's frames carry page line numbers (see run_python_block)
        return f"{where}: {self.fence.lang} fence raised\n{super().repr_failure(excinfo, style)}"

    def reportinfo(self):
        return self.fence.path, self.fence.line - 1, f"{self.fence.where(self.config.rootpath)} [{self.fence.lang}]"


class DocPage(pytest.File):
    """A docs page: yields the fences the harness runs."""

    plugin: DocsPlugin

    def collect(self):
        for fence, verdict in page_fences(self.path):
            if verdict.runner == DOCHARNESS:
                yield FenceItem.from_parent(
                    self, name=f"[{fence.lang}][line:{fence.line}]", fence=fence, plugin=self.plugin
                )


def _page_of(item: pytest.Item | None, docs_dir: Path) -> Path | None:
    """The docs page an item belongs to (ours or pytest-markdown-docs'), else None."""
    if item is None:
        return None
    if isinstance(item, FenceItem):
        return item.page_key
    if type(item).__name__ == "MarkdownInlinePythonItem":
        path = Path(str(item.path)).resolve()
        if path.suffix == ".md" and path.is_relative_to(docs_dir):
            return path
    return None


class DocsPlugin:
    """Global plugin object (one per pytest run)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.repo = Path(config.rootpath).resolve()
        self.docs_dir = self.repo / "docs"
        self.sessions: dict[Path, PageSession] = {}
        self.failed: dict[Path, str] = {}  # page -> item that failed first
        self._pages = {p.resolve() for p in doc_pages(self.docs_dir)} if self.docs_dir.is_dir() else set()

    def session_for(self, page: Path) -> PageSession:
        if page not in self.sessions:
            self.sessions[page] = PageSession(str(page.relative_to(self.repo)), self.repo)
        return self.sessions[page]

    def skip_if_page_broken(self, page: Path, where: str) -> None:
        """Later blocks depend on earlier ones, like a reader's terminal: stop the page at its first failure."""
        failed = self.failed.get(page)
        if failed:
            pytest.skip(f"{where} not run: an earlier block of this page failed ({failed})")

    def close_page(self, page: Path) -> None:
        session = self.sessions.pop(page, None)
        if session is not None:
            session.close()

    @pytest.hookimpl
    def pytest_collect_file(self, file_path: Path, parent: pytest.Collector):
        if file_path.suffix == ".md" and file_path.resolve() in self._pages:
            page = DocPage.from_parent(parent, path=file_path)
            page.plugin = self
            return page
        return None

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """Interleave both plugins' items of each page in line order (state flows down the page)."""
        slots = [i for i, item in enumerate(items) if _page_of(item, self.docs_dir)]
        if not slots:
            return
        doc_items = [items[i] for i in slots]
        first_seen: dict[Path, int] = {}
        for n, item in enumerate(doc_items):
            first_seen.setdefault(_page_of(item, self.docs_dir), n)  # type: ignore[arg-type]

        def key(item: pytest.Item) -> tuple[int, int]:
            page = _page_of(item, self.docs_dir)
            line = item.fence.line if isinstance(item, FenceItem) else int(item.start_line)  # type: ignore[attr-defined]
            return first_seen[page], line  # type: ignore[index]

        for slot, item in zip(slots, sorted(doc_items, key=key), strict=True):
            items[slot] = item

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item):
        """pytest-markdown-docs' Python fences run with cwd = their page's scratch dir."""
        page = _page_of(item, self.docs_dir)
        if page is None or isinstance(item, FenceItem):
            return (yield)
        self.skip_if_page_broken(page, f"{page.relative_to(self.repo)}:{item.start_line}")  # type: ignore[attr-defined]
        with self.session_for(page).python_context():
            return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        report = yield
        page = _page_of(item, self.docs_dir)
        if page is not None and report.failed and page not in self.failed:
            self.failed[page] = item.nodeid
        return report

    @pytest.hookimpl
    def pytest_runtest_teardown(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        page = _page_of(item, self.docs_dir)
        if page is not None and page != _page_of(nextitem, self.docs_dir):
            self.close_page(page)

    @pytest.hookimpl
    def pytest_sessionfinish(self) -> None:
        for page in list(self.sessions):
            self.close_page(page)

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter) -> None:
        coverage = self.config.stash.get(COVERAGE_KEY, None)
        if coverage is None:
            return
        terminalreporter.section("docs fence coverage")
        for line in coverage.summary_lines():
            terminalreporter.write_line(line)
        for entry in coverage.errors:
            terminalreporter.write_line(f"  NOT RUN {entry.where} ({entry.kind}): {entry.error}")
