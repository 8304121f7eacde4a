"""``bpbench reproduce DIR``: re-run the study a results folder records and say per row whether the
re-run is equivalent to the recorded one within the study's margin, and which runs are bit-identical.

``recorded(folder)`` -> (study name, study table, runs, commit): from a ``bpbench run`` folder (its
``study-*.json`` and runs) or a committed reference folder (``metadata.json``'s study table and
commit, ``runs.csv``). ``reproduce(folder, here, overrides)`` re-runs it in a temporary folder:
with ``here`` at the current code; otherwise at the recorded commit, checked out in a temporary
``git worktree`` of this checkout, run from its root (``python -c`` there imports that code), and
returns the comparison (``report/reproduction.py``) as text.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from bpbench.experiments.plan.config import ConfigError
from bpbench.experiments.plan.study import Overrides, apply_sets
from bpbench.experiments.plan.verdict import study_margin
from bpbench.experiments.report import reproduction
from bpbench.experiments.run.provenance import CODE_ROOT
from bpbench.experiments.store.describe import public_names
from bpbench.experiments.store.run_store import RunStore
from bpbench.experiments.store.run_table import RunTable


def recorded(folder: Path) -> tuple[str, dict[str, Any], pd.DataFrame, str | None]:
    """(study name, study table after its --set, completed runs, commit the runs were made at)."""
    store = RunStore(folder)
    if (folder / "runs").is_dir():
        studies = store.studies()
        if len(studies) != 1:
            raise ConfigError(f"results folder {str(folder)!r} records {len(studies)} studies: reproduce needs one")
        runs = RunTable.read(store).verdict().runs
        commits = {(m.get("git") or {}).get("commit") for m in store.iter_metas() if m["status"] == "ok"}
        return studies[0]["name"], studies[0]["study"], runs, commits.pop() if len(commits) == 1 else None
    meta_path, runs_path = folder / "metadata.json", folder / "runs.csv"
    if not (meta_path.is_file() and runs_path.is_file()):
        raise ConfigError(f"{str(folder)!r}: neither runs/ nor metadata.json and runs.csv (not a results folder)")
    meta = json.loads(meta_path.read_text())
    if not isinstance(meta, dict) or not isinstance(meta.get("study_table"), dict):
        raise ConfigError(f"{str(meta_path)!r} holds no study_table: cannot tell what to re-run")
    text = {"config": str, "configuration": str}  # an empty configuration is "", not NaN
    runs = pd.read_csv(  # round_trip: the digits written, bit for bit (pandas' default parser is not exact)
        runs_path, keep_default_na=False, na_values=[""], dtype=text, float_precision="round_trip"
    )
    if "label" in runs:  # written under the public names (an older runs.csv used the internal ones)
        runs = runs.rename(columns={public: name for name, public in public_names().items() if public in runs})
    runs = runs.fillna({"config": ""})
    git = meta.get("git") or [{}]
    commit = git[0].get("commit") if isinstance(git, list) and git and isinstance(git[0], dict) else None
    return str(meta.get("study", folder.name)), meta["study_table"], runs, commit


def _run_here(name: str, raw: dict[str, Any], out: Path, jobs: int) -> None:
    from bpbench.experiments.front.api import run

    run(raw, out=out, name=name, jobs=jobs, progress=False)


def _run_at(commit: str, name: str, raw: dict[str, Any], out: Path, jobs: int, tmp: Path) -> None:
    """Run ``raw`` with the code of ``commit``: a detached worktree of this checkout, run by this
    Python from the worktree's root (a checkout's own code is what ``import bpbench`` finds there)."""
    tree = tmp / "tree"
    git = ["git", "-C", str(CODE_ROOT)]
    made = subprocess.run([*git, "worktree", "add", "--detach", str(tree), commit], capture_output=True, text=True)
    if made.returncode != 0:
        raise ConfigError(f"commit {commit} cannot be checked out here ({made.stderr.strip()[:200]}): use --here")
    try:
        study = tmp / f"{name}.json"
        study.write_text(json.dumps(raw))
        code = f"import json, sys; from bpbench import run; run(json.load(open(sys.argv[1])), out=sys.argv[2], name={name!r}, jobs={jobs}, progress=False)"  # noqa: E501
        subprocess.run([sys.executable, "-c", code, str(study), str(out)], check=True, cwd=tree)
    finally:
        subprocess.run([*git, "worktree", "remove", "--force", str(tree)], capture_output=True)


def reproduce(folder: str | Path, here: bool = False, overrides: Overrides | None = None, jobs: int = 0) -> str:
    """Re-run the study ``folder`` records (``overrides``: --set on its table) and compare (module doc)."""
    root = Path(folder)
    name, raw, runs, commit = recorded(root)
    raw = apply_sets(raw, overrides)
    margin = study_margin(raw)
    if not here and commit is None:
        raise ConfigError(f"{str(root)!r} names no single commit its runs were made at: use --here")
    with tempfile.TemporaryDirectory(prefix="bpbench-reproduce-") as tmp:
        out = Path(tmp) / "out"
        if here:
            _run_here(name, raw, out, jobs)
        else:
            _run_at(str(commit), name, raw, out, jobs, Path(tmp))
        rerun = RunTable.read(RunStore(out)).verdict().runs
    where = "the current code" if here else f"commit {commit}"
    table = reproduction.render(reproduction.compare_runs(runs, rerun, margin), margin)
    return f"{name}: re-run at {where} ({len(rerun)} runs) against {len(runs)} recorded runs\n\n{table}"
