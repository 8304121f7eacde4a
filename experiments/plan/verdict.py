"""A study's ``[verdict]`` table: the equivalence margin its comparisons are judged at.

``[verdict] margin = 0.01`` (test accuracy, a fraction): a row whose difference to its
reference lies provably within ±margin (TOST, Holm-corrected) reads *equivalent within ±m*.
``study_margin(raw)`` -> the margin of a study table (``DEFAULT_MARGIN`` when absent); a value
that is not a number in (0, 1) is a ConfigError naming it.
"""

from __future__ import annotations

from typing import Any

from bpbench.experiments.plan.config import ConfigError

DEFAULT_MARGIN = 0.01  # one point of test accuracy: the smallest difference the built-in studies care about
VERDICT_KEYS = ("margin",)


def study_margin(raw: dict[str, Any]) -> float:
    """The equivalence margin of study table ``raw`` (``[verdict] margin``, default ``DEFAULT_MARGIN``)."""
    table = raw.get("verdict", {})
    if not isinstance(table, dict):
        raise ConfigError(f"verdict = {table!r}: expected a table, e.g. [verdict] margin = 0.01")
    unknown = sorted(set(table) - set(VERDICT_KEYS))
    if unknown:
        raise ConfigError(f"unknown key verdict.{unknown[0]}; allowed: {', '.join(VERDICT_KEYS)}")
    margin = table.get("margin", DEFAULT_MARGIN)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0.0 < margin < 1.0:
        raise ConfigError(f"verdict.margin = {margin!r}: expected a test-accuracy difference in (0, 1), e.g. 0.01")
    return float(margin)
