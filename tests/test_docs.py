"""README and docs/: a short README with CI's two blocks, links that resolve, commands that exist, no issue numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers import REPO

PAGES = [
    REPO / "README.md",
    *sorted((REPO / "docs").glob("*.md")),
    REPO / "benchmarks" / "README.md",
    REPO / "scripts" / "README.md",
    REPO / "results" / "README.md",
]
PLANNED: set[Path] = set()  # documents linked before they are written (none now)


def test_readme_is_short_and_has_exactly_the_two_ci_blocks() -> None:
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    blocks = re.findall(r"<!-- ci -->\s*```(?:bash|sh)\n(.*?)```", text, flags=re.S)  # what .ci/run extracts
    assert blocks == [
        "pip install -c constraints.txt . && bpbench run quick\n",
        'pip install -c constraints.txt ".[test]" && python -m pytest\n',
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page: Path) -> None:
    text = page.read_text()
    missing = []
    for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", text):
        if target.startswith(("http://", "https://")):
            continue
        path = (page.parent / target).resolve() if target else page
        if path in PLANNED and not path.exists():
            continue
        if not path.exists():
            missing.append(target)
        elif anchor and path.suffix == ".md":
            headings = {
                re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
                for h in re.findall(r"^#+ (.+)$", path.read_text(), flags=re.M)
            }
            if anchor not in headings:
                missing.append(f"{target}#{anchor}")
    assert missing == []


@pytest.mark.parametrize(
    "page",
    [p for p in PAGES if p.name != "changelog.md"],  # it names old paths on purpose
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_python_m_commands_name_existing_modules(page: Path) -> None:
    modules = set(re.findall(r"python -m ((?:benchmarks|scripts)\.[a-z_0-9]+)\b", page.read_text()))
    assert [m for m in sorted(modules) if not (REPO / (m.replace(".", "/") + ".py")).is_file()] == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_issue_numbers(page: Path) -> None:
    assert re.findall(r"(?i)\bissues? #?\d+|#\d{1,4}\b(?!\))", page.read_text()) == []
