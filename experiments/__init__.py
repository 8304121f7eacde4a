"""How learners are compared on tasks, in rooms by role; imports run one way::

    front -> report -> schedule -> store -> run -> plan -> bpbench.learners, bpbench.tasks

A room may import any room to its right, never one to its left.
"""
