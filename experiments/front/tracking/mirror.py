"""The mirror: feeds the trackers every stored run, as a study runs or from an existing folder.

``Mirror.run(run_id)`` reads the run back through the store's readers after it is stored (so a
tracker sees exactly what ``bpbench table`` reads) and logs it; ``Mirror.finish`` logs the study's
tables and figures to its parent run. ``export(DIR, targets)`` (``bpbench track``) mirrors a
results folder: its runs, or a published folder's ``runs.csv`` (final measures, no curves).
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from bpbench.experiments.front.tracking.base import Guarded, Target, TrackedRun, TrackingWarning, open_trackers
from bpbench.experiments.front.tracking.record import from_published, from_store
from bpbench.experiments.run.provenance import git_commit
from bpbench.experiments.store.run_store import RunStore

TABLE_FILES = ("table.txt", "table.md", "table.csv", "scores.md")


class Mirror:
    """The trackers of one study's results folder ``root``."""

    def __init__(self, targets: Sequence[Target], root: Path, study: str) -> None:
        self.store, self.study = RunStore(root), study
        self.trackers = [Guarded(t) for t in open_trackers(targets, root)]
        commit = str((git_commit() or {}).get("commit") or "")
        tags = {"study": study, "results": str(Path(root).resolve()), **({"commit": commit} if commit else {})}
        for guarded in self.trackers:
            guarded.call("study", lambda g=guarded: g.tracker.start_study(study, tags))

    def run(self, run_id: str) -> None:
        """Mirror the stored run ``run_id`` (one warning per tracker when it cannot be)."""
        meta = self.store.complete_meta(self.store.meta_path(run_id))
        if meta is None:
            warnings.warn(f"run {run_id} not mirrored: not stored in {self.store.root}", TrackingWarning, stacklevel=2)
            return
        self.log(from_store(self.store, meta, self.study))

    def log(self, record: TrackedRun) -> None:
        for guarded in self.trackers:
            guarded.call(f"run {record.run_id}", lambda g=guarded: g.tracker.log_run(record))

    def finish(self, artifacts: Callable[[Path], list[Path]]) -> None:
        """Log the study's tables and figures, ``artifacts(folder)`` writing them into a temporary
        folder (made only when some tracker is still working)."""
        alive = [g for g in self.trackers if not g.broken]
        if not alive:
            return
        with tempfile.TemporaryDirectory() as tmp:
            files = artifacts(Path(tmp))
            for guarded in alive:
                guarded.call("study artifacts", lambda g=guarded: g.tracker.finish_study(files))


def study_artifacts(root: Path, folder: Path) -> list[Path]:
    """The tables (``bpbench table`` as text, markdown, csv) and figures of the results folder
    ``root``, written into ``folder``; a part that cannot be made is a warning."""
    from bpbench.experiments.front.results import load

    out: list[Path] = []
    try:
        results = load(root)
        for fmt, name in (("text", "table.txt"), ("markdown", "table.md"), ("csv", "table.csv")):
            (folder / name).write_text(results.table(fmt))
            out.append(folder / name)
        written, _ = results.plot(folder / "figures")
        out += sorted(Path(p) for p in written if Path(p).suffix == ".png")
    except Exception as exc:  # the mirror's artifacts never fail the study
        warnings.warn(f"study tables/figures not mirrored: {type(exc).__name__}: {exc}", TrackingWarning, stacklevel=2)
    return out


def published_artifacts(root: Path) -> list[Path]:
    """A published folder's own tables and PNG figures (regular files only, never links)."""
    files = [root / name for name in TABLE_FILES] + sorted((root / "figures").glob("*.png"))
    return [p for p in files if p.is_file() and not p.is_symlink() and not p.parent.is_symlink()]


def export(root: Path, targets: Sequence[Target], study: str | None = None) -> int:
    """Mirror the results folder ``root`` to ``targets``; the number of runs mirrored. A run folder
    is read through the store; a published folder (``runs.csv``, as under results/) from its table."""
    store = RunStore(root)
    metas = store.metas()
    name = study or next((s["name"] for s in store.studies()), None) or Path(root).resolve().name
    mirror = Mirror(targets, root, name)
    if metas:
        for meta in metas:
            mirror.log(from_store(store, meta, name))
        own = published_artifacts(root)
        mirror.finish(lambda tmp: own or study_artifacts(root, tmp))
        return len(metas)
    published = root / "runs.csv"
    if not published.is_file() or published.is_symlink():
        raise ValueError(f"{root}: no runs to mirror (neither run folders nor a published runs.csv)")
    rows = [{str(k): v for k, v in row.items()} for row in pd.read_csv(published).to_dict("records")]
    for row in rows:
        mirror.log(from_published(row, name))
    mirror.finish(lambda tmp: published_artifacts(root))
    return len(rows)
