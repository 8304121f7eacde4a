"""Regenerate the committed reference results under results/: tables, figures, report, metadata.

For each study (default: quick, modern and vanishing; fashion takes most of an hour: run it on its own)
it runs ``bpbench run`` into a work folder (completed runs are reused), then writes under ``results/<study>/``:
``table.md``, ``table.tex`` (booktabs), ``table.csv``, ``table.txt``, ``scores.md`` (across tasks),
``trials.md`` (a tuned study's every trial), ``runs.csv`` (one row per run:
options, seed, final measures, times, commit), ``figures/*.png|pdf``,
``report.html`` (self-contained) and ``metadata.json`` (study table, overrides, wall time,
run counts, git commit, package versions, hardware); and ``results/README.md`` showing them.

    python -m scripts.reference_results                         # full size (the committed results)
    python -m scripts.reference_results --studies fashion       # one study; results/README.md lists all
    python -m scripts.reference_results --studies quick --set seeds=1 --set budget.epochs=1 \\
        --out /tmp/results-try --work /tmp/work-try                # a quick try of the pipeline
    python -m scripts.reference_results --studies fashion --work DIR --publish-only
        # redraw the tables, figures and report from DIR's runs, running nothing: the metadata keeps
        # the run's command, wall time and conditions, and adds the commit that drew them ("rendered")
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from bpbench.experiments.front.cli import main as bpbench
from bpbench.experiments.front.results import load
from bpbench.experiments.report.figure_layout import folder_problems
from bpbench.experiments.report.score_table import render_score, score
from bpbench.experiments.run.provenance import git_commit
from bpbench.experiments.store.describe import public
from bpbench.experiments.store.run_store import RunStore
from bpbench.experiments.store.run_table import RunTable

REPO = Path(__file__).resolve().parent.parent


def distinct(metas: list[dict[str, Any]], key: str) -> list[Any]:
    """The different values of ``key`` across run metas (one, when all runs ran alike)."""
    seen: dict[str, Any] = {}
    for meta in metas:
        seen.setdefault(json.dumps(meta.get(key), sort_keys=True), meta.get(key))
    return list(seen.values())


def runs_table(store: RunStore, metas: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per completed run under the public names (``Results.summary``'s): its options, seed,
    phase, final measures, start and end time and the commit it ran at (``runs.csv``: what medians,
    ranges and other statistics are recomputed from)."""
    runs = public(RunTable.read(store).runs)
    stamps = pd.DataFrame(
        [
            {
                "run_id": m["run_id"],
                "start_time": m.get("start_time"),
                "end_time": m.get("end_time"),
                "commit": (m.get("git") or {}).get("commit"),
            }
            for m in metas
        ]
    )
    return runs.merge(stamps, on="run_id", how="left")


