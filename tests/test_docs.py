"""README stays short enough to read in five minutes, and every link in it and in the guide
(docs/) leads somewhere: the file exists, and a ``#fragment`` names one of its headings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO

PAGES = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]+\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    return {slug(m[1]) for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}


def test_slug_is_githubs() -> None:
    assert slug("Install: locked versions, and upstream drift") == (
        "install-locked-versions-and-upstream-drift"
    )
    assert slug("`sweep init` and `sweep validate`") == "sweep-init-and-sweep-validate"


def test_readme_is_read_in_five_minutes() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines: move detail to docs/"


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_every_link_leads_somewhere(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            broken.append(f"{target}: {linked.name} has no heading #{fragment}")
    assert broken == [], f"{page.relative_to(REPO)}: {broken}"


def test_the_readme_links_every_page_of_the_guide() -> None:
    readme = (REPO / "README.md").read_text()
    unlinked = [p.name for p in (REPO / "docs").glob("*.md") if f"](docs/{p.name}" not in readme]
    assert unlinked == []
