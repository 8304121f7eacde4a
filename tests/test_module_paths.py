"""Every module path the code's docstrings and comments and the docs name exists, and each room's
``__init__`` names all its modules.

A path is a dotted module name (``bpbench.experiments.run.runner``, ``experiments.plan.study``,
``learners.base.Learner``: the module must exist and the first name after it be defined at its top
level) or a file path (``experiments/plan/study.py``, ``run/runner.py`` inside a room's text).
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from functools import cache
from pathlib import Path

import pytest

from helpers import REPO

PACKAGES = {"experiments": REPO / "experiments", "learners": REPO / "learners", "tasks": REPO / "tasks"}
ROOMS = ("plan", "run", "schedule", "store", "report", "front")
SOURCES = sorted(p for d in ("bpbench", *PACKAGES) for p in (REPO / d).rglob("*.py"))
# docs/changelog.md is history: it names the old paths of renamed files on purpose
PAGES = [REPO / "README.md", *sorted(p for p in (REPO / "docs").glob("*.md") if p.name != "changelog.md")]
PLACEHOLDER = re.compile(r"[A-Z]{2,}")  # experiments/plan/studies/NAME.toml: a pattern, not a file
# dotted: bpbench.x.y, experiments.x.y, learners.x, tasks.x (a TOML table such as [learners.backprop] or
# tasks.{label} is not one: it follows "[" or is followed by "{" / "=")
DOTTED = re.compile(r"(?<![\w.\[/{-])(?:bpbench\.)?(?:experiments|learners|tasks)(?:\.[A-Za-z_]\w*)+(?![\w{(=/-])")
SLASHED = re.compile(
    r"(?<![\w./-])((?:experiments|learners|tasks|tests|scripts|benchmarks|docs|"
    + "|".join(ROOMS)
    + r")/[\w/]+\.(?:py|md|toml))\b"
)


def texts(path: Path) -> list[str]:
    """A page's text, or a Python file's docstrings and comments."""
    source = path.read_text()
    if path.suffix == ".md":
        return [source]
    out = [tok.string for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                out.append(doc)
    return out


@cache
def top_names(module: Path) -> frozenset[str]:
    """Names a module defines at its top level (functions, classes, assignments, imports)."""
    names: set[str] = set()
    for node in ast.parse(module.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return frozenset(names)


def dotted_exists(name: str) -> bool:
    """``[bpbench.]package.sub.module[.Name...]``: the module exists and defines ``Name``."""
    parts = name.removeprefix("bpbench.").split(".")
    where = PACKAGES[parts[0]]
    for i, part in enumerate(parts[1:], start=1):
        if (where / part).is_dir():
            where = where / part
            continue
        if (where / f"{part}.py").is_file():
            rest = parts[i + 1 :]
            return not rest or rest[0] in top_names(where / f"{part}.py")
        init = where / "__init__.py"
        return init.is_file() and part in top_names(init) | exported(init)
    return True


def exported(init: Path) -> set[str]:
    """The lazily exported names of a package ``__init__`` (its ``_EXPORTS`` keys)."""
    return set(re.findall(r'^\s+"(\w+)": "\w+",$', init.read_text(), flags=re.M))


def slashed_exists(path: str, source: Path) -> bool:
    """A file path, from the repository root, ``experiments/`` (a room's ``run/runner.py``) or the page's folder."""
    bases = (REPO, REPO / "experiments", source.parent)
    return any((base / path).exists() for base in bases)


def named_paths(path: Path) -> list[tuple[str, bool]]:
    """(path named, exists) for every module or file path named in ``path``'s text. In a page, a
    bare ``learners.backprop.lr`` is a study key (``--set``), so only ``bpbench.``-names count there."""
    found = []
    for text in texts(path):
        dotted = DOTTED.findall(text)
        if path.suffix == ".md":
            dotted = [m for m in dotted if m.startswith("bpbench.")]
        found += [(m, dotted_exists(m)) for m in dotted]
        found += [(m, slashed_exists(m, path)) for m in SLASHED.findall(text) if not PLACEHOLDER.search(m)]
    return found


@pytest.mark.parametrize("path", SOURCES + PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_module_path_named_exists(path: Path) -> None:
    missing = sorted({name for name, exists in named_paths(path) if not exists})
    assert not missing, f"{path.relative_to(REPO)} names paths that do not exist: {missing}"


def test_the_scan_finds_paths_and_rejects_missing_ones() -> None:
    assert dotted_exists("bpbench.experiments.run.runner") and dotted_exists("learners.base.Learner")
    assert not dotted_exists("bpbench.experiments.runner") and not dotted_exists("learners.base.Nothing")
    assert not dotted_exists("experiments.registry")
    assert slashed_exists("plan/study.py", REPO / "README.md") and not slashed_exists("experiments/runner.py", REPO)
    assert sum(len(named_paths(p)) for p in SOURCES + PAGES) > 100  # it does look


@pytest.mark.parametrize("room", ROOMS)
def test_each_room_init_names_all_its_modules(room: str) -> None:
    folder = REPO / "experiments" / room
    doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text())) or ""
    modules = [p.stem for p in folder.glob("*.py") if p.stem != "__init__"]
    modules += [p.name + "/" for p in folder.iterdir() if p.is_dir() and p.name != "__pycache__"]
    missing = sorted(m for m in modules if f"``{m}``" not in doc)
    assert not missing, f"experiments/{room}/__init__.py does not name {missing}"
