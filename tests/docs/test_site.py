"""The real site: strict build, offline assets, valid internal links and anchors."""

from __future__ import annotations

from docharness.site import broken_internal_links, external_references, html_files, parse_html


def test_site_builds_with_strict(built_site) -> None:
    built_site.require_ok()
    assert (built_site.site_dir / "index.html").is_file()


def test_site_references_no_external_host(built_site) -> None:
    built_site.require_ok()
    assert html_files(built_site.site_dir), "the build produced no HTML"
    problems = external_references(built_site.site_dir)
    assert not problems, "external references in the built site:\n" + "\n".join(problems)


def test_internal_links_and_anchors_resolve(built_site) -> None:
    built_site.require_ok()
    problems = broken_internal_links(built_site.site_dir)
    assert not problems, "broken internal links in the built site:\n" + "\n".join(problems)


def test_mermaid_diagrams_render_offline(built_site) -> None:
    """Material fetches mermaid from a CDN unless the page already defines it: we ship it."""
    built_site.require_ok()
    vendored = built_site.site_dir / "assets" / "javascripts" / "vendor" / "mermaid.min.js"
    pages_with_diagrams = [p for p in html_files(built_site.site_dir) if "mermaid" in parse_html(p).classes]
    assert pages_with_diagrams, "no page has a mermaid diagram (the architecture guide should)"
    assert vendored.is_file() and vendored.stat().st_size > 1_000_000
    for page in pages_with_diagrams:
        srcs = [r.url for r in parse_html(page).refs if r.tag == "script"]
        assert any(s.endswith("vendor/mermaid.min.js") for s in srcs), f"{page} does not load the local mermaid"
