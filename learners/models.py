"""The one model builder every learner trains: an MLP or a small CNN.

``build_model(spec, input_shape, n_classes, generator)`` returns an ``nn.Sequential``
whose connection layers are named ``fc1, fc2, ..., out`` (MLP) or
``conv1, conv2, ..., fc1, ..., out`` (CNN), in forward order; ``weight_layers`` lists
them. Initialization draws only from the given generator, so a run is reproducible
from its seed alone.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


@dataclass(frozen=True)
class ModelSpec:
    """Architecture shared by all learners of a run.

    arch: "mlp" (any task; input flattened) or "cnn" (image tasks).
    hidden: widths of the fully connected hidden layers (may be empty: a linear model).
    channels: CNN only: output channels of each 3x3 conv (each followed by 2x2 max-pool).
    activation: relu | tanh | sigmoid.  batchnorm: after each hidden layer, before the
    activation.  dropout: probability after each hidden activation (0 disables).
    """

    arch: Literal["mlp", "cnn"] = "mlp"
    hidden: tuple[int, ...] = (256, 256)
    channels: tuple[int, ...] = (16, 32)
    activation: Literal["relu", "tanh", "sigmoid"] = "relu"
    batchnorm: bool = False
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if any(h <= 0 for h in self.hidden):
            raise ValueError(f"model.hidden = {list(self.hidden)}: every width must be a positive integer")
        if any(c <= 0 for c in self.channels):
            raise ValueError(f"model.channels = {list(self.channels)}: every count must be a positive integer")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout = {self.dropout}: allowed is 0 <= dropout < 1")


def _init_layer(layer: nn.Linear | nn.Conv2d, generator: torch.Generator) -> None:
    """PyTorch's default init (Kaiming-uniform, a=sqrt(5)) drawn from ``generator``."""
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
    if layer.bias is not None:
        fan_in = layer.weight[0].numel()
        bound = 1.0 / math.sqrt(fan_in)
        with torch.no_grad():
            layer.bias.uniform_(-bound, bound, generator=generator)


def _hidden_block(
    idx: int, layer: nn.Module, width: int, spec: ModelSpec, conv: bool,
    activation: Callable[[], nn.Module],
) -> list[tuple[str, nn.Module]]:
    prefix = "conv" if conv else "fc"
    block: list[tuple[str, nn.Module]] = [(f"{prefix}{idx}", layer)]
    if spec.batchnorm:
        block.append((f"bn_{prefix}{idx}", nn.BatchNorm2d(width) if conv else nn.BatchNorm1d(width)))
    block.append((f"act_{prefix}{idx}", activation()))
    if conv:
        block.append((f"pool{idx}", nn.MaxPool2d(2)))
    if spec.dropout > 0:
        block.append((f"drop_{prefix}{idx}", nn.Dropout(spec.dropout)))
    return block


def build_model(
    spec: ModelSpec,
    input_shape: tuple[int, ...],
    n_classes: int,
    generator: torch.Generator,
    activation: Callable[[], nn.Module] | None = None,
) -> nn.Sequential:
    """Network for inputs of ``input_shape`` (no batch axis) and ``n_classes`` outputs.

    ``activation`` overrides the spec's activation with another module factory (a spiking
    learner passes its neuron here); everything else stays the shared architecture.
    """
    act = activation or ACTIVATIONS[spec.activation]
    layers: list[tuple[str, nn.Module]] = []
    if spec.arch == "cnn":
        if len(input_shape) != 3:
            raise ValueError(
                f"model.arch = 'cnn' needs image input (C, H, W); got input shape {input_shape}: use arch = 'mlp'"
            )
        c, h, w = input_shape
        for i, out_c in enumerate(spec.channels, start=1):
            if h < 2 or w < 2:
                raise ValueError(f"model.channels = {list(spec.channels)}: too many pooling stages for input {input_shape}")
            layers += _hidden_block(i, nn.Conv2d(c, out_c, 3, padding=1), out_c, spec, True, act)
            c, h, w = out_c, h // 2, w // 2
        layers.append(("flatten", nn.Flatten()))
        width = c * h * w
    else:
        layers.append(("flatten", nn.Flatten()))
        width = math.prod(input_shape)
    for i, hid in enumerate(spec.hidden, start=1):
        layers += _hidden_block(i, nn.Linear(width, hid), hid, spec, False, act)
        width = hid
    layers.append(("out", nn.Linear(width, n_classes)))
    model = nn.Sequential(OrderedDict(layers))
    for _, layer in weight_layers(model):
        _init_layer(layer, generator)
    return model


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Linear | nn.Conv2d]]:
    """The connection layers (Linear, Conv2d) of ``model`` in forward order, with their names."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
