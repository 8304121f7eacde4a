"""The measurement catalog: one record per per-run measurement, read by the runner, the per-run
records (``store/records.py``), the summary table and its note (``report/summary.py``, ``report/render.py``).

A ``Measure`` says what the runner records (``metrics``: its stored metric rows, and when they
are taken), how one run's rows reduce to its value (``reduce``), the public column name
(``column``: meta.json's ``measures``, ``Results``, the compacted dataset), and how the table
shows it (``header``, number ``fmt``, ``scale`` divided out before formatting, ``note``).
``LAYER_COMPARISONS`` names the per-layer comparisons of a learner's update signal with the
true gradient the runner takes at sampled steps (each name's probe is in ``run/probes.py``),
each with the metric of its mean over the layers that are not exact by construction.

Adding a measurement: one record here, plus the code that takes it (a probe, a runner row).
This module imports no torch (the table reads it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

# reduce(rows of the runs, final) -> one value per run (index run_id); ``final`` holds the last
# evaluation's run-level rows as columns "<split>_<metric>" (index run_id)
Reduce = Callable[[pd.DataFrame, pd.DataFrame], pd.Series]

TAKEN = ("evaluation", "health", "end")  # at each evaluation; at sampled steps; once after training


@dataclass(frozen=True)
class Measure:
    """One per-run measurement (see the module docstring)."""

    name: str
    column: str
    taken: str
    metrics: tuple[str, ...]
    reduce: Reduce
    header: str | None = None  # None: not a table column
    fmt: str = ".3g"
    scale: float = 1.0
    note: str = ""
    flag: bool = False  # a yes/no value (stored as a boolean, not a number)

    def __post_init__(self) -> None:
        if self.taken not in TAKEN:
            raise ValueError(f"measure {self.name!r}: taken = {self.taken!r}; allowed: {', '.join(TAKEN)}")


def final(split: str, metric: str) -> Reduce:
    """The run's value of ``metric`` on ``split`` at its last evaluation (NaN when not recorded)."""
    key = f"{split}_{metric}"

    def reduce(rows: pd.DataFrame, last: pd.DataFrame) -> pd.Series:
        return last[key] if key in last else pd.Series(math.nan, index=last.index)

    return reduce


def difference(a: Reduce, b: Reduce) -> Reduce:
    """``a - b`` per run."""
    return lambda rows, last: a(rows, last) - b(rows, last)


def geometric_mean_of(metric: str) -> Reduce:
    """Geometric mean of ``metric``'s run-level rows over sampled steps (0 when one is exactly 0)."""

    def one(values: pd.Series) -> float:
        arr = values.to_numpy(dtype=float)
        if (arr < 0).any():
            raise ValueError(f"{metric} has negative values {arr[arr < 0][:3]}: geometric mean undefined")
        if (arr == 0).any():
            return 0.0
        return float(np.exp(np.log(arr).mean()))

    def reduce(rows: pd.DataFrame, last: pd.DataFrame) -> pd.Series:
        return rows[rows["metric"] == metric].groupby("run_id")["value"].apply(one).reindex(last.index)

    return reduce


def mean_of(metric: str) -> Reduce:
    """Arithmetic mean of ``metric``'s rows over sampled steps."""

    def reduce(rows: pd.DataFrame, last: pd.DataFrame) -> pd.Series:
        return rows[rows["metric"] == metric].groupby("run_id")["value"].mean().reindex(last.index)

    return reduce


def flag(split: str, metric: str) -> Reduce:
    """True where the run's last ``metric`` on ``split`` is 1."""
    inner = final(split, metric)
    return lambda rows, last: inner(rows, last) == 1.0


# (per-layer metric, metric of its mean over non-exact layers): taken at sampled steps
LAYER_COMPARISONS = (("grad_alignment", "grad_alignment_mean"), ("grad_projection", "grad_projection_mean"))

EXACT_NOTE = "the layers whose update is exact by construction (Learner.exact_layers: {exact}) are left out"

