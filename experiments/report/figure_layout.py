"""Layout checks of a drawn figure: every legend and label inside the canvas, none overlapping.

``layout_problems(fig)`` draws ``fig`` (Agg) and returns one line per problem: a legend, title,
axis label or tick label whose box leaves the canvas, two of the legends / titles / axis labels
overlapping each other, or a legend over another axes' tick labels. ``folder_problems(root)``
draws every figure ``bpbench plot`` would draw for the results folder ``root`` (``save_all``'s
builders, the tuned study's included) and returns figure name -> its problems, each warning
raised while drawing included (figures the data do not support are left out).
``python -m scripts.check_figures DIR ...`` prints them.
"""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox

TOLERANCE = 1.0  # pixels: antialiasing may spill a pixel past an edge


def _texts(fig: Figure) -> list[tuple[str, Text]]:
    out: list[tuple[str, Text]] = []
    for k, ax in enumerate(fig.axes):
        out.append((f"axes {k} title", ax.title))
        out.append((f"axes {k} x label", ax.xaxis.label))
        out.append((f"axes {k} y label", ax.yaxis.label))
    out += [(f"figure text {k}", t) for k, t in enumerate(fig.texts)]
    suptitle = fig.get_suptitle()
    if suptitle:
        out += [("suptitle", t) for t in fig.findobj(Text) if t.get_text() == suptitle and t.figure is fig][:1]
    return [(name, t) for name, t in out if t.get_visible() and t.get_text().strip()]


def _ticks(fig: Figure) -> list[tuple[str, Text]]:
    """The tick labels drawn: visible, non-empty, at a tick inside the axis' view interval."""
    out = []
    for k, ax in enumerate(fig.axes):
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            low, high = sorted(axis.get_view_interval())
            for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
                if not low - 1e-12 * abs(high - low) <= tick.get_loc() <= high + 1e-12 * abs(high - low):
                    continue
                for label in (tick.label1, tick.label2):
                    if label.get_visible() and label.get_text():
                        out.append((f"axes {k} {name} tick {label.get_text()!r}", label))
    return out


def _overlap(a: Bbox, b: Bbox) -> bool:
    return min(a.x1, b.x1) - max(a.x0, b.x0) > TOLERANCE and min(a.y1, b.y1) - max(a.y0, b.y0) > TOLERANCE


def layout_problems(fig: Figure) -> list[str]:
    """Problems of ``fig``'s layout (see the module doc); [] when it is fit to print."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    page = fig.bbox
    legends = [*fig.legends, *(legend for ax in fig.axes if (legend := ax.get_legend()) is not None)]
    boxes = [(f"legend {k}", legend.get_window_extent(renderer)) for k, legend in enumerate(legends)]
    boxes += [(name, t.get_window_extent(renderer)) for name, t in _texts(fig)]
    ticks = [(name, t.get_window_extent(renderer)) for name, t in _ticks(fig)]
    problems = []
    for name, box in [*boxes, *ticks]:
        if (
            box.x0 < page.x0 - TOLERANCE
            or box.y0 < page.y0 - TOLERANCE
            or box.x1 > page.x1 + TOLERANCE
            or box.y1 > page.y1 + TOLERANCE
        ):
            problems.append(f"{name} leaves the canvas ({box.x0:.0f}..{box.x1:.0f} x {box.y0:.0f}..{box.y1:.0f} px)")
    for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
        if _overlap(box_a, box_b):
            problems.append(f"{a} overlaps {b}")
    for a, box_a in boxes:
        if a.startswith("legend"):
            problems += [f"{a} overlaps {b}" for b, box_b in ticks if _overlap(box_a, box_b)]
    return problems


def folder_problems(root: Path) -> dict[str, list[str]]:
    """Figure name -> layout problems of every figure ``bpbench plot`` draws for ``root``."""
    from bpbench.experiments.report.figures import NoData, figure_data, standard_figures
    from bpbench.experiments.report.tuning_figures import tuning_figures
    from bpbench.experiments.store.run_store import RunStore
    from bpbench.experiments.store.run_table import RunTable

    table = RunTable.read(RunStore(root))
    out = {}
    for name, (_, build) in {**standard_figures(figure_data(table)), **tuning_figures(table)}.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                fig = build()
            except NoData:
                continue
            problems = layout_problems(fig)
        out[name] = [f"warning: {w.message}" for w in caught] + problems
    return out
