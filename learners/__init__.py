"""What learns: the ``Learner`` interface (``learners.base``), the shared model builder
(``learners.models``), declared option checks (``learners.params``) and the rules.

Learners are found through the ``bpbench.learners`` entry-point group
(``experiments.plan.registry``), the built-ins included. The names below load on first use, so
importing a light module of this package (``learners.params``) imports no torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Learner": "base",
    "StepOutput": "base",
    "TaskInfo": "base",
    "ModelSpec": "models",
    "build_model": "models",
    "weight_layers": "models",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bpbench.learners' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"bpbench.learners.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
