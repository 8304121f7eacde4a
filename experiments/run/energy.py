"""Inference cost per sample for every learner: synaptic operations and an energy estimate.

Every learner that has a model is counted the same way: NeuroBench's dense and effective
synaptic operations (``learners.synops.count_synops``, hooks on the model's connection
layers while the learner's own ``predict`` runs; zero inputs and zero-padding taps are
skipped; ACs when a layer's input is spikes, MACs otherwise), via ``Learner.inference_cost``.
Only a learner without a model falls back to the FLOP counter on ``predict(x)``: MACs =
FLOPs / 2 per sample, ACs = 0, effective = dense (an upper bound: nothing is skipped); its
rows carry ``synops_from_flops`` = 1 and the table marks its cells.

Energy per sample = effective MACs x E_MAC + effective ACs x E_AC, with the 45 nm
figures of Horowitz, "Computing's energy problem", ISSCC 2014 (as tabulated by Han et
al. 2015): 32-bit float multiply 3.7 pJ + 32-bit float add 0.9 pJ = 4.6 pJ per MAC;
32-bit float add 0.9 pJ per AC. Memory access energy is not included.
"""

from __future__ import annotations

from torch import Tensor

from bpbench.experiments.run.probes import count_flops
from bpbench.learners.base import Learner, NotMeasurable
from bpbench.learners.synops import count_synops

FLOAT32_MULT_J = 3.7e-12  # Horowitz ISSCC 2014, 45 nm, 32-bit float multiply
FLOAT32_ADD_J = 0.9e-12  # Horowitz ISSCC 2014, 45 nm, 32-bit float add
ENERGY_PER_MAC_J = FLOAT32_MULT_J + FLOAT32_ADD_J  # 4.6 pJ
ENERGY_PER_AC_J = FLOAT32_ADD_J  # 0.9 pJ

COST_METRICS = (
    "synops_per_sample",
    "synops_dense_per_sample",
    "macs_per_sample",
    "acs_per_sample",
    "energy_per_sample_j",
)
FROM_FLOPS = "synops_from_flops"  # 1 on the cost rows of a learner without a model (FLOPs / 2 of predict)


def energy_joules(macs: float, acs: float) -> float:
    """Energy of ``macs`` multiply-accumulates and ``acs`` accumulates (32-bit float, 45 nm)."""
    return macs * ENERGY_PER_MAC_J + acs * ENERGY_PER_AC_J


def cost_rows(learner: Learner, x: Tensor) -> list[tuple[str, str, float]]:
    """Per-sample inference cost rows (metric, layer "", value) for any learner on probe batch ``x``.

    Metrics: synops_per_sample (effective), synops_dense_per_sample, macs_per_sample and
    acs_per_sample (effective), energy_per_sample_j; plus synops_from_flops = 1 when the
    learner has no model and the counts are FLOPs / 2. ``NotMeasurable`` when neither applies.
    """
    n = x.shape[0]
    layers = learner.inference_cost(x)
    model = learner.model
    if layers is None and model is not None:  # a learner that opted out still has connection layers to hook
        layers = count_synops(model, lambda: learner.predict(x), n)
    marks: list[tuple[str, str, float]] = []
    if layers is None:
        _, flops = count_flops(lambda: learner.predict(x))
        if flops <= 0:
            raise NotMeasurable(
                f"{type(learner).__name__} has no model and the FLOP counter saw no operation in its predict"
            )
        macs = flops / 2 / n
        dense = effective = macs
        acs = 0.0
        marks = [(FROM_FLOPS, "", 1.0)]
    else:
        if not layers:
            raise NotMeasurable(f"{type(learner).__name__}.inference_cost returned no layers")
        dense = sum(op.dense for op in layers.values())
        effective = sum(op.effective for op in layers.values())
        macs = sum(op.effective for op in layers.values() if not op.accumulate)
        acs = sum(op.effective for op in layers.values() if op.accumulate)
    return [
        ("synops_per_sample", "", effective),
        ("synops_dense_per_sample", "", dense),
        ("macs_per_sample", "", macs),
        ("acs_per_sample", "", acs),
        ("energy_per_sample_j", "", energy_joules(macs, acs)),
        *marks,
    ]
