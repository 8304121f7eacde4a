"""Our `fashion` results beside BioTorch's published LeNet table, and the MLP-vs-LeNet gap per rule.

Reads the `fashion` study's results, either as published (``results/fashion``: its
``runs.csv``) or as run (``bpbench run fashion --out DIR``), and prints, as markdown for docs/fashion.md:

1. LeNet test error % per rule beside BioTorch's (Benchmarks.md, Fashion-MNIST, LeNet).
2. Per rule: test error % on the MLP and on LeNet, the gap to backprop on each net, and
   how much larger the LeNet gap is (the claim: feedback-alignment rules lose more to
   backprop on a CNN than on an MLP).
3. The study's targets, each marked holds / does not hold, and the study's wall time.

Convention: test error % = 100 x (1 - test accuracy), lower is better (BioTorch's); a
point value is the median over seeds, with the range of seeds beside it; a gap is the
rule's median minus backprop's median on the same net, in points. Rules that did not run
on a net show n/a.

    python -m scripts.fashion_table results/fashion     # the committed reference run
    python -m scripts.fashion_table DIR                 # your own run's output folder
"""

from __future__ import annotations

import argparse
import json
import math
from datetime import datetime
from pathlib import Path

import pandas as pd
from scipy import stats

from bpbench.experiments.report.summary import per_run
from bpbench.experiments.store.describe import public_names
from bpbench.experiments.store.run_store import RunStore
from bpbench.experiments.store.run_table import RunTable

# BioTorch Benchmarks.md, Fashion-MNIST, LeNet, top-1 test error % (shared/REFERENCES.md).
BIOTORCH_LENET = {"backprop": 9.2, "fa": 13.06, "dfa": 12.81, "sign_symmetry": 9.69, "brsf": 10.02, "frsf": 9.61}
NAMES = {"sign_symmetry": "sign_symmetry (uSF)", "brsf": "brsf (brSF)", "frsf": "frsf (frSF)"}
ARCHS = ("mlp", "lenet")


def rule_name(learner: str, config: object) -> str:
    """A learner label with the grid values of its configuration other than the net
    (dtp's two variants are two rules: "dtp (penultimate=target)")."""
    rest = (
        [part for part in config.split(", ") if part and not part.startswith("arch=")]
        if isinstance(config, str)
        else []
    )
    return f"{learner} ({', '.join(rest)})" if rest else learner


