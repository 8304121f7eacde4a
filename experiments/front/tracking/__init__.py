"""Tracking: a mirror of a results folder in MLflow, TensorBoard or Weights & Biases.

``bpbench run STUDY --track mlflow[:URI] | tensorboard[:DIR] | wandb[:PROJECT]`` (repeatable; also a
``[tracking]`` table, ``bpbench.run(..., track=...)``) and ``bpbench track DIR --to ...`` feed the
same trackers (one file per backend, ``Tracker`` in ``base.py``) with ``TrackedRun`` records read
from the store after each run is stored (``record.py``). The results folder stays the source of
truth: a tracking failure costs one warning per run, never a run.
"""
