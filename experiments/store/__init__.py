"""Storage: a results folder on disk, and what each run left in it.

``run_store`` (run folders, atomic writes), ``describe`` (what a run was, from its meta),
``records`` (per-run measures reduced from metric rows), ``dataset`` (the partitioned
parquet dataset), ``compact`` (run folders into the dataset), ``claims`` (which driver holds
a run). Imports ``run`` and ``plan`` only.
"""
