"""One self-contained HTML report of a results folder: summary table, figures, run metadata.

``build_report(root)`` returns the page as a string: the study description(s), the summary table
(``experiments.report.render``: 95% t-intervals, verdicts against the study's reference, budget notes), every
figure of ``experiments.report.figures`` that the results support as an embedded PNG (a data: URI),
and where the runs ran (git commit, package versions, hardware). No external file, script
or stylesheet is referenced, so the file can be opened anywhere or mailed as is.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from bpbench.experiments.report.figures import NoData, figure_data, standard_figures
from bpbench.experiments.report.render import render
from bpbench.experiments.report.score_table import render_score, score
from bpbench.experiments.report.summary import reference_of, summarize
from bpbench.experiments.report.tuning import render_trials, trials, tuned_summary
from bpbench.experiments.report.tuning_figures import tuning_figures
from bpbench.experiments.store.run_store import RunStore, atomic_write
from bpbench.experiments.store.run_table import RunTable

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
table.results, table.scores { border-collapse: collapse; font-size: 0.85em; }
table.results th, table.results td, table.scores th, table.scores td {
  padding: 0.25em 0.6em; border-bottom: 1px solid #ccc; text-align: right; }
table.results td { white-space: nowrap; }
table.results td:nth-child(-n+5), table.results th:nth-child(-n+5) { text-align: left; }
div.scroll { overflow-x: auto; }
p.note { font-size: 0.85em; color: #444; }
figure { display: inline-block; margin: 1em; vertical-align: top; }
figure img { max-width: 100%; }
figcaption { font-size: 0.85em; color: #444; max-width: 40em; }
dl.meta dt { font-weight: bold; } dl.meta dd { margin: 0 0 0.4em 1.5em; font-family: monospace; }
"""


def _metadata(metas: Iterable[dict[str, Any]]) -> str:
    """Run counts, the span of start times, and each distinct git, versions and hardware record,
    read one meta at a time."""
    ok = failed = 0
    first = last = None
    distinct: dict[str, dict[str, None]] = {key: {} for key in ("git", "versions", "hardware")}
    for meta in metas:
        ok += meta["status"] == "ok"
        failed += meta["status"] != "ok"
        if start := meta.get("start_time"):
            first, last = min(first or start, start), max(last or start, start)
        for key, seen in distinct.items():
            seen.setdefault(json.dumps(meta.get(key), sort_keys=True))
    items = [("runs", f"{ok} completed, {failed} failed"), ("run times", f"{first} to {last}" if first else "n/a")]
    for key, seen in distinct.items():
        items += [(key, value) for value in seen]
    return '<dl class="meta">' + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items) + "</dl>"


def _png_uri(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def build_report(root: Path) -> str:
    """The HTML page of the results folder ``root`` (the --out folder of ``bpbench run``)."""
    store = RunStore(root)
    table = RunTable.read(store)  # every view below reads this one table
    if table.runs.empty and table.failed.empty:
        raise ValueError(f"results folder {str(root)!r} has no runs: nothing to report")
    studies = store.studies()
    title = "bpbench report: " + (", ".join(s["name"] for s in studies) or root.name)
    parts = [f"<h1>{escape(title)}</h1>"]
    parts += [f"<p><b>{escape(s['name'])}</b>: {escape(str(s['study'].get('description', '')))}</p>" for s in studies]
    if table.tuned:  # a tuned study: its final runs, then every trial
        parts += [
            "<h2>Summary (tuned: final runs)</h2>",
            f'<div class="scroll">{render(tuned_summary(table, reference_of(store)), "html")}</div>',
            "<h2>Tuning trials</h2>",
            f'<div class="scroll">{render_trials(trials(table), "html")}</div>',
        ]
    else:
        parts += ["<h2>Summary</h2>", f'<div class="scroll">{render(summarize(table), "html")}</div>']
    parts += [
        "<h2>Scores across tasks</h2>",
        f'<div class="scroll">{render_score(score(table), "html")}</div>',
        "<h2>Figures</h2>",
    ]
    data = figure_data(table)
    skipped = []
    for name, (caption, build) in {**standard_figures(data), **tuning_figures(table)}.items():
        try:
            fig = build()
        except NoData as exc:
            skipped.append(f"{name}: {exc}")
            continue
        parts.append(
            f'<figure id="{escape(name)}"><img alt="{escape(name)}" src="{_png_uri(fig)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>"
        )
    if skipped:
        parts.append('<p class="note">Not drawn (the results lack their data): ' + escape("; ".join(skipped)) + "</p>")
    parts += ["<h2>Where the runs ran</h2>", _metadata(store.iter_metas())]
    made = datetime.now(UTC).isoformat(timespec="seconds")
    parts.append(f'<p class="note">Generated {made} by bpbench report from {escape(str(root))}.</p>')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )


def write_report(root: Path, out: Path) -> Path:
    """Write ``build_report(root)`` to ``out``; returns ``out``. Written beside ``out`` and renamed
    into place: a symlink at ``out`` is replaced, never written through; a symlinked folder on the
    way inside ``root`` is refused (``UnsafePathError``)."""
    page = build_report(root)
    inside_root = Path(out).absolute().is_relative_to(Path(root).absolute())
    atomic_write(out, lambda p: p.write_text(page, encoding="utf-8"), root if inside_root else None)
    return out
