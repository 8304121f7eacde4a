"""Table excerpts in the docs, checked (and rewritten) against the committed table they show.

An excerpt sits between two HTML comments (invisible in rendered markdown)::

    <!-- excerpt quick/table.md task=mnist5k columns=learner|test acc|verdict -->
    | learner | test acc | verdict |
    ...
    <!-- /excerpt -->

and must equal the rows of ``results/quick/table.md`` whose ``task`` cell (its budget dagger dropped)
is ``mnist5k``, in the table's order, with the named columns (``|``-separated header names); a
``mean ± half-width`` cell is shown as its mean. ``python -m scripts.check_quotes`` reports an
excerpt that differs and ``--fix`` rewrites it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

EXCERPT = re.compile(r"<!-- excerpt (?P<spec>[^>]*?) -->\n(?P<body>.*?)<!-- /excerpt -->", re.S)


@dataclass(frozen=True)
class Excerpt:
    path: Path
    line: int
    spec: str
    body: str
    span: tuple[int, int]  # of the body in the file's text


def excerpts(path: Path) -> list[Excerpt]:
    text = path.read_text()
    return [
        Excerpt(path, text.count("\n", 0, m.start()) + 1, m.group("spec"), m.group("body"), m.span("body"))
        for m in EXCERPT.finditer(text)
    ]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def render(spec: str, results: Path) -> str:
    """The excerpt ``spec`` names, as markdown (ValueError saying why it cannot be drawn)."""
    match = re.fullmatch(r"(?P<file>\S+) task=(?P<task>\S+) columns=(?P<columns>.+)", spec.strip())
    if match is None:
        raise ValueError("expected FILE task=TASK columns=NAME|NAME|...")
    source = (results / match["file"]).resolve()
    if results.resolve() not in source.parents or not source.is_file() or source.suffix != ".md":
        raise ValueError(f"no markdown table results/{match['file']}")
    lines = [line for line in source.read_text().splitlines() if line.startswith("|")]
    header, rows = _cells(lines[0]), [_cells(line) for line in lines[2:]]
    columns = match["columns"].split("|")
    missing = [c for c in [*columns, "task"] if c not in header]
    if missing:
        raise ValueError(f"no column(s) {missing} in {match['file']}")
    mine = [row for row in rows if row[header.index("task")].rstrip("†") == match["task"]]
    if not mine:
        raise ValueError(f"no row of {match['file']} has task {match['task']!r}")
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join(":---" for _ in columns) + "|"]
    for row in mine:
        out.append("| " + " | ".join(row[header.index(c)].split(" ± ")[0] for c in columns) + " |")
    return "\n".join(out) + "\n"


def mismatched(path: Path, results: Path) -> list[tuple[Excerpt, str]]:
    """(excerpt, the text it should have, or ``unreadable: why``) for each excerpt of ``path`` that differs."""
    bad = []
    for excerpt in excerpts(path):
        try:
            expected = render(excerpt.spec, results)
        except ValueError as exc:
            bad.append((excerpt, f"unreadable: {exc}"))
            continue
        if expected != excerpt.body:
            bad.append((excerpt, expected))
    return bad


def rewrite(path: Path, bad: list[tuple[Excerpt, str]]) -> int:
    """Replace each readable mismatched excerpt of ``path`` by its table's; returns how many."""
    text = path.read_text()
    done = 0
    for excerpt, expected in sorted(bad, key=lambda b: -b[0].span[0]):
        if not expected.startswith("unreadable"):
            start, end = excerpt.span
            text, done = text[:start] + expected + text[end:], done + 1
    path.write_text(text)
    return done
