"""Shared machinery of the feedback-alignment family: connection layers whose backward pass
sends the error to the layer's input along a chosen *route* instead of through Wᵀ.

Flow of one training forward pass::

    logits = feedback_forward(model, x, routes)   # model: the shared nn.Sequential, untouched
    loss.backward()                               # layers named in routes use their route

Each connection layer (Linear, Conv2d) named in ``routes`` runs through ``LinearFeedback`` or
``Conv2dFeedback``: the forward pass is the layer's own, and the backward pass computes the
weight and bias gradients exactly from the error δ arriving at the layer's output and the
layer's input x (as backprop does), then asks ``route(δ, x)`` for the error to send on to x.
Everything else in the model (batch norm, activation, pooling, dropout, a residual block's
shortcut and its sum) backpropagates as usual: batch norm's scale and shift get the exact
gradient of the error that reaches them, and at a residual block's input the error its
convolutions route back adds to the one its shortcut carries (as in BioTorch, whose layers
replace only the convolutions' backward). ``routes`` name connection layers by their
``weight_layers`` names, nested ones (``stage1.0.conv1``) included.

Routes (``Route = (δ, x) -> error for x``, shaped like x):
- ``through(layer, matrix)``: δ through a matrix shaped like W. Feedback alignment: a fixed
  random B; sign symmetry: sign(W); ``matrix = layer.weight`` is exact backprop.
- ``direct(tap, matrix)``: direct feedback alignment: the output error e, which
  ``record_error`` stores in ``tap`` when the output layer's backward runs first, projected
  by a fixed (n_classes, x.numel() / batch) matrix.

The model's own ``forward`` stays plain autograd, so ``Learner.true_gradient`` and
``predict`` need no change.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
import torch.nn.grad
from torch import Tensor, nn

from bpbench.learners.backprop import BackpropParams
from bpbench.learners.models import weight_layers
from bpbench.learners.params import param

Route = Callable[[Tensor, Tensor], Tensor]  # (error at the layer's output δ, layer input x) -> error for x


@dataclass(frozen=True)
class FeedbackParams(BackpropParams):
    """BackpropParams plus feedback_scale > 0: multiplies the random feedback matrices
    (drawn like PyTorch's default weight init, uniform in ±1/sqrt(fan_in))."""

    feedback_scale: float = param(1.0, gt=0)


class LinearFeedback(torch.autograd.Function):
    """F.linear(x, weight, bias) whose backward sends the error to x along ``route``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, route: Route) -> Tensor:
        ctx.save_for_backward(x)
        ctx.route = route
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        (x,) = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = ctx.route(grad_out, x) if need_x else None
        if grad_out.dim() != 2:  # (..., features) inputs: fold the leading axes into one
            grad_out, x = grad_out.reshape(-1, grad_out.shape[-1]), x.reshape(-1, x.shape[-1])
        grad_w = grad_out.t().mm(x) if need_w else None
        grad_b = grad_out.sum(0) if need_b else None
        return grad_x, grad_w, grad_b, None


class Conv2dFeedback(torch.autograd.Function):
    """F.conv2d(x, weight, bias, ...) whose backward sends the error to x along ``route``."""

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        route: Route,
        stride: tuple[int, int],
        padding: tuple[int, int],
        dilation: tuple[int, int],
        groups: int,
    ) -> Tensor:
        ctx.save_for_backward(x)
        ctx.route, ctx.conv, ctx.weight_shape = route, (stride, padding, dilation, groups), weight.shape
        ctx.bias_shape = None if bias is None else list(bias.shape)
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        (x,) = ctx.saved_tensors
        grad_x = ctx.route(grad_out, x) if ctx.needs_input_grad[0] else None
        stride, padding, dilation, groups = ctx.conv
        # weight and bias gradients as autograd computes them; the weight's values are not needed, so
        # a placeholder of its shape stands in, as in torch.nn.grad.conv2d_weight (the real weight made
        # the CPU kernel reorder it first: ~5% of a ResNet-20 step)
        placeholder = grad_out.new_empty(1).expand(ctx.weight_shape)
        _, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad_out,
            x,
            placeholder,
            ctx.bias_shape,
            stride,
            padding,
            dilation,
            False,
            [0, 0],
            groups,
            [False, ctx.needs_input_grad[1], ctx.needs_input_grad[2]],
        )
        return grad_x, grad_w, grad_b, None, None, None, None, None


def _conv_options(layer: nn.Conv2d) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], int]:
    if isinstance(layer.padding, str) or layer.padding_mode != "zeros":
        raise ValueError(
            f"Conv2d with padding={layer.padding!r}, padding_mode={layer.padding_mode!r}: "
            "feedback layers allow integer zero padding only"
        )
    return layer.stride, layer.padding, layer.dilation, layer.groups  # type: ignore[return-value]


def connect(layer: nn.Module, x: Tensor, route: Route) -> Tensor:
    """``layer(x)`` for a Linear or Conv2d layer, with its backward pass along ``route``."""
    if isinstance(layer, nn.Linear):
        return LinearFeedback.apply(x, layer.weight, layer.bias, route)
    if isinstance(layer, nn.Conv2d):
        return Conv2dFeedback.apply(x, layer.weight, layer.bias, route, *_conv_options(layer))
    raise TypeError(f"feedback routes work on nn.Linear and nn.Conv2d layers, got {type(layer).__name__}")


def feedback_forward(model: nn.Module, x: Tensor, routes: dict[str, Route]) -> Tensor:
    """Logits of ``model`` on x; the connection layers named in ``routes`` (``weight_layers`` names,
    nested or not) feed back along them. Their ``forward`` is swapped for the call, then restored."""
    layers = dict(weight_layers(model))
    unknown = sorted(set(routes) - set(layers))
    if unknown:
        raise ValueError(f"routes name layers {unknown} that are not connection layers of the model ({list(layers)})")
    try:
        for name, route in routes.items():
            layer = layers[name]
            layer.forward = lambda x, layer=layer, route=route: connect(layer, x, route)
        return model(x)
    finally:
        for name in routes:
            del layers[name].forward


def through(layer: nn.Linear | nn.Conv2d, matrix: Tensor) -> Route:
    """Route δ to the layer's input through ``matrix`` (shaped like the layer's weight) instead of W."""
    if tuple(matrix.shape) != tuple(layer.weight.shape):
        raise ValueError(f"feedback matrix shape {tuple(matrix.shape)} != weight shape {tuple(layer.weight.shape)}")
    if isinstance(layer, nn.Conv2d):
        options = _conv_options(layer)
        return lambda grad_out, x: torch.nn.grad.conv2d_input(x.shape, matrix, grad_out, *options)
    return lambda grad_out, x: grad_out @ matrix


@dataclass
class ErrorTap:
    """Holds the output error e = dLoss/dlogits of the backward pass in progress (DFA)."""

    error: Tensor | None = None


def record_error(tap: ErrorTap, route: Route) -> Route:
    """The output layer's route: store its δ (the output error) in ``tap``, then follow ``route``."""

    def recording(grad_out: Tensor, x: Tensor) -> Tensor:
        tap.error = grad_out
        return route(grad_out, x)

    return recording


