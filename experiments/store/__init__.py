"""Storage: a results folder on disk, and what each run left in it.

``run_table`` (every run of a folder read once per command: what every view reads),
``curves`` (per-epoch curves in one DuckDB scan), ``run_store`` (run folders, atomic writes),
``describe`` (what a run was, from its meta), ``records`` (per-run measures reduced from
metric rows), ``dataset`` (the partitioned parquet dataset), ``compact`` (run folders into
the dataset), ``claims`` (which driver holds a run), ``validate`` (is a meta what bpbench
wrote), ``safe_paths`` (paths kept inside a results folder), ``selection`` (a tuned study's
validation score), ``study_record`` (the study definition a folder was first run with),
``record_schema`` (the types and ranges a stored record may hold), ``parquet_query`` (DuckDB
over part files, a bad file costing a warning).
Imports ``plan`` only.
"""
