"""Early stopping of weak tuning trials with Optuna's pruners, at the runner's evaluation schedule.

``make_pruner(name, epochs)``: the Optuna pruner a study's ``[tuning] pruner`` names (epochs are the
resource: the first rung is epoch 1, Hyperband's largest resource the run's epochs).
``report_hook(spec, root)``: for a tuning trial's *probe* run (its first tuning seed, whose spec tag
names the Optuna study under ``"report"``) the callback the runner calls after each evaluated
epoch: it reports the validation accuracy to the trial in ``OUT/tuning/journal.log`` (step = epoch)
and returns the pruner's verdict (True: stop, the run ends ``stopped_by = "pruned"``). None for
every other run. The driver, not the worker, then tells the trial PRUNED (schedule/tuning.py).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import optuna

from bpbench.experiments.plan.config import build
from bpbench.experiments.plan.spec import Budget, RunSpec

EpochHook = Callable[[int, dict[str, float]], bool]  # (epoch, split -> accuracy) -> stop the run?
HYPERBAND_FACTOR = 3


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    """The pruner ``name`` (none | median | successive_halving | hyperband) for runs of ``epochs`` epochs."""
    if name == "median":  # Optuna's defaults: prune below the median of completed trials after 5 of them
        return optuna.pruners.MedianPruner()
    if name == "successive_halving":  # rungs at epochs 1, 4, 16, ...: keep the top quarter of each
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=max(1, epochs), reduction_factor=HYPERBAND_FACTOR
        )
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"pruner {name!r}: allowed: none, median, successive_halving, hyperband")


def report_hook(spec: RunSpec, root: Path | None) -> EpochHook | None:
    """The per-epoch report of a probe run of a pruned study (None for any other run, or without a folder)."""
    tag = spec.tuning or {}
    name = tag.get("report")
    if not name or root is None:
        return None
    from bpbench.experiments.schedule.tuning import journal  # the journal's one definition (imports execute)

    storage = journal(root)
    epochs = build(Budget, spec.budget, "budget").epochs
    pruner = make_pruner(str(tag["pruner"]), epochs)

    def hook(epoch: int, accuracy: dict[str, float]) -> bool:
        if epoch < 1 or "val" not in accuracy:
            return False
        study = optuna.load_study(study_name=name, storage=storage, pruner=pruner)
        number = storage.get_trial_id_from_study_id_trial_number(
            storage.get_study_id_from_name(name), int(tag["trial"])
        )
        trial = optuna.trial.Trial(study, number)
        with warnings.catch_warnings():  # a resumed run reports an epoch again: Optuna keeps the first value
            warnings.simplefilter("ignore")
            trial.report(accuracy["val"], epoch)
        return bool(trial.should_prune())

    return hook


__all__ = ["EpochHook", "make_pruner", "report_hook"]
