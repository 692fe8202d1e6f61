"""Build the site with ``mkdocs build --strict`` and check the built HTML independently.

The HTML checks do not trust mkdocs or htmlproofer: they parse every built page and verify that
no asset comes from another host and that every internal link and anchor resolves.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

#: Hosts that plain prose links (<a href>) may point to. Never assets.
PROSE_LINK_HOSTS = frozenset({"squidfunk.github.io", "www.mkdocs.org", "mkdocs.org"})
#: Link relations that only name a page (nothing is fetched).
NON_FETCHING_RELS = frozenset({"canonical", "alternate", "author", "license", "next", "prev"})
_CSS_URL = re.compile(r"""(?:url\(\s*['"]?|@import\s+['"])\s*((?:https?:)?//[^'")\s]+)""", re.I)


def build_site(config_file: Path, site_dir: Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``mkdocs build --strict``; returns the finished process (output in ``stdout``)."""
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(config_file), "-d", str(site_dir)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


@dataclass
class Ref:
    """One URL a page references."""

    tag: str
    attr: str
    url: str
    rel: str = ""


@dataclass
class ParsedPage:
    ids: set[str] = field(default_factory=set)
    refs: list[Ref] = field(default_factory=list)
    css: list[str] = field(default_factory=list)
    classes: set[str] = field(default_factory=set)


class _Parser(HTMLParser):
    URL_ATTRS = {"href", "src", "data", "action", "poster", "srcset"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = ParsedPage()
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if "id" in values:
            self.page.ids.add(values["id"])
        if tag == "a" and "name" in values:
            self.page.ids.add(values["name"])
        self.page.classes.update(values.get("class", "").split())
        for attr in self.URL_ATTRS & values.keys():
            urls = [part.split()[0] for part in values[attr].split(",") if part.strip()] if attr == "srcset" else [values[attr]]
            for url in urls:
                self.page.refs.append(Ref(tag, attr, url.strip(), values.get("rel", "")))
        if "style" in values:
            self.page.css.append(values["style"])
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.page.css.append(data)


def parse_html(path: Path) -> ParsedPage:
    parser = _Parser()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return parser.page


def html_files(site_dir: Path) -> list[Path]:
    return sorted(site_dir.rglob("*.html"))


def _is_external(url: str) -> bool:
    return bool(re.match(r"^(?:[a-z][a-z0-9+.-]*:)?//", url, re.I))


def external_references(site_dir: Path, prose_hosts: frozenset[str] = PROSE_LINK_HOSTS) -> list[str]:
    """Every reference to another host that is not an allowed plain prose link."""
    problems: list[str] = []
    for html in html_files(site_dir):
        page = parse_html(html)
        rel_name = html.relative_to(site_dir)
        for ref in page.refs:
            if not _is_external(ref.url):
                continue
            host = urlsplit(ref.url if "//" in ref.url[:8] else "http:" + ref.url).hostname or ""
            if ref.tag == "a" and ref.attr == "href":
                if host not in prose_hosts:
                    problems.append(f"{rel_name}: link to {ref.url} (host {host} not in the prose allow-list)")
            elif ref.tag == "link" and set(ref.rel.split()) <= NON_FETCHING_RELS and ref.rel:
                continue
            else:
                problems.append(f"{rel_name}: <{ref.tag} {ref.attr}={ref.url!r}> loads from another host")
        for css in page.css:
            problems += [f"{rel_name}: inline CSS loads {m}" for m in _CSS_URL.findall(css)]
    for css_file in sorted(site_dir.rglob("*.css")):
        text = css_file.read_text(encoding="utf-8", errors="replace")
        problems += [f"{css_file.relative_to(site_dir)}: CSS loads {m}" for m in _CSS_URL.findall(text)]
    return problems


def broken_internal_links(site_dir: Path) -> list[str]:
    """Internal links whose target file or ``#anchor`` does not exist in the built site."""
    pages = {html.resolve(): parse_html(html) for html in html_files(site_dir)}
    root = site_dir.resolve()
    problems: list[str] = []
    for html, page in pages.items():
        for ref in page.refs:
            url = ref.url
            if not url or _is_external(url) or re.match(r"^[a-z][a-z0-9+.-]*:", url, re.I):
                continue  # mailto:, data:, javascript: ...
            parts = urlsplit(url)
            path = unquote(parts.path)
            if not path:
                target = html
            else:
                base = root if path.startswith("/") else html.parent
                target = (base / path.lstrip("/")).resolve()
                if path.endswith("/") or target.is_dir():
                    target = target / "index.html"
            where = f"{html.relative_to(root)}: {ref.tag}[{ref.attr}]={url}"
            if not target.is_relative_to(root):
                problems.append(f"{where} points outside the site")
            elif not target.exists():
                problems.append(f"{where}: {target.relative_to(root)} does not exist")
            elif parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else parse_html(target).ids
                if unquote(parts.fragment) not in ids:
                    problems.append(f"{where}: no element with id {parts.fragment!r} on {target.relative_to(root)}")
    return problems
