"""Check the layout of every figure ``bpbench plot`` draws for results folders (with runs).

``python -m scripts.check_figures DIR [DIR ...]``: prints each figure with a legend or label outside
the canvas or overlapping another, or a warning while drawing (e.g. matplotlib's "identical low and
high xlims"; ``report/figure_layout.py``), and exits 1 if any.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bpbench.experiments.report.figure_layout import folder_problems


def main(argv: list[str]) -> int:
    bad = 0
    for folder in argv:
        problems = folder_problems(Path(folder))
        for name, found in sorted(problems.items()):
            for line in found:
                print(f"{folder}: {name}: {line}")
            bad += bool(found)
        print(f"{folder}: {len(problems)} figures drawn, {sum(bool(p) for p in problems.values())} with problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
