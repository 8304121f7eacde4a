"""Scheduling: which runs execute where, and when.

``execute`` (one run in a worker, stored), ``queue`` (the runs left, claimed one by one),
``process_pool`` (inline and process executors), ``ray_pool`` (the Ray executor),
``slurm_pool`` (the Slurm executor: a job array through submitit), ``slurm_options`` (what
each array task asks Slurm for),
``progress`` (the progress bar), ``tuning`` (a tuned study's protocol: draw, train, select,
retrain on fresh seeds), ``pruning`` (Optuna's pruners: a trial's probe run reports each
evaluated epoch), ``journal_check`` (the tuning journal checked against the run folders).
Imports ``store``, ``run`` and ``plan``.
"""
