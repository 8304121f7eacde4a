"""The harness's rooms and the one-way import rule, read from the source (no imports run).

Rooms, left to right: front -> report -> schedule -> store -> run -> plan -> learners/tasks.
A module may import its own room or any room to its right; no module imports another
module's private (underscored) name; learners and tasks never import the harness.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROOMS = ["front", "report", "schedule", "store", "run", "plan"]
RANK = {room: i for i, room in enumerate(ROOMS)} | {"learners": len(ROOMS), "tasks": len(ROOMS)}


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, imported names, line) of every ``bpbench.*`` import in a file, lazy ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bpbench"):
            found.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("bpbench")]
    return found


def _room(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] == ["bpbench", "experiments"] and len(parts) > 2:
        return parts[2]
    if len(parts) > 1 and parts[1] in ("learners", "tasks"):
        return parts[1]
    return None


def _files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_experiments_is_organized_in_rooms() -> None:
    loose = [p.name for p in (ROOT / "experiments").glob("*.py") if p.name != "__init__.py"]
    assert loose == [], f"modules outside a room: {loose}"
    rooms = sorted(p.name for p in (ROOT / "experiments").iterdir() if (p / "__init__.py").is_file())
    assert rooms == sorted(ROOMS)


@pytest.mark.parametrize("room", ROOMS)
def test_imports_run_one_way(room: str) -> None:
    wrong = []
    for path in _files(f"experiments/{room}"):
        for module, _, line in _imports(path):
            target = _room(module)
            if target is not None and RANK[target] < RANK[room]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module} ({target} is left of {room})")
    assert wrong == []


def test_learners_and_tasks_know_nothing_of_experiments() -> None:
    wrong = [
        f"{p.relative_to(ROOT)}:{line} {module}"
        for folder in ("learners", "tasks")
        for p in _files(folder)
        for module, _, line in _imports(p)
        if module.startswith("bpbench.experiments")
    ]
    assert wrong == []


def test_no_module_imports_another_modules_private_names() -> None:
    wrong = [
        f"{p.relative_to(ROOT)}:{line} {module}.{name}"
        for folder in ("experiments", "learners", "tasks", "bpbench")
        for p in _files(folder)
        for module, names, line in _imports(p)
        for name in names
        if name.startswith("_")
    ]
    assert wrong == []


def test_the_rule_rejects_an_upward_import(tmp_path: Path) -> None:
    """The checker itself: an upward import is found."""
    bad = tmp_path / "bad.py"
    bad.write_text("from bpbench.experiments.report.table import render\n")
    assert [_room(m) for m, _, _ in _imports(bad)] == ["report"]
    assert RANK["report"] < RANK["store"]