def errors(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (rule, arch): seeds, median / min / max test error % over seeds; a rule is a learner
    label and its configuration's grid values other than the net (``rule_name``)."""
    configs = runs["config"] if "config" in runs else [None] * len(runs)
    runs = runs.assign(
        learner=[rule_name(learner, config) for learner, config in zip(runs["learner"], configs)],
        error=100.0 * (1.0 - runs["test_acc"]),
    )
    grouped = runs.groupby(["learner", "arch"])["error"]
    out = pd.DataFrame(
        {"seeds": grouped.size(), "median": grouped.median(), "low": grouped.min(), "high": grouped.max()}
    )
    return out.reset_index()


def _cell(row: pd.Series | None) -> str:
    if row is None:
        return "n/a"
    if row["seeds"] == 1:
        return f"{row['median']:.2f}"
    return f"{row['median']:.2f} [{row['low']:.2f}-{row['high']:.2f}]"


def _order(learners: list[str]) -> list[str]:
    known = [name for name in BIOTORCH_LENET if name in learners]
    return known + sorted(set(learners) - set(known))


def side_by_side(err: pd.DataFrame) -> pd.DataFrame:
    """LeNet test error %: ours beside BioTorch's, and the difference in points."""
    lenet = {r["learner"]: r for _, r in err[err["arch"] == "lenet"].iterrows()}
    rows = []
    for learner in _order(sorted(set(lenet) | set(BIOTORCH_LENET))):
        ours, published = lenet.get(learner), BIOTORCH_LENET.get(learner)
        diff = ours["median"] - published if ours is not None and published is not None else None
        rows.append(
            {
                "rule": NAMES.get(learner, learner),
                "BioTorch LeNet": "n/a" if published is None else f"{published:.2f}",
                "ours LeNet (median [range])": _cell(ours),
                "ours - BioTorch": "n/a" if diff is None else f"{diff:+.2f}",
            }
        )
    return pd.DataFrame(rows)


def gaps(err: pd.DataFrame) -> pd.DataFrame:
    """Per rule: error % on each net, gap to backprop on each net, LeNet gap minus MLP gap."""
    table = {(r["learner"], r["arch"]): r for _, r in err.iterrows()}

    def gap(learner: str, arch: str) -> float | None:
        if (learner, arch) not in table or ("backprop", arch) not in table:
            return None
        return float(table[(learner, arch)]["median"] - table[("backprop", arch)]["median"])

    rows = []
    for learner in _order(sorted(err["learner"].unique())):
        g = {arch: gap(learner, arch) for arch in ARCHS}
        rows.append(
            {
                "rule": NAMES.get(learner, learner),
                "MLP error %": _cell(table.get((learner, "mlp"))),
                "LeNet error %": _cell(table.get((learner, "lenet"))),
                "gap to backprop, MLP": "n/a" if g["mlp"] is None else f"{g['mlp']:+.2f}",
                "gap to backprop, LeNet": "n/a" if g["lenet"] is None else f"{g['lenet']:+.2f}",
                "LeNet gap - MLP gap": ("n/a" if None in (g["mlp"], g["lenet"]) else f"{g['lenet'] - g['mlp']:+.2f}"),
            }
        )
    return pd.DataFrame(rows)


def interactions(runs: pd.DataFrame) -> pd.DataFrame:
    """Per rule run on both nets: its extra loss to backprop on LeNet over the MLP, in test-error points,
    (LeNet error - backprop's) - (MLP error - backprop's) from the seed means, with its 95% t-interval and
    two-sided p (Welch-Satterthwaite over the four groups' variances): positive = loses more on LeNet."""
    runs = runs.assign(error=100.0 * (1.0 - runs["test_acc"]))
    groups = {key: g["error"].to_numpy(float) for key, g in runs.groupby(["learner", "arch"])}
    rows = []
    for learner in _order(sorted({lab for lab, _ in groups} - {"backprop"})):
        keys = [(learner, "lenet"), ("backprop", "lenet"), (learner, "mlp"), ("backprop", "mlp")]
        if any(k not in groups or len(groups[k]) < 2 for k in keys):
            continue
        signs = (1.0, -1.0, -1.0, 1.0)
        est = sum(s * groups[k].mean() for s, k in zip(signs, keys))
        parts = [groups[k].var(ddof=1) / len(groups[k]) for k in keys]
        se = sum(parts) ** 0.5
        df = se**4 / sum(v**2 / (len(groups[k]) - 1) for v, k in zip(parts, keys)) if se > 0 else math.inf
        half = stats.t.ppf(0.975, df) * se
        p = 2 * stats.t.sf(abs(est) / se, df) if se > 0 else math.nan
        rows.append(
            {
                "rule": NAMES.get(learner, learner),
                "LeNet gap - MLP gap (mean, points)": f"{est:+.2f} [{est - half:+.2f}, {est + half:+.2f}]",
                "p (Welch-Satterthwaite)": f"{p:.2g}",
            }
        )
    return pd.DataFrame(rows)


def targets(err: pd.DataFrame) -> list[tuple[str, bool | None, str]]:
    """The study's targets on medians of seeds: (target, holds (None: not measured), values)."""
    acc = {(r["learner"], r["arch"]): 1.0 - r["median"] / 100.0 for _, r in err.iterrows()}

    def get(learner: str, arch: str) -> float | None:
        return acc.get((learner, arch))

    out: list[tuple[str, bool | None, str]] = []
    bp = get("backprop", "lenet")
    out.append(
        (
            "backprop LeNet test accuracy >= .90",
            None if bp is None else bp >= 0.90,
            f"backprop {bp:.4f}" if bp is not None else "not run",
        )
    )
    ss = get("sign_symmetry", "lenet")
    out.append(
        (
            "sign_symmetry within 1.5 points of backprop on LeNet",
            None if None in (bp, ss) else bp - ss <= 0.015,
            "not run" if None in (bp, ss) else f"gap {100 * (bp - ss):+.2f} points",
        )
    )
    for rule in ("fa", "dfa"):
        a = get(rule, "lenet")
        out.append(
            (
                f"{rule} LeNet >= .84 and below backprop",
                None if None in (a, bp) else a >= 0.84 and a < bp,
                "not run" if None in (a, bp) else f"{rule} {a:.4f}, backprop {bp:.4f}",
            )
        )
        m, bm = get(rule, "mlp"), get("backprop", "mlp")
        if None in (a, bp, m, bm):
            out.append((f"{rule}: gap to backprop larger on LeNet than on MLP", None, "not run"))
        else:
            out.append(
                (
                    f"{rule}: gap to backprop larger on LeNet than on MLP",
                    bp - a > bm - m,
                    f"LeNet gap {100 * (bp - a):+.2f}, MLP gap {100 * (bm - m):+.2f} points",
                )
            )
    return out


def wall_minutes(starts: list[str], ends: list[str]) -> tuple[float, float] | None:
    """(minutes while at least one run was running, minutes from the first start to the last end),
    from the runs' ISO start and end times; they differ when a study was interrupted and resumed."""
    if not starts:
        return None
    intervals = sorted(zip(map(datetime.fromisoformat, starts), map(datetime.fromisoformat, ends)))
    busy, (lo, hi) = 0.0, intervals[0]
    for start, end in intervals[1:]:
        if start > hi:
            busy, lo = busy + (hi - lo).total_seconds(), start
        hi = max(hi, end)
    busy += (hi - lo).total_seconds()
    span = (max(e for _, e in intervals) - intervals[0][0]).total_seconds()
    return busy / 60, span / 60


def load(folder: Path) -> tuple[pd.DataFrame, int, tuple[float, float] | None]:
    """(one row per completed run, failed runs, wall minutes) of ``folder``: a published results
    folder (its ``runs.csv`` and ``metadata.json``, as under results/) or a ``bpbench run`` output folder."""
    published = folder / "runs.csv"
    if published.is_file():
        runs = pd.read_csv(published)
        # runs.csv is under the public names (Results.summary's); this script reads the tables' own
        if "label" in runs:  # (a runs.csv published before it was: already the tables' names)
            runs = runs.rename(columns={name: key for key, name in public_names().items()})
        meta_file = folder / "metadata.json"
        failed = json.loads(meta_file.read_text())["runs_failed"] if meta_file.is_file() else 0
        timed = runs.dropna(subset=["start_time", "end_time"])
        return runs, failed, wall_minutes(list(timed["start_time"]), list(timed["end_time"]))
    store = RunStore(folder)
    metas = store.metas()
    failed = sum(m["status"] != "ok" for m in metas)
    timed = [m for m in metas if m.get("start_time") and m.get("end_time")]
    return (
        per_run(RunTable.read(store).tidy()),
        failed,
        wall_minutes([m["start_time"] for m in timed], [m["end_time"] for m in timed]),
    )


def report(folder: Path) -> str:
    """The markdown text this script prints for ``folder``."""
    runs, failed, wall = load(folder)
    if runs.empty:
        raise SystemExit(f"{folder}: no completed runs (neither runs.csv nor run folders)")
    err = errors(runs)
    lines = [
        "Test error % (100 x (1 - accuracy)); ours: median [min-max] over seeds.",
        "",
        side_by_side(err).to_markdown(index=False, disable_numparse=True),
        "",
        gaps(err).to_markdown(index=False, disable_numparse=True),
        "",
        "Does a rule lose more to backprop on LeNet than on the MLP? Means over seeds, 95% t-interval, "
        "unadjusted (one question per rule):",
        "",
        interactions(runs).to_markdown(index=False, disable_numparse=True),
        "",
        "Targets (medians of seeds):",
    ]
    for target, holds, values in targets(err):
        verdict = "not measured" if holds is None else ("holds" if holds else "does NOT hold")
        lines.append(f"- {target}: {verdict} ({values})")
    timing = (
        "wall time n/a (no run times)"
        if wall is None
        else f"wall time {wall[0]:.1f} min while runs were running ({wall[1]:.1f} min from the first start "
        "to the last end)"
    )
    lines += ["", f"{len(runs)} runs completed, {failed} failed; {timing}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="results/fashion, or the output folder of a `fashion` run")
    print(report(parser.parse_args().folder))


if __name__ == "__main__":
    main()