def direct(tap: ErrorTap, matrix: Tensor) -> Route:
    """Route the output error in ``tap`` straight to the layer's input: e @ matrix, shaped like x."""

    def projected(grad_out: Tensor, x: Tensor) -> Tensor:
        if tap.error is None:
            raise RuntimeError("no output error recorded: the output layer's route must be record_error(tap, ...)")
        return (tap.error @ matrix).view(x.shape)

    return projected


def draw_feedback(shape: tuple[int, ...], generator: torch.Generator, scale: float = 1.0) -> Tensor:
    """A fixed random matrix, uniform in ±scale/sqrt(fan_in) (fan_in = prod(shape[1:])), from ``generator``."""
    bound = scale / math.sqrt(math.prod(shape[1:]))
    return torch.empty(shape).uniform_(-bound, bound, generator=generator)


def layer_input_shapes(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Per connection layer of ``model`` (nested ones included): the shape of one sample of its
    input (no batch axis).

    Runs two zero samples in eval mode without gradients: no weight, statistic or RNG changes.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str) -> Callable[[nn.Module, tuple[Tensor, ...]], None]:
        def hook(_: nn.Module, args: tuple[Tensor, ...]) -> None:
            shapes[name] = tuple(args[0].shape[1:])

        return hook

    hooks = [layer.register_forward_pre_hook(record(name)) for name, layer in weight_layers(model)]
    try:
        with torch.no_grad():
            model(torch.zeros(2, *input_shape, device=device))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return shapes


def angle_deg(a: Tensor, b: Tensor) -> float:
    """Angle in degrees between two tensors flattened to vectors (BioTorch's weight alignment)."""
    u, v = a.detach().flatten().double(), b.detach().flatten().double()
    denom = float(u.norm() * v.norm())
    if denom == 0.0 or not math.isfinite(denom):
        raise ValueError(f"angle undefined: norms {float(u.norm())} and {float(v.norm())}")
    cosine = max(-1.0, min(1.0, float(u @ v) / denom))
    return math.degrees(math.acos(cosine))


def feedback_state(feedback: dict[str, Tensor]) -> dict[str, Tensor]:
    """A copy of the fixed feedback matrices, for a learner's ``state_dict``."""
    return {name: b.clone() for name, b in feedback.items()}


def load_feedback(feedback: dict[str, Tensor], saved: dict[str, Tensor]) -> None:
    """Copy ``saved`` matrices into ``feedback`` in place; the layer names must match."""
    if set(saved) != set(feedback):
        raise ValueError(f"state has feedback for layers {sorted(saved)}, expected {sorted(feedback)}")
    for name, b in feedback.items():
        b.copy_(saved[name])


def output_layer(model: nn.Module) -> frozenset[str]:
    """The feedback family's ``exact_layers``: the output layer, whose weight gradient δ·xᵀ uses
    the true output error (the feedback matrices only change what reaches the layers below)."""
    return frozenset({weight_layers(model)[-1][0]})


def feedback_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor, routes: dict[str, Route]
) -> float:
    """One update of the feedback family: forward, cross-entropy, backward along ``routes``,
    optimizer step; returns the minibatch loss."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(feedback_forward(model, x, routes), y)
    loss.backward()
    optimizer.step()
    return loss.item()
