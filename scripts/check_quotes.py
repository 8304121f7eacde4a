"""Check (or fix) every number the docs quote from a committed results table.

A quoted number carries a mark-up right after it, an HTML comment (invisible in rendered
markdown; inside a TOML comment line it is plain text)::

    accuracy .851<!-- q modern/table.csv learner=fwd_grad_activity,task=mnist5k test_acc_mean -->
    11 runs failed<!-- q vanishing/metadata.json runs_failed -->
    6.2 points<!-- q tuned/table.csv learner=ff,task=digits diff_mean x100 abs -->

Fields: the file under ``results/`` (a ``.csv`` table, or ``metadata.json``), the row (``key=value``
pairs joined by commas that select exactly one row of the csv, a ``;`` in a value standing for a
configuration label's ", "; ``-`` for json), the column (a dotted
key for json), then optional transforms applied in order: ``x100`` (a fraction as points or percent),
``giga`` (FLOPs as GFLOPs), ``abs``, ``neg``. The quoted number must equal the value rounded to the
decimals it is written with
(``.851``: 3 decimals; ``6–8`` forms are quoted one number at a time; ``8e-9``: its significant digits).

``python -m scripts.check_quotes`` lists every mismatch (file:line, quoted, found) and exits 1 if any;
``--fix`` rewrites each mismatched number in place at the precision it was written with.
Scanned: README.md, docs/*.md, experiments/plan/studies/*.toml. Table excerpts (``scripts/table_excerpts.py``)
are checked and fixed with them.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from scripts import table_excerpts
from scripts.table_excerpts import Excerpt

ROOT = Path(__file__).resolve().parent.parent
NUMBER = r"[−-]?(?:\d+(?:\.\d+)?|\.\d+)(?:e[−-]?\d+)?"
QUOTE = re.compile(rf"(?P<number>{NUMBER})<!-- q (?P<spec>[^>]*?) -->")
TRANSFORMS = {"x100": lambda v: v * 100, "giga": lambda v: v / 1e9, "abs": abs, "neg": lambda v: -v}


@dataclass(frozen=True)
class Quote:
    path: Path
    line: int
    number: str
    spec: str
    span: tuple[int, int]  # of the number in the file's text


@dataclass(frozen=True)
class Mismatch:
    quote: Quote
    found: str  # the table's value written as the quote is written, or why it cannot be read

    def __str__(self) -> str:
        where = f"{self.quote.path.relative_to(ROOT)}:{self.quote.line}"
        return f"{where}: quoted {self.quote.number}, table says {self.found}  [{self.quote.spec}]"


def documents(root: Path = ROOT) -> list[Path]:
    """The files whose quotes are checked."""
    return [
        root / "README.md",
        *sorted((root / "docs").glob("*.md")),
        *sorted(root.glob("experiments/plan/studies/*.toml")),
    ]


def quotes(path: Path) -> list[Quote]:
    text = path.read_text()
    return [
        Quote(path, text.count("\n", 0, m.start()) + 1, m.group("number"), m.group("spec").strip(), m.span("number"))
        for m in QUOTE.finditer(text)
    ]


def _value(spec: str, results: Path) -> float:
    """The number ``spec`` names (see the module doc); ValueError saying why it cannot be read."""
    fields = spec.split()
    if len(fields) < 3:
        raise ValueError("expected FILE ROW COLUMN [x100] [abs] [neg]")
    file, row, column, *transforms = fields
    source = (results / file).resolve()
    if results.resolve() not in source.parents or not source.is_file():
        raise ValueError(f"no file results/{file}")
    if source.suffix == ".json":
        value: object = json.loads(source.read_text())
        for key in column.split("."):
            if not isinstance(value, dict) or key not in value:
                raise ValueError(f"no key {column!r} in {file}")
            value = value[key]
    else:
        table = pd.read_csv(source, keep_default_na=False, na_values=[""], dtype={"config": str}).fillna({"config": ""})
        if column not in table:
            raise ValueError(f"no column {column!r} in {file}")
        mask = pd.Series(True, index=table.index)
        for pair in row.split(","):
            key, _, wanted = pair.partition("=")
            wanted = wanted.replace(";", ", ")  # a config label's own ", " (the row's pairs use ",")
            if key not in table:
                raise ValueError(f"no column {key!r} in {file}")
            mask &= table[key].astype(str) == wanted
        if mask.sum() != 1:
            raise ValueError(f"{int(mask.sum())} rows of {file} match {row!r} (need exactly 1)")
        value = table.loc[mask, column].iloc[0]
    number = float(value)  # type: ignore[arg-type]
    for name in transforms:
        if name not in TRANSFORMS:
            raise ValueError(f"unknown transform {name!r}; allowed: {', '.join(TRANSFORMS)}")
        number = TRANSFORMS[name](number)
    return number


def written_like(value: float, quoted: str) -> str:
    """``value`` written as ``quoted`` is: its decimals (or significant digits in e-notation),
    its leading zero or not, its minus sign."""
    plain = quoted.replace("−", "-")
    if math.isnan(value):
        return "nan"
    if "e" in plain:
        mantissa = plain.split("e")[0].lstrip("-")
        digits = len(mantissa.replace(".", "").lstrip("0")) or 1
        text = f"{value:.{digits - 1}e}"
        base, exp = text.split("e")
        text = f"{base}e{int(exp)}"
    else:
        decimals = len(plain.split(".")[1]) if "." in plain else 0
        text = f"{value:.{decimals}f}"
        if plain.lstrip("-").startswith(".") and text.lstrip("-").startswith("0."):
            text = text.replace("0.", ".", 1)
    if text.lstrip("-") == plain.lstrip("-").replace("+", "") and float(text) == 0:
        text = text.lstrip("-")
    return text.replace("-", "−") if "−" in quoted else text


def check(root: Path = ROOT) -> tuple[list[Quote], list[Mismatch]]:
    """(every quote found, the mismatches)."""
    found, bad = [], []
    for path in documents(root):
        for quote in quotes(path):
            found.append(quote)
            try:
                expected = written_like(_value(quote.spec, root / "results"), quote.number)
            except ValueError as exc:
                bad.append(Mismatch(quote, f"unreadable: {exc}"))
                continue
            if expected.replace("−", "-") != quote.number.replace("−", "-"):
                bad.append(Mismatch(quote, expected))
    return found, bad


def fix(mismatches: list[Mismatch]) -> int:
    """Rewrite each readable mismatched number in place; returns how many were rewritten."""
    by_path: dict[Path, list[Mismatch]] = {}
    for m in mismatches:
        if not m.found.startswith("unreadable"):
            by_path.setdefault(m.quote.path, []).append(m)
    for path, items in by_path.items():
        text = path.read_text()
        for m in sorted(items, key=lambda m: -m.quote.span[0]):
            start, end = m.quote.span
            text = text[:start] + m.found + text[end:]
        path.write_text(text)
    return sum(len(v) for v in by_path.values())


def check_excerpts(root: Path = ROOT) -> dict[Path, list[tuple[Excerpt, str]]]:
    """Per document with a table excerpt that differs from its table: (excerpt, what it should be)."""
    found = {path: table_excerpts.mismatched(path, root / "results") for path in documents(root)}
    return {path: bad for path, bad in found.items() if bad}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fix", action="store_true", help="rewrite mismatched numbers and excerpts from the tables")
    args = parser.parse_args(argv)
    found, bad = check()
    stale = check_excerpts()
    for m in bad:
        print(m)
    for path, items in stale.items():
        for excerpt, expected in items:
            why = expected if expected.startswith("unreadable") else "differs from its table"
            print(f"{path.relative_to(ROOT)}:{excerpt.line}: table excerpt {why}  [{excerpt.spec}]")
    if args.fix and (bad or stale):
        rewritten = sum(table_excerpts.rewrite(path, items) for path, items in stale.items())
        print(f"rewrote {fix(bad)} number(s) and {rewritten} excerpt(s); the words around them may need reading again")
        return 0
    print(
        f"{len(found)} quoted numbers checked, {len(bad)} mismatched; {sum(map(len, stale.values()))} stale excerpt(s)"
    )
    return 1 if bad or stale else 0


if __name__ == "__main__":
    sys.exit(main())
