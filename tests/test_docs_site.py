"""The README stays a short front door whose links land, and the docs site stays whole.

`mkdocs build --strict` in .ci/run checks the site's own links and anchors; these tests check what
it cannot see (the README, which is not part of the site) and what must hold without MkDocs
installed (the nav lists every page, the set-up commands agree, CI builds the site).
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from pathlib import Path

from conftest import REPO

README = REPO / "README.md"
DOCS = REPO / "docs"
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^\s*(```|~~~)")


def _prose(text: str) -> str:
    """The text outside fenced code blocks (links inside code are not links)."""
    kept, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            kept.append(line)
    return "\n".join(kept)


def _slug(heading: str) -> str:
    """The anchor Python-Markdown's toc gives a heading (what MkDocs and our links use)."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(page: Path) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"(?m)^#{1,6} (.+)$", _prose(page.read_text()))}


def _setup_block(text: str) -> list[str]:
    block = text.split("```", 2)[1]
    return [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines() if line.strip()]


def test_the_readme_is_a_front_door_of_at_most_200_lines() -> None:
    assert len(README.read_text().splitlines()) <= 200


def test_every_link_and_image_in_the_readme_lands() -> None:
    links = _LINK.findall(_prose(README.read_text()))
    assert len(links) >= 15  # the "where to go next" table is there
    for link in links:
        if re.match(r"^[a-z]+://", link):
            continue
        path, _, anchor = link.partition("#")
        target = (REPO / path).resolve()
        assert target.is_file(), f"README.md links to {link}, which does not exist"
        assert target.is_relative_to(REPO), link
        if anchor:
            assert anchor in _anchors(target), f"README.md: {path} has no heading #{anchor}"


def test_the_readme_figure_is_a_committed_report_figure_and_the_site_shows_it_too() -> None:
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README.read_text())
    # The front door's picture is a real report's figure; a later one (the history dashboard's
    # chart, which issue 27 asks the README to show) must still be a committed file.
    assert images and images[0].startswith("reports/cpu-2vcpu-quick/figures/")
    assert all((REPO / i).is_file() for i in images), images
    site_copy = DOCS / "assets" / "report-throughput-cnn-tiny.png"
    assert site_copy.resolve() == (REPO / images[0]).resolve()  # a link, never a stale copy


def test_the_slug_rule_matches_the_anchors_the_pages_link_to() -> None:
    assert _slug("Measured: a quiet 2-vCPU box") == "measured-a-quiet-2-vcpu-box"
    assert _slug("Where cells run: `--executor NAME`") == "where-cells-run-executor-name"


def test_the_set_up_commands_agree_between_the_readme_and_the_site() -> None:
    readme = _setup_block(README.read_text().split("## Set-up: two commands", 1)[1])
    install = _setup_block((DOCS / "getting-started" / "install.md").read_text()
                           .split("## Set-up: two commands", 1)[1])
    home = _setup_block((DOCS / "index.md").read_text().split("## Start here", 1)[1])
    assert readme == install == home


def test_the_nav_lists_every_page_and_every_entry_is_a_page() -> None:
    config = (REPO / "mkdocs.yml").read_text()
    nav = config.split("\nnav:\n", 1)[1]
    entries = re.findall(r"(?m)^\s+- (?:[^:\n]+: )?(\S+\.md)\s*$", nav)  # commented ones skipped
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")
             if not p.relative_to(DOCS).parts[0] == "pending"}
    assert sorted(entries) == sorted(set(entries)), "a page is listed twice"
    assert set(entries) == pages
    assert entries[0] == "index.md"


def test_ci_builds_the_site_strictly_with_the_pinned_docs_extra() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"(?m)^[^#\n]*mkdocs build --strict", ci)
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["docs"] == ["mkdocs==1.6.1", "mkdocs-material==9.8.2"]
    installs = re.findall(r"-e '\.\[([a-z,]+)\]'", (REPO / "setup.sh").read_text())
    # The two `--test` installs (with and without the models extra) bring the docs extra; the plain
    # install (no test tools) need not.
    test_installs = [extras for extras in installs if "test" in extras.split(",")]
    assert len(test_installs) == 2 and all("docs" in extras.split(",") for extras in test_installs)
    assert re.search(r"(?m)^/site/$", (REPO / ".gitignore").read_text())
