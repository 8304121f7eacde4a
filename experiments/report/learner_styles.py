"""How learners are shown: one record per built-in learner (order in tables and legends, colour,
marker, which of its layers are exact by construction for the table's note), and a stable
colour and marker for any other learner (a plugin) that never repeats a built-in's.

Colours are named by seaborn palette slot (``"colorblind"`` or ``"dark"``) so that this module,
which the table reads, imports no plotting library; ``report/figures.py`` resolves them.
Adding a built-in learner: one ``STYLES`` record.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass

PALETTES = ("colorblind", "dark")


@dataclass(frozen=True)
class Style:
    """A learner's look: ``colour`` = (seaborn palette, slot), matplotlib ``marker``, and ``exact``: which
    of its layers ``Learner.exact_layers`` names, in words for the table's note ("" when none)."""

    colour: tuple[str, int]
    marker: str
    exact: str = ""


# in table and legend order; colorblind slots chosen so that learners of one family differ most
# (fa orange vs sign_symmetry sky blue, ga purple vs es vermillion); newer rules take "dark" slots
STYLES: dict[str, Style] = {
    "backprop": Style(("colorblind", 0), "o", "every layer"),
    "fa": Style(("colorblind", 1), "s", "the output layer"),
    "dfa": Style(("colorblind", 2), "^", "the output layer"),
    "sign_symmetry": Style(("colorblind", 9), "D", "the output layer"),
    "ga": Style(("colorblind", 4), "v"),
    "cmaes": Style(("colorblind", 5), "P"),
    "es": Style(("colorblind", 3), "X"),
    "snn_bptt": Style(("colorblind", 7), "*", "every layer"),
    "snn_dfa": Style(("colorblind", 8), "h", "the output layer (with a membrane readout)"),
    "pc": Style(("dark", 9), "p"),
    "ff": Style(("dark", 6), ">"),
    "dtp": Style(("dark", 8), "<"),
    "fwd_grad": Style(("dark", 7), "d"),
}
ORDER = tuple(STYLES)
SLOTS = 10  # colours per seaborn palette
# colours and markers no built-in uses, for other learners
SPARE_COLOURS = tuple(
    (p, i) for p in PALETTES for i in range(SLOTS) if (p, i) not in {s.colour for s in STYLES.values()}
)
# filled only: seaborn refuses to mix filled and line-art markers in one legend (a plugin beside
# built-ins); (sides, 0, angle) is matplotlib's regular polygon, none of them a built-in's shape
SPARE_MARKERS = ("8", "H", (7, 0, 0), (5, 0, 180), (4, 0, 22.5), (7, 0, 180), (8, 0, 22.5), (9, 0, 0))


def rank(name: str) -> int:
    """Sort key of a registered learner name: built-ins in ``ORDER``, others after them."""
    return ORDER.index(name) if name in STYLES else len(ORDER)


def _stable(label: str, pool: tuple, taken: set) -> object:
    """The first item of ``pool`` not in ``taken``, starting at a position fixed by ``label``'s bytes
    (crc32: the same in every process and figure); wraps around when every item is taken."""
    start = zlib.crc32(label.encode()) % len(pool)
    for k in range(len(pool)):
        item = pool[(start + k) % len(pool)]
        if item not in taken:
            return item
    return pool[start]


def assign(labels: Iterable[tuple[str, str]]) -> dict[str, tuple[tuple[str, int], str]]:
    """Label -> (colour, marker) for the (label, registered learner) pairs of one figure.

    A label named after a built-in gets its style; another label gets its registered learner's
    style if no label of the figure has it, else a spare colour and marker chosen from the label
    (stable across figures, never a built-in's, distinct within the figure while spares last).
    """
    pairs = sorted(set(labels))
    out = {label: (STYLES[label].colour, STYLES[label].marker) for label, _ in pairs if label in STYLES}
    for label, name in pairs:
        if label in out:
            continue
        used = {colour for colour, _ in out.values()}
        if name in STYLES and STYLES[name].colour not in used:
            out[label] = (STYLES[name].colour, STYLES[name].marker)
    for label, _ in pairs:
        if label not in out:
            colour = _stable(label, SPARE_COLOURS, {c for c, _ in out.values()})
            marker = _stable(label, SPARE_MARKERS, {m for _, m in out.values()})
            out[label] = (colour, marker)  # type: ignore[assignment]
    return out


def exact_text() -> tuple[str, str]:
    """(the learners whose update is exact on some layers, in words; those exact on every layer),
    for the table's note."""
    partial: dict[str, list[str]] = {}
    for name, style in STYLES.items():
        if style.exact and style.exact != "every layer":
            partial.setdefault(style.exact, []).append(name)
    some = "; ".join(f"{text} of {', '.join(names)}" for text, names in partial.items())
    every = " and ".join(name for name, style in STYLES.items() if style.exact == "every layer")
    return some, every
