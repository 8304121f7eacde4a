"""The runner's instruments on their own: peak step memory against hand counts, for any step shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bpbench.experiments.run.probes import peak_live_bytes, peak_step_memory, state_bytes
from bpbench.learners.backprop import Backprop, BackpropParams
from bpbench.learners.models import ModelSpec
from learner_shapes import FrozenFeatures, WeightPerturbation

CPU = torch.device("cpu")


def test_peak_memory_of_known_allocations() -> None:
    before = torch.ones(50_000)  # allocated before the step and freed inside it: not the step's

    def step() -> torch.Tensor:
        nonlocal before
        a = torch.empty(1000)  # 4,000 B
        b = torch.empty(2000)  # 8,000 B: 12,000 B live, the peak
        del a
        _c = torch.empty(500)  # 2,000 B: 10,000 B live (kept alive to the return)
        before = None  # frees 200,000 B the step did not allocate
        return b

    result, peak = peak_step_memory(step, CPU)
    assert result.shape == (2000,)
    assert peak == 12_000


def test_peak_memory_of_a_matmul_chain() -> None:
    w = torch.randn(64, 32)
    x = torch.randn(100, 64)

    def step() -> float:
        h = x @ w  # 100 x 32 floats = 12,800 B
        g = h.relu()  # another 12,800 B
        return float(g.sum())  # a 4 B scalar while both live

    _, peak = peak_step_memory(step, CPU)
    assert peak == 2 * 12_800 + 4


def test_peak_live_bytes_pairs_frees_by_address() -> None:
    events = [
        {"Device Type": 0, "Addr": 1, "Bytes": 100},
        {"Device Type": 0, "Addr": 2, "Bytes": 50},
        {"Device Type": 0, "Addr": 1, "Bytes": -100},
        {"Device Type": 0, "Addr": 9, "Bytes": -1000},
        {"Device Type": 1, "Addr": 3, "Bytes": 10_000},
        {"Device Type": 0, "Addr": 1, "Bytes": 80},
    ]
    assert peak_live_bytes(events) == 150  # the free of block 9 (not ours) and the CUDA block do not count


@pytest.mark.parametrize("cls", [WeightPerturbation, FrozenFeatures])
def test_peak_memory_of_steps_the_old_tracker_refused(cls, digits) -> None:
    """MemTracker raised on a step calling its model several times, and on frozen parameters."""
    learner = cls(ModelSpec(hidden=(32,)), digits.info, cls.Params(), torch.Generator().manual_seed(0), CPU)
    x, y = digits.train.x[:64], digits.train.y[:64]
    out, peak = peak_step_memory(lambda: learner.train_step(x, y), CPU)
    assert out.forward_samples >= 64
    assert peak >= 64 * 32 * 4  # at least the hidden activations of one forward pass


def test_state_bytes_counts_each_storage_once(digits) -> None:
    t = torch.zeros(10, 10)
    assert state_bytes({"a": t, "b": [t.view(-1), (t[0],)], "c": np.zeros(5), "n": 3}) == 400 + 40
    learner = Backprop(ModelSpec(hidden=(32,)), digits.info, BackpropParams(), torch.Generator().manual_seed(0), CPU)
    learner.train_step(digits.train.x[:64], digits.train.y[:64])
    params = list(learner.model.parameters())
    weights = sum(p.numel() for p in params) * 4
    # weights, Adam's two moment estimates, and one float32 step counter per parameter tensor
    assert state_bytes(learner.state_dict()) == 3 * weights + 4 * len(params)
