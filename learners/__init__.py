"""What learns: the ``Learner`` interface (``learners.base``) and the shared model builder.

Learners are found through the ``bpbench.learners`` entry-point group
(``experiments.registry``), the built-ins included.
"""
from bpbench.learners.base import Learner, StepOutput, TaskInfo
from bpbench.learners.models import ModelSpec, build_model, weight_layers

__all__ = ["Learner", "StepOutput", "TaskInfo", "ModelSpec", "build_model", "weight_layers"]
