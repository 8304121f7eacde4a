"""Check the layout of every figure ``bpbench plot`` draws for results folders (with runs).

``python -m scripts.check_figures DIR [DIR ...]``: prints each figure with a legend or label outside
the canvas or overlapping another (``report/figure_layout.py``), and exits 1 if any; matplotlib
warnings (e.g. "identical low and high xlims") are errors.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from bpbench.experiments.report.figure_layout import folder_problems


def main(argv: list[str]) -> int:
    bad = 0
    for folder in argv:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            problems = folder_problems(Path(folder))
        for name, found in sorted(problems.items()):
            for line in found:
                print(f"{folder}: {name}: {line}")
            bad += bool(found)
        print(f"{folder}: {len(problems)} figures drawn, {sum(bool(p) for p in problems.values())} with problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