CATALOG: tuple[Measure, ...] = (
    Measure("test_acc", "test_accuracy", "evaluation", ("accuracy",), final("test", "accuracy"), "test acc", ".3f"),
    Measure(
        "gap",
        "train_test_gap",
        "evaluation",
        ("accuracy",),
        difference(final("train", "accuracy"), final("test", "accuracy")),
        "train-test gap",
        ".3f",
        note="Train-test gap: train accuracy on a fixed stratified subset of the training split as large as "
        "the test split (meta.json: train_eval_samples).",
    ),
    Measure("val_acc", "val_accuracy", "evaluation", ("accuracy",), final("val", "accuracy")),
    Measure("train_s", "train_seconds", "evaluation", ("train_seconds",), final("train", "train_seconds"), "train s"),
    Measure("flops", "train_flops", "evaluation", ("train_flops",), final("train", "train_flops"), "GFLOPs", scale=1e9),
    Measure("samples", "train_samples", "evaluation", ("train_samples",), final("train", "train_samples")),
    Measure(
        "synops",
        "synops_per_sample",
        "evaluation",
        ("synops_per_sample",),
        final("test", "synops_per_sample"),
        "synops/sample",
    ),
    Measure(
        "energy",
        "energy_per_sample_j",
        "evaluation",
        ("energy_per_sample_j",),
        final("test", "energy_per_sample_j"),
        "energy/sample uJ",
        scale=1e-6,
    ),
    Measure(
        "peak_mem",
        "peak_memory_bytes",
        "end",
        ("peak_memory_bytes",),
        final("train", "peak_memory_bytes"),
        "peak MiB",
        scale=2.0**20,
        note="Peak MiB: the first training step's own peak (what it allocates: activations, gradients, new "
        "optimizer state), not the learner's stored state (metric state_bytes) nor the data.",
    ),
    Measure(
        "grad_ratio",
        "grad_norm_ratio",
        "health",
        ("grad_norm_ratio",),
        geometric_mean_of("grad_norm_ratio"),
        "grad ratio first/last",
        note="Grad ratio: geometric mean over sampled steps of the update-signal norm of the first layer the "
        "rule trains over that of the last (a layer whose update signal is absent or exactly 0 at the "
        "step, such as an unused readout, is left out; n/a with fewer than two such layers).",
    ),
    Measure(
        "alignment",
        "grad_alignment_mean",
        "health",
        ("grad_alignment_mean",),
        mean_of("grad_alignment_mean"),
        "alignment cos",
        ".3f",
        note="Alignment: mean cosine of the update signal with the true gradient over sampled steps; "
        f"{EXACT_NOTE} (n/a where every layer is exact, as for {{all_exact}}).",
    ),
    Measure(
        "projection",
        "grad_projection_mean",
        "health",
        ("grad_projection_mean",),
        mean_of("grad_projection_mean"),
        "projection on grad",
        note="Projection: mean over sampled steps and the same layers of the update signal u's projection "
        "coefficient on the true gradient g, (u.g)/(g.g): 1 for the exact gradient; unlike the cosine it "
        "shows scale (predictive coding's partial inference, a biased estimator's scale, feedback "
        "alignment's magnitude).",
    ),
    Measure(
        "cost_from_flops",
        "cost_from_flops",
        "evaluation",
        ("synops_from_flops",),
        flag("test", "synops_from_flops"),
        flag=True,
    ),
)


def shown() -> tuple[Measure, ...]:
    """The measures that are table columns, in table order (read at call time: a test may extend ``CATALOG``)."""
    return tuple(m for m in CATALOG if m.header is not None)


def stored_metrics() -> tuple[str, ...]:
    """Every metric the reductions read, each once, in catalog order."""
    return tuple(dict.fromkeys(metric for m in CATALOG for metric in m.metrics))


def health_metrics() -> tuple[str, ...]:
    """The metrics the runner takes at sampled steps: gradient norms, their ratio, the layer comparisons."""
    return ("grad_norm", "grad_norm_ratio", *(name for pair in LAYER_COMPARISONS for name in pair))
