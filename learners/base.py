"""The learner interface: the one place a third-party learning rule has to read.

A learner owns only its update rule. The runner (``experiments.run.runner``) owns the
loop, the budget, the clock, the seeds, evaluation and every measurement.

Flow of one run::

    learner = LearnerClass(model_spec, task, params, generator, device)
        # Learner.__init__: check_model, store the five arguments, then self.setup()
    for each minibatch (x, y) the runner draws:     # x: (B, *task.input_shape), y: (B,) int64
        out = learner.train_step(x, y)              # one update: a minibatch (gradient rules)
                                                    # or a generation (population rules)
        every N steps: learner.update_signal()      # {layer: tensor}, for gradient health
    logits = learner.predict(x)                     # (B, n_classes), no state change

Images arrive as (B, C, H, W); speech as (B, T, F) with the frame axis T first, so a
spiking learner can use it as time. ``learners.models.build_model`` builds the shared
network every learner trains; learners differ in their update rule, never by owning a
private copy of the architecture.

The contract of a ``Learner`` subclass:

- ``Params``: a frozen dataclass of the rule's options with defaults and a ``batch_size``;
  declare each option's allowed values with ``learners.params.param`` and call
  ``check_params(self)`` in ``__post_init__`` (study files are checked against it before
  any run starts). Subclassing ``BackpropParams`` gives the standard optimizer options
  (``optimizer``, ``lr``, ``momentum``, ``weight_decay``) that ``make_optimizer`` reads.
- ``setup()``: build the network into ``self.model`` and the rule's state from the stored
  ``model_spec``, ``task``, ``params``, ``generator`` and ``device`` (no ``__init__`` needed).
- Required: ``train_step``, ``predict``, ``update_signal``, ``state_dict``, ``load_state_dict``.
- Optional hooks, each with a working default:
  ``archs`` / ``check_model`` (models the rule refuses, before any run starts);
  ``objective`` (the loss the rule trains; default cross-entropy);
  ``true_gradient`` (the exact gradient of ``objective`` that alignment compares with; default: autograd
  on ``self.model``);
  ``exact_layers`` (layers whose update is the true gradient by construction; default none);
  ``check_norm_ratio`` (raise ``NotMeasurable`` where the first/last norm ratio is the estimator's, not
  the gradient's; default: it is meaningful);
  ``diagnostics`` (extra rows at gradient-health steps; default none);
  ``evaluation_metrics`` (extra rows at each evaluation; default none);
  ``inference_cost`` (synaptic operations of ``predict``; default: counted on ``self.model``).
- A measurement hook that does not apply raises ``NotMeasurable("reason")``: the runner
  records n/a with that reason, never a made-up number.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from bpbench.learners.models import ModelSpec


class NotMeasurable(Exception):
    """Raised by a measurement hook (``update_signal``, ``true_gradient``, ``inference_cost``,
    ``diagnostics``, ...) when that measurement does not apply to this learner or this step.

    The message is the reason. The runner records the measurement as n/a with that reason
    (in the run's metadata) and the run goes on; it never stands in for a real failure.
    """


@dataclass(frozen=True)
class TaskInfo:
    """What a learner may know about a task (never the data itself)."""

    name: str
    modality: Literal["image", "speech"]
    input_shape: tuple[int, ...]  # image: (C, H, W); speech: (T, F)
    n_classes: int


@dataclass(frozen=True)
class LayerOps:
    """Synaptic operations of one connection layer per sample, counted the NeuroBench way.

    dense: every connection evaluated; effective: nonzero weight x nonzero input only.
    accumulate: True when the layer's input was spikes (all values in {-1, 0, 1}), so its
    operations are accumulates (ACs); False: multiply-accumulates (MACs).
    """

    dense: float
    effective: float
    accumulate: bool


@dataclass(frozen=True)
class StepOutput:
    """What one ``train_step`` reports.

    loss: the training loss on the step's minibatch (for population rules, the loss of
        the current best or mean solution: say which in the learner's docstring).
    forward_samples: how many single-sample forward passes the step made (a population
        of 64 on a batch of 512 makes 32,768); the runner sums it as a compute measure.
    """

    loss: float
    forward_samples: int


class Learner(ABC):
    """Base class of every learning rule.

    Subclasses set ``Params`` to a frozen dataclass of their hyperparameters (with
    defaults, type hints and a ``batch_size`` field); study files are validated against
    it before any run starts. ``archs`` names the ``model.arch`` values the rule can train
    (None: every arch ``build_model`` builds); ``check_model`` refuses the rest, and
    anything else the rule cannot train. ``model`` is the network being trained, set by
    ``setup`` (None for a rule without one: unless overridden, ``true_gradient`` is then n/a
    and ``inference_cost`` None, so the energy estimate falls back to FLOPs).
    """

    Params: ClassVar[type]
    archs: ClassVar[frozenset[str] | None] = None
    model: nn.Module | None = None

    @classmethod
    def check_model(cls, spec: ModelSpec, params: Any = None) -> None:
        """Raise ValueError, naming the value and what is allowed, if this rule cannot train ``spec``.

        ``params``: the rule's ``Params`` (None: its defaults), for rules whose supported models
        depend on an option. Called when a study is validated (before any run starts) and
        again by ``__init__``.
        The default refuses an arch outside ``archs``; override it (calling super) to refuse
        more, e.g. batch norm for a rule with no update for its parameters.
        """
        if cls.archs is not None and spec.arch not in cls.archs:
            raise ValueError(
                f"model.arch = {spec.arch!r}: {cls.__name__} trains only "
                f"arch = {' | '.join(repr(a) for a in sorted(cls.archs))}"
            )

    def __init__(
        self,
        model_spec: ModelSpec,
        task: TaskInfo,
        params: Any,
        generator: torch.Generator,
        device: torch.device,
    ) -> None:
        """The one construction path: check the model, store the five arguments, call ``setup()``.

        model_spec, task and params in; ``generator`` is the run's only randomness source.
        Subclasses override ``setup``, not this.
        """
        type(self).check_model(model_spec, params)
        self.model_spec = model_spec
        self.task = task
        self.params = params
        self.generator = generator
        self.device = device
        self.setup()

    def setup(self) -> None:  # noqa: B027 -- an optional hook with a no-op default, not abstract
        """Build the network (into ``self.model``, on ``self.device``) and the rule's own state.

        Called once by ``__init__`` after the five arguments are stored as ``self.model_spec``,
        ``self.task``, ``self.params``, ``self.generator`` and ``self.device``. Draw every random
        number from ``self.generator`` (the shared init first: ``build_model(...)``, so learners
        of one seed start from the same network), in a fixed order. A subclass of a learner
        calls ``super().setup()`` first. Raise ValueError for a task or option it cannot run.
        Default: nothing (a rule without a model).
        """

    @property
    def batch_size(self) -> int:
        """Minibatch size the runner draws for each ``train_step``."""
        return int(self.params.batch_size)

    @abstractmethod
    def train_step(self, x: Tensor, y: Tensor) -> StepOutput:
        """One update from a minibatch (x on ``self.device``, y int64 labels)."""

    @abstractmethod
    def predict(self, x: Tensor) -> Tensor:
        """Class scores (B, n_classes) for x; must not change any learner state."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume this learner (weights, optimizer, feedback...)."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""

    @abstractmethod
    def update_signal(self) -> dict[str, Tensor]:
        """The last update's gradient-like signal per weight layer, in forward order.

        Keys are the names of the model's connection layers (``learners.models.weight_layers``);
        values have the weight's shape; the update moved the weights along its *negative*.
        For backprop it is the gradient; for feedback alignment the pseudo-gradient it
        computes; for evolution the estimated gradient (ES) or minus the mean parent-to-
        offspring step (GA). The runner turns it into gradient health and alignment.
        """

    def objective(self, logits: Tensor, y: Tensor) -> Tensor:
        """The loss this rule trains, as a batch mean: logits (B, n_classes), labels (B,) -> scalar.

        ``true_gradient`` differentiates it, so a rule is compared with the gradient of its own
        objective. Default: mean cross-entropy; override it for a rule that trains another
        top loss (``learners.losses.top_loss``: backprop and pc with "mse").
        """
        return torch.nn.functional.cross_entropy(logits, y)

    def true_gradient(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        """Exact backprop gradient of ``objective`` (the rule's own loss) at the current weights.

        Keys as in ``update_signal``. Must not change any learner state (weights, grads,
        batch-norm statistics, RNG). The default differentiates ``self.model`` with plain
        autograd; a learner whose ``self.model(x)`` is not the plain network (a spiking
        time loop, say) overrides it. The runner calls it just *before* a sampled
        ``train_step`` on the same batch and records the cosine with ``update_signal``.
        """
        model = self.model
        if model is None:
            raise NotMeasurable(f"{type(self).__name__} has no model and does not override true_gradient")
        from bpbench.learners.models import weight_layers

        names = [n for n, _ in weight_layers(model)]
        params = dict(model.named_parameters())
        buffers = {k: v.clone() for k, v in model.named_buffers()}  # BN stats stay untouched
        devices = [self.device] if self.device.type == "cuda" else []  # dropout draws on the run's device
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            detached = {k: v.detach().requires_grad_(True) for k, v in params.items()}
            logits = torch.func.functional_call(model, (detached, buffers), (x,))
            loss = self.objective(logits, y)
            wanted = [detached[f"{n}.weight"] for n in names]
            grads = torch.autograd.grad(loss, wanted)
        return dict(zip(names, grads))

    def exact_layers(self) -> frozenset[str]:
        """Connection layers whose ``update_signal`` equals the true gradient *by construction*.

        E.g. the output layer of fa, dfa and sign_symmetry (its update is backprop's). Their
        cosine with the true gradient is 1 whatever the rule does, so the alignment summary
        (``grad_alignment_mean``, the table's column) leaves them out; their per-layer cosines
        are still recorded. Backprop returns every layer. Default: none.
        """
        return frozenset()

    def check_norm_ratio(self) -> None:  # noqa: B027 (an optional hook: doing nothing is its default)
        """Raise ``NotMeasurable("why")`` when the first/last update-signal norm ratio (gradient
        health's grad_norm_ratio) describes the rule's estimator, not the gradient it follows (then
        it is recorded as n/a with that reason). Default: it is meaningful; return nothing.
        """

    def diagnostics(self) -> list[tuple[str, str, float]]:
        """Extra learner-specific measurements at gradient-health steps: (metric, layer, value).

        E.g. feedback alignment's angle between W and B per layer. Default: none.
        """
        return []

    def evaluation_metrics(self, x: Tensor) -> list[tuple[str, str, float]]:
        """Extra measurements at each evaluation on a fixed test batch ``x``: (metric, layer, value).

        E.g. a spiking learner's synaptic operations, firing rates and silent neurons.
        Must not change learner state. Default: none.
        """
        return []

    def inference_cost(self, x: Tensor) -> dict[str, LayerOps] | None:
        """Per-sample synaptic operations of each connection layer when predicting ``x``, or None.

        Default: NeuroBench's dense and effective counts (``learners.synops.count_synops``)
        from hooks on ``self.model``'s connection layers while ``self.predict(x)`` runs, the
        same for every learner that has a model; None without a model (then
        ``experiments.run.energy`` falls back to FLOPs / 2 of ``predict`` and the table marks
        it). Raise ``NotMeasurable`` when neither applies. Must not change learner state.
        """
        model = self.model
        if model is None:
            return None
        from bpbench.learners.synops import count_synops

        return count_synops(model, lambda: self.predict(x), x.shape[0])
