"""What is learned: the ``Task`` interface (``tasks.base``) and the built-in data sets.

Tasks are found through the ``bpbench.tasks`` entry-point group (``experiments.plan.registry``).
"""

from bpbench.tasks.base import Split, Task, TaskData, TaskParams

__all__ = ["Split", "Task", "TaskData", "TaskParams"]
