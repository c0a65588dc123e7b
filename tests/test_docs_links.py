"""Every relative link in the README and docs/ leads to a file of the repository.

The README's reference text lives in docs/ pages that link to each other; a page moved or renamed, or a link
copied from the README into docs/ (where ``docs/X.md`` means ``docs/docs/X.md``), would send a reader nowhere.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")  # [text](target) and ![alt](image)


def _relative_links(page: Path) -> list[str]:
    """The link targets of ``page`` that are paths in the repository (no URL, no in-page anchor)."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)  # code blocks hold no links
    return [t for t in _LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def test_the_docs_pages_exist_and_have_links():
    assert len(PAGES) >= 7 and all(p.exists() for p in PAGES)
    assert _relative_links(ROOT / "README.md")  # the pattern finds the README's links to docs/


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_leads_to_a_file(page):
    broken = [t for t in _relative_links(page) if not (page.parent / t.split("#", 1)[0]).exists()]
    assert not broken, f"{page.relative_to(ROOT)} links to {broken}, which do not exist from {page.parent.relative_to(ROOT) or '.'}"


def test_every_published_result_file_is_named_by_a_page():
    """Each result file under benchmarks/results is named on a docs page or the README (where its figures and
    command are), and each plot has its JSON: a reviewer finds what every file is. --quick and partial outputs are
    a local run's, git-ignored, and not published."""
    results = ROOT / "benchmarks" / "results"
    text = " ".join(p.read_text(encoding="utf-8") for p in PAGES)
    published = [f for f in sorted(results.glob("*.json")) if not f.name.endswith(("_quick.json", ".partial.json"))]
    assert len(published) >= 20
    unnamed = [f.name for f in published if f"results/{f.name}" not in text]
    assert not unnamed, f"result files no page names: {unnamed}"
    orphans = [f.name for f in sorted(results.glob("*.png")) if not f.with_suffix(".json").exists()]
    assert not orphans, f"plots without their result file: {orphans}"
