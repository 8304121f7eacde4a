"""One DuckDB query over many run files, where one file whose data pages do not decode costs a warning.

DuckDB reads every file of ``read_parquet($files)`` in one query, so a single corrupt file (a
readable footer over damaged pages) fails the whole query. ``query_files`` runs the query over
all files at once; should it fail, it runs it again file by file, names each file that fails in
a ``ResultsWarning`` and returns the rows of the others. The query must compute per file what
it computes over all (a run's rows lie in one file: its folder's, or its batch's part).
"""

from __future__ import annotations

from typing import Any

import duckdb
import pandas as pd

from bpbench.experiments.store.dataset import warn


def query_files(con: duckdb.DuckDBPyConnection, sql: str, files: list[str]) -> pd.DataFrame:
    """``sql`` (reading ``$files``) over ``files``; a file that fails to decode is warned about and left out."""
    try:
        return con.execute(sql, {"files": files}).df()
    except duckdb.Error:
        if len(files) == 1:
            _skipped(files[0], "its data does not decode")
            return pd.DataFrame()
    frames: list[Any] = []
    for path in files:
        try:
            frames.append(con.execute(sql, {"files": [path]}).df())
        except duckdb.Error as exc:
            _skipped(path, f"its data does not decode ({type(exc).__name__}: {str(exc)[:200]})")
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _skipped(path: str, why: str) -> None:
    warn(f"skipped {path}: {why}; its run's rows are left out")
