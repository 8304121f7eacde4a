"""Text from a results folder (labels, configurations, options) made safe for where it is printed.

Labels come from someone else's study file, so a view escapes them the same way everywhere:

- ``terminal(text)``: control characters (ESC, CR, NUL, DEL, C1) shown as ``\\x1b`` and the like, so
  a label cannot move the cursor, recolour or overwrite a terminal (newlines and tabs of the
  layout are kept);
- ``latex_text(text)``: after LaTeX's specials are escaped, control characters shown as
  ``\\textbackslash{}x1b`` and other non-ASCII characters as ``[U+5B66]`` (pdflatex has no glyph for
  them), so every label can be written, never an error;
- ``csv_safe(frame)``: text cells beginning with ``=``, ``+``, ``-``, ``@`` (or tab / CR) get a
  leading ``'``, so a spreadsheet shows them instead of running them as formulas (OWASP's CSV
  injection advice); numbers stay numbers; control characters as for the terminal.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROL_ALL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _shown(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def terminal(text: str) -> str:
    """``text`` with every control character but newline and tab shown as ``\\xNN``."""
    return _CONTROL.sub(_shown, text)


def latex_text(text: str) -> str:
    """Already LaTeX-escaped ``text`` with control characters and non-ASCII characters made printable."""
    out = _CONTROL_ALL.sub(lambda m: "\\textbackslash{}" + _shown(m)[1:], text)
    return "".join(ch if ch.isascii() else f"[U+{ord(ch):04X}]" for ch in out)


def csv_cell(value: Any) -> Any:
    """One CSV cell: text starting a formula neutralized, control characters shown; other values as they are."""
    if not isinstance(value, str):
        return value
    value = _CONTROL.sub(_shown, value)
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every text cell (and column name) passed through ``csv_cell``."""
    out = frame.rename(columns=lambda c: csv_cell(c))
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(csv_cell)
    return out