def publish(study: str, work: Path, out: Path, sets: list[str], wall: float, exit_code: int) -> dict[str, Any]:
    """Write the tables, figures, report and metadata of the results in ``work`` to ``out``."""
    store = RunStore(work)
    results = load(work)
    out.mkdir(parents=True, exist_ok=True)
    for fmt, suffix in (("markdown", "md"), ("latex", "tex"), ("csv", "csv"), ("text", "txt")):
        (out / f"table.{suffix}").write_text(results.table(fmt))
    scores = score(RunTable.read(store), measure="flops")  # across tasks: profiles, ranks, IQM (its final runs)
    (out / "scores.md").write_text(render_score(scores, "markdown"))
    (out / "scores.csv").write_text(render_score(scores, "csv"))
    if not results.tuning.empty:  # a tuned study: every trial
        (out / "trials.md").write_text(results.table("markdown", tuning=True))
    for stale in (out / "figures").glob("*.p[nd][gf]") if (out / "figures").is_dir() else ():
        stale.unlink()  # a figure the runs no longer support (e.g. no CD diagram) must not outlive its data
    written, skipped = results.plot(out / "figures")
    results.report(out / "report.html")
    metas = store.metas()
    runs_table(store, metas).to_csv(out / "runs.csv", index=False)
    raw = json.loads((work / f"study-{study}.json").read_text())["study"]
    meta = {
        "study": study,
        "description": raw.get("description", ""),
        "study_table": raw,
        "overrides": sets,
        "command": shlex.join(["bpbench", "run", study, *[a for s in sets for a in ("--set", s)]]),
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_seconds": round(wall, 1),
        "bpbench_exit_code": exit_code,
        "runs_ok": sum(m["status"] == "ok" for m in metas),
        "runs_failed": sum(m["status"] != "ok" for m in metas),
        "failures": [
            {"run": m["spec"]["label"] + " on " + m["spec"]["task_label"], "error": m.get("error")}
            for m in metas
            if m["status"] != "ok"
        ],
        "git": distinct(metas, "git"),
        "versions": distinct(metas, "versions"),
        "hardware": distinct(metas, "hardware"),
        "figures": sorted(p.name for p in written if p.suffix == ".png"),
        "figures_skipped": skipped,
        "figure_layout": figure_layout(work, out / "figures", written),
        "scores": {"friedman": scores.friedman},
    }
    (out / "metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
    return meta


def figure_layout(work: Path, figures: Path, written: list[Path]) -> dict[str, dict[str, Any]]:
    """Per figure drawn (PNG name): its layout problems and warnings (``figure_layout.folder_problems``,
    drawn again from the same runs) and the SHA-256 of the PNG written, so a test can check every
    committed figure against the check made when it was drawn."""
    problems = folder_problems(work)
    return {
        path.name: {
            "problems": problems.get(path.stem, ["not checked: no such figure among the drawn ones"]),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        }
        for path in written
        if path.suffix == ".png"
    }


KEPT = ("command", "overrides", "wall_seconds", "bpbench_exit_code", "generated", "conditions")


def republish(study: str, work: Path, out: Path) -> dict[str, Any]:
    """``publish`` the runs already in ``work`` again (running nothing) with the code checked out
    now: the metadata keeps what the run said (``KEPT``) and adds ``rendered`` (commit and time)."""
    before = json.loads((out / "metadata.json").read_text())
    runs_before = before["runs_ok"]
    meta = publish(study, work, out, before["overrides"], before["wall_seconds"], before["bpbench_exit_code"])
    if meta["runs_ok"] != runs_before:
        raise SystemExit(f"{work}: {meta['runs_ok']} runs, the published {study} has {runs_before}: run it instead")
    code = git_commit()  # the run's own provenance: dirty counts tracked code, not results/
    meta |= {key: before[key] for key in KEPT if key in before}
    meta["rendered"] = {
        "commit": code["commit"],
        "dirty": code["dirty"],
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "note": "tables, figures and report redrawn from the same runs (--publish-only); nothing was run again",
    }
    (out / "metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
    print(f"{study}: redrew {out} from {meta['runs_ok']} runs in {work}")
    return meta


def published(out: Path, order: list[str]) -> list[dict[str, Any]]:
    """The metadata of every study published under ``out`` (this call's and earlier ones'), ``order`` first."""
    metas = {p.parent.name: json.loads(p.read_text()) for p in sorted(out.glob("*/metadata.json"))}
    names = [s for s in order if s in metas] + sorted(set(metas) - set(order))
    return [metas[name] for name in names]


def resumed(meta: dict[str, Any]) -> str:
    """A note when a study's runs were made at several commits (it was interrupted and resumed:
    the wall time then covers only the last invocation's runs; ``runs.csv`` has every run's times)."""
    commits = [g["commit"][:7] for g in meta["git"] if g.get("commit")]
    if len(commits) < 2:
        return ""
    return (
        f" Resumed: runs made at commits {', '.join(commits)} (each run's commit and times are in "
        "`runs.csv`; the wall time covers the last invocation only)."
    )


def readme(entries: list[dict[str, Any]], out: Path) -> str:
    """results/README.md: per study, its description, table and figures (paths relative to ``out``)."""
    lines = [
        "# Reference results",
        "",
        "Generated by `python -m scripts.reference_results`; each folder holds the study's tables "
        "(markdown, LaTeX, csv), `runs.csv` (one row per run: seed, final measures, commit), figures (PNG and PDF), "
        "a self-contained `report.html` and `metadata.json` "
        "(overrides, wall time, git commit, versions, hardware). Each study's metadata names the commit "
        "its runs were made at.",
        "",
    ]
    for meta in entries:
        study = meta["study"]
        hardware = meta["hardware"][0] if meta["hardware"] else {}
        lines += [
            f"## {study}",
            "",
            meta["description"],
            "",
            f"{meta['runs_ok']} runs ok, {meta['runs_failed']} failed; {meta['wall_seconds']} s wall for the "
            f"last invocation on {hardware.get('cpu_count', '?')} cores ({hardware.get('device', '?')}); "
            f"`{meta['command']}`.{resumed(meta)}"
            + (f" Made before {meta['made_before']}." if meta.get("made_before") else "")
            + (f" Conditions: {meta['conditions']}." if meta.get("conditions") else "")
            + (
                f" Tables and figures redrawn from the same runs at {meta['rendered']['commit'][:7]}."
                if meta.get("rendered")
                else ""
            ),
            "",
            (out / study / "table.md").read_text(),
            "",
        ]
        if (out / study / "scores.md").is_file():
            lines += ["Across tasks (`bpbench table --score`):", "", (out / study / "scores.md").read_text(), ""]
        lines += [f"![{name}]({study}/figures/{name})" for name in meta["figures"]]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--studies", nargs="+", default=["quick", "modern", "vanishing"])
    p.add_argument("--out", default=str(REPO / "results"), help="where the published files go (default: results/)")
    p.add_argument("--work", default=str(REPO / "bpbench-out" / "reference"), help="bpbench run output folders")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to bpbench run")
    p.add_argument("--jobs", default="0", help="worker processes for bpbench run (default: one per core)")
    p.add_argument(
        "--publish-only", action="store_true", help="run nothing: redraw OUT/STUDY from the runs in WORK/STUDY"
    )
    args = p.parse_args(argv)
    out, entries = Path(args.out), []
    for study in args.studies:
        work = Path(args.work) / study
        if args.publish_only:
            entries.append(republish(study, work, out / study))
            continue
        start = time.perf_counter()
        code = bpbench(["run", study, "--out", str(work), "--jobs", args.jobs, *[f"--set={s}" for s in args.set]])
        wall = time.perf_counter() - start
        if code == 2:
            print(f"reference_results: study {study} did not start (see the error above)", file=sys.stderr)
            return 2
        entries.append(publish(study, work, out / study, args.set, wall, code))
        print(
            f"{study}: {entries[-1]['runs_ok']} ok, {entries[-1]['runs_failed']} failed, {wall:.0f} s -> {out / study}"
        )
    order = ["quick", "modern", "vanishing", "fashion"]
    (out / "README.md").write_text(readme(published(out, order), out))
    print(f"wrote {out / 'README.md'}")
    return 0 if all(e["runs_failed"] == 0 for e in entries) else 1


if __name__ == "__main__":
    sys.exit(main())
