"""The one model builder every learner trains: an MLP, a small CNN, or LeNet-5.

``build_model(spec, input_shape, n_classes, generator)`` returns an ``nn.Sequential``
whose connection layers are named ``fc1, fc2, ..., out`` (MLP) or
``conv1, conv2, ..., fc1, ..., out`` (CNN, LeNet), in forward order; ``weight_layers``
lists them. Initialization draws only from the given generator, so a run is reproducible
from its seed alone.

LeNet-5 (``arch = "lenet"``) is BioTorch's ``LeNetMNIST`` (biotorch/models/le_net.py):
conv 5x5 -> 6, act, max-pool 2; conv 5x5 -> 16, act, max-pool 2; conv 5x5 -> 120, act;
fully connected 84, act; output. BioTorch resizes 28x28 images to 32x32 before its
unpadded first conv; here the first conv zero-pads by 2 instead (LeCun et al. 1998's
32x32 field), so a (1, 28, 28) image gives the same 28 -> 14 -> 10 -> 5 -> 1 maps without
interpolating pixels. BioTorch uses ReLU, which is the default activation here.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Literal

import torch
from torch import nn

from bpbench.learners.params import check_params

ARCHS = ("mlp", "cnn", "lenet")
# LeNet-5's fixed layers: (out channels, kernel, padding, max-pool after) per conv; fc widths.
LENET_CONVS: tuple[tuple[int, int, int, bool], ...] = ((6, 5, 2, True), (16, 5, 0, True), (120, 5, 0, False))
LENET_HIDDEN: tuple[int, ...] = (84,)

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


@dataclass(frozen=True)
class ModelSpec:
    """Architecture shared by all learners of a run.

    arch: "mlp" (any task; input flattened), "cnn" (image tasks) or "lenet" (LeNet-5,
        image tasks of at least 28x28; its layers are fixed, see the module docstring).
    hidden: widths of the fully connected hidden layers (may be empty: a linear model).
        mlp and cnn only.
    channels: cnn only: output channels of each 3x3 conv (each followed by 2x2 max-pool).
    activation: relu | tanh | sigmoid.  batchnorm: after each hidden layer (conv or fc),
    before the activation.  dropout: probability after each hidden block (0 disables).
    These three apply to every arch; their defaults give BioTorch's LeNet-5 exactly.
    """

    arch: Literal["mlp", "cnn", "lenet"] = "mlp"
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
        if self.arch == "lenet":
            defaults = {f.name: f.default for f in fields(self)}
            for key in ("hidden", "channels"):
                if getattr(self, key) != defaults[key]:
                    raise ValueError(
                        f"model.{key} = {list(getattr(self, key))} with arch = 'lenet': LeNet-5's layers are fixed "
                        f"(conv 6, 16, 120; fc 84); {key} applies to arch = 'mlp' or 'cnn' only: leave it out"
                    )
        check_params(self)  # arch and activation among their choices, dropout finite


def _init_layer(layer: nn.Linear | nn.Conv2d, generator: torch.Generator) -> None:
    """PyTorch's default init (Kaiming-uniform, a=sqrt(5)) drawn from ``generator``."""
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
    if layer.bias is not None:
        fan_in = layer.weight[0].numel()
        bound = 1.0 / math.sqrt(fan_in)
        with torch.no_grad():
            layer.bias.uniform_(-bound, bound, generator=generator)


def _hidden_block(
    idx: int,
    layer: nn.Module,
    width: int,
    spec: ModelSpec,
    conv: bool,
    activation: Callable[[], nn.Module],
    pool: bool = True,
) -> list[tuple[str, nn.Module]]:
    prefix = "conv" if conv else "fc"
    block: list[tuple[str, nn.Module]] = [(f"{prefix}{idx}", layer)]
    if spec.batchnorm:
        block.append((f"bn_{prefix}{idx}", nn.BatchNorm2d(width) if conv else nn.BatchNorm1d(width)))
    block.append((f"act_{prefix}{idx}", activation()))
    if conv and pool:
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
    hidden = LENET_HIDDEN if spec.arch == "lenet" else spec.hidden
    if spec.arch in ("cnn", "lenet"):
        if len(input_shape) != 3:
            raise ValueError(
                f"model.arch = {spec.arch!r} needs image input (C, H, W); got input shape "
                f"{input_shape}: use arch = 'mlp'"
            )
        c, h, w = input_shape
        convs = LENET_CONVS if spec.arch == "lenet" else tuple((out_c, 3, 1, True) for out_c in spec.channels)
        for i, (out_c, kernel, pad, pool) in enumerate(convs, start=1):
            h, w = h + 2 * pad - kernel + 1, w + 2 * pad - kernel + 1
            if pool:
                h, w = h // 2, w // 2
            if h < 1 or w < 1:
                what = (
                    "LeNet-5 needs images of at least 28x28"
                    if spec.arch == "lenet"
                    else f"model.channels = {list(spec.channels)}: too many pooling stages"
                )
                raise ValueError(f"{what}; got input shape {input_shape}")
            layers += _hidden_block(i, nn.Conv2d(c, out_c, kernel, padding=pad), out_c, spec, True, act, pool)
            c = out_c
        layers.append(("flatten", nn.Flatten()))
        width = c * h * w
    else:
        layers.append(("flatten", nn.Flatten()))
        width = math.prod(input_shape)
    for i, hid in enumerate(hidden, start=1):
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


def require_plain_mlp(spec: ModelSpec, rule: str) -> None:
    """Raise ValueError unless ``spec`` is an MLP without batch norm or dropout.

    For rules whose layers must be pure functions of their input (predictive coding's value
    nodes, forward-forward's goodness, target propagation's inverses): ``rule`` names the
    learner in the message.
    """
    if spec.arch != "mlp":
        raise ValueError(f"model.arch = {spec.arch!r}: {rule} allows only 'mlp'")
    if spec.batchnorm:
        raise ValueError(f"model.batchnorm = true: {rule} allows only false")
    if spec.dropout != 0:
        raise ValueError(f"model.dropout = {spec.dropout}: {rule} allows only 0")
