"""bpbench: backprop against its alternatives on equal tasks, architecture and compute.

The Python API::

    import bpbench
    results = bpbench.run("quick", overrides={"seeds": 1})   # or a TOML path, or a dict
    results.summary            # one row per run (status, error, test_accuracy, ...)
    print(results.table())     # the table ``bpbench table`` prints
    results.plot(); results.report()
    bpbench.load("bpbench-out/quick")   # the Results of a folder

- ``run(study, *, out, overrides, jobs, threads, device, executor, address, progress)``
  -> ``Results``; bad input raises ``ConfigError`` (the line ``bpbench run`` prints).
- ``load(out)`` -> ``Results``: ``.summary``, ``.metrics``, ``.table()``, ``.plot()``,
  ``.report()``, ``.out``.
- The interfaces a plugin implements: ``Learner``, ``StepOutput``, ``TaskInfo``,
  ``ModelSpec``, ``build_model``, ``weight_layers`` (learners); ``Task``, ``TaskParams`` (tasks).

What a learner plugin builds on (``bpbench new learner NAME`` writes a package that uses them):

- ``Backprop``, ``BackpropParams``: the reference rule, to subclass (override ``setup`` and
  ``train_step``); ``BackpropParams`` carries the standard optimizer options ``optimizer``,
  ``lr``, ``momentum``, ``weight_decay`` and ``batch_size`` a study can set.
- ``make_optimizer(params, tensors)``: the optimizer those options name (SGD or Adam).
- ``param(default, gt=, ge=, lt=, le=, unset=)`` and ``check_params(obj)``: declare an option's
  allowed range on its dataclass field, check them all (with finite floats and Literal choices)
  in ``__post_init__``; the one-line message names the value and what is allowed.
- ``NotMeasurable``: raise it from a measurement hook that does not apply (the runner records n/a
  with its reason); ``LayerOps``: one layer's synaptic operations, what ``inference_cost`` returns.
- The feedback routes of fa, dfa and sign_symmetry (``learners.feedback``): ``feedback_step(model,
  optimizer, x, y, routes)`` runs one step whose backward pass sends each routed layer's error to
  its input along a ``Route``: ``through(layer, matrix)`` (a matrix shaped like W in place of W),
  ``direct(tap, matrix)`` with ``ErrorTap`` and ``record_error`` (the output error, projected);
  ``feedback_forward`` is the forward pass alone; ``draw_feedback`` draws a fixed random matrix;
  ``output_layer(model)`` names the layer whose update stays exact (``exact_layers``).

Subpackages (installed under this one namespace):

- ``bpbench.learners``: what learns (the ``Learner`` interface, the model builder, the rules);
- ``bpbench.tasks``: what is learned (the ``Task`` interface, the data sets);
- ``bpbench.experiments``: how they are compared (studies, runner, executors, store, tables, CLI).

In the repository these live in the top-level folders ``learners/``, ``tasks/`` and
``experiments/``; ``pyproject.toml`` maps them into this package when it is built. In a
source checkout that is not installed (or installed but run from the checkout's root) the
same folders are found through ``__path__`` below, so the checkout's code is what runs.
"""

from __future__ import annotations

from pathlib import Path as _Path

_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "learners" / "__init__.py").is_file() and (_checkout / "pyproject.toml").is_file():
    __path__.append(str(_checkout))  # source checkout: subpackages are the sibling folders

# The public names load on first use (PEP 562), so ``import bpbench`` and the command line's
# help stay fast: torch, pandas and friends are imported only by what needs them.
_EXPORTS = {
    "Learner": "bpbench.learners.base",
    "StepOutput": "bpbench.learners.base",
    "TaskInfo": "bpbench.learners.base",
    "ModelSpec": "bpbench.learners.models",
    "build_model": "bpbench.learners.models",
    "weight_layers": "bpbench.learners.models",
    "Task": "bpbench.tasks.base",
    "TaskParams": "bpbench.tasks.base",
    "run": "bpbench.experiments.front.api",
    "load": "bpbench.experiments.front.results",
    "Results": "bpbench.experiments.front.results",
    "ConfigError": "bpbench.experiments.plan.config",
    "NotMeasurable": "bpbench.learners.base",
    "LayerOps": "bpbench.learners.base",
    "Backprop": "bpbench.learners.backprop",
    "BackpropParams": "bpbench.learners.backprop",
    "make_optimizer": "bpbench.learners.backprop",
    "param": "bpbench.learners.params",
    "check_params": "bpbench.learners.params",
    **{
        name: "bpbench.learners.feedback"
        for name in (
            "Route",
            "feedback_step",
            "feedback_forward",
            "through",
            "direct",
            "ErrorTap",
            "record_error",
            "draw_feedback",
            "output_layer",
        )
    },
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bpbench' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
