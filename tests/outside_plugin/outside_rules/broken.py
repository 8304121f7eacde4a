"""Two broken rules built on the scaffold's learner: one raises at step N, one reports a NaN loss.
Each must fail alone."""

from __future__ import annotations

import math

from torch import Tensor

from bpbench import StepOutput
from outside_rules.scaffolded import Scaffolded  # written by `bpbench new learner scaffolded` (tests/test_plugins.py)

FAIL_AT_STEP = 5


class RaisesAtStep(Scaffolded):
    """The scaffold's learner, raising at its 5th training step."""

    steps = 0

    def train_step(self, x: Tensor, y: Tensor) -> StepOutput:
        self.steps += 1
        if self.steps == FAIL_AT_STEP:
            raise RuntimeError(f"outside rule failed on purpose at step {FAIL_AT_STEP}")
        return super().train_step(x, y)


class NanLoss(Scaffolded):
    """The scaffold's learner, whose 3rd step reports a NaN loss (a diverged rule)."""

    steps = 0

    def train_step(self, x: Tensor, y: Tensor) -> StepOutput:
        self.steps += 1
        out = super().train_step(x, y)
        return StepOutput(math.nan, out.forward_samples) if self.steps >= 3 else out
