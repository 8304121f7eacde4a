"""``bpbench new learner|task NAME``: the package it writes installs, registers, and passes its own tests."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import REPO, installed
from bpbench.experiments.front.cli import main


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A learner and a task package, written by the CLI and installed as the README says
    (``pip install -e DIR``) for this module."""
    root = tmp_path_factory.mktemp("scaffold")
    folders = {"learner": root / "my_rule", "task": root / "blobs"}
    for kind, folder in folders.items():
        assert main(["new", kind, folder.name, "--dir", str(folder)]) == 0
    with installed(folders["learner"], "bpbench-my-rule", editable=True), \
            installed(folders["task"], "bpbench-blobs", editable=True):
        yield folders


def test_written_files(packages: dict[str, Path]) -> None:
    learner = packages["learner"]
    assert sorted(str(p.relative_to(learner)) for p in learner.rglob("*") if p.is_file()) == [
        "README.md", "bpbench_my_rule/__init__.py", "bpbench_my_rule/my_rule.py", "pyproject.toml",
        "tests/test_my_rule.py"]
    assert 'my_rule = "bpbench_my_rule.my_rule:MyRule"' in (learner / "pyproject.toml").read_text()
    code = (learner / "bpbench_my_rule" / "my_rule.py").read_text()
    assert code.startswith('"""MyRule: a learning rule for bpbench') and "class MyRule(Learner):" in code
    assert 'blobs = "bpbench_blobs.blobs:Blobs"' in (packages["task"] / "pyproject.toml").read_text()


@pytest.mark.slow  # 70-120 s under 4x load on 2 cores, 2026-12-03 (--durations)
def test_packages_pass_their_own_tests(packages: dict[str, Path]) -> None:
    """``pytest DIR`` of each (one pytest process for both: 2 learner tests, 3 task tests)."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(packages["learner"]), str(packages["task"])],
                          cwd=packages["learner"].parent, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": ""})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1].startswith("5 passed"), proc.stdout


def test_readme_shows_these_commands() -> None:
    section = (REPO / "README.md").read_text().split("## Adding a learner")[1].split("\n## ")[0]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    assert [line.split("#")[0].strip() for line in block.splitlines()] == [
        "bpbench new learner my_rule", "pip install -e my_rule", "pytest my_rule"]  # what the fixture runs


def test_refuses_taken_names_bad_names_and_used_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["new", "learner", "backprop", "--dir", str(tmp_path / "a")]) == 2
    assert "learner 'backprop' is already registered (by bpbench" in capsys.readouterr().err
    assert main(["new", "task", "My-Task", "--dir", str(tmp_path / "b")]) == 2
    assert "name = 'My-Task': expected a lowercase Python identifier" in capsys.readouterr().err
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep.txt").write_text("mine")
    assert main(["new", "learner", "fresh", "--dir", str(tmp_path / "c")]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]
