"""Provenance: a non-editable install (the README's ``pip install .``) records the commit it was
built from, and every run's meta.json carries it with the packages providing learner and task."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from importlib.metadata import version
from pathlib import Path

import pytest

from helpers import REPO, pip

STUDY = {
    "seeds": 1,
    "tasks": ["digits"],
    "model": {"hidden": [16]},
    "budget": {"epochs": 1},
    "learners": {"backprop": {}},
}


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(
    shutil.which("git") is None or not (REPO / ".git").exists(),
    reason="needs git and a git checkout of bpbench to clone",
)
def test_non_editable_install_from_a_clone_records_its_commit(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    head = git("rev-parse", "HEAD", cwd=clone)
    site = tmp_path / "site"  # a target folder: the test environment is not touched
    pip("install", "--no-deps", "--no-build-isolation", "--no-index", "--target", str(site), str(clone))
    code = textwrap.dedent(f"""
        import json, sys, bpbench
        assert bpbench.__file__.startswith({str(site)!r}), bpbench.__file__  # the installed copy, not a checkout
        results = bpbench.run({STUDY!r}, out="out", executor="inline", progress=False)
        assert results.summary["status"].tolist() == ["ok"], results.summary["error"].tolist()
    """)
    # run outside any checkout, with the installed copy first on the path
    subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, check=True, timeout=300, env={**os.environ, "PYTHONPATH": str(site)}
    )
    meta = json.loads(next(tmp_path.glob("out/runs/*/meta.json")).read_text())
    assert meta["git"] == {"commit": head, "dirty": False, "source": "build", "reason": None}
    built = next(site.glob("bpbench-*.dist-info")).name.removeprefix("bpbench-").removesuffix(".dist-info")
    assert meta["versions"]["bpbench"] == built and f"g{head[:9]}" in built  # setuptools-scm: +g<commit>
    assert meta["providers"]["learner"] == {
        "name": "backprop",
        "target": "bpbench.learners.backprop:Backprop",
        "distribution": "bpbench",
        "version": built,
    }


def test_checkout_runs_record_the_live_commit(tmp_path: Path) -> None:
    from bpbench.experiments.run.provenance import git_commit

    info = git_commit()
    assert info["source"] == "checkout"  # the tests run the checkout's code
    if (REPO / ".git").exists() and shutil.which("git"):
        assert info["commit"] == git("rev-parse", "HEAD", cwd=REPO) and isinstance(info["dirty"], bool)
    assert version("bpbench")  # installed metadata exists (setuptools-scm's version)
