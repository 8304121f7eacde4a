"""The one model builder every learner trains: an MLP, a small CNN, LeNet-5 or a CIFAR ResNet.

``build_model(spec, input_shape, n_classes, generator)`` returns an ``nn.Sequential``
whose connection layers are named ``fc1, fc2, ..., out`` (MLP) or
``conv1, conv2, ..., fc1, ..., out`` (CNN, LeNet), or ``conv1, stage1.0.conv1, ..., out``
(ResNet: nested in its residual blocks), in forward order; ``weight_layers`` lists them.
Initialization draws only from the given generator, so a run is reproducible from its seed alone.

LeNet-5 (``arch = "lenet"``) is BioTorch's ``LeNetMNIST`` (biotorch/models/le_net.py):
conv 5x5 -> 6, act, max-pool 2; conv 5x5 -> 16, act, max-pool 2; conv 5x5 -> 120, act;
fully connected 84, act; output. BioTorch resizes 28x28 images to 32x32 before its
unpadded first conv; here the first conv zero-pads by 2 instead (LeCun et al. 1998's
32x32 field), so a (1, 28, 28) image gives the same 28 -> 14 -> 10 -> 5 -> 1 maps without
interpolating pixels. BioTorch uses ReLU, which is the default activation here.

ResNet (``arch = "resnet"``, ``depth = 6n + 2``: 8, 14, 20, 32, 56, ...) is He et al. 2016's
CIFAR network (Sec. 4.2), as BioTorch's ``small_resnet`` builds it: conv 3x3 -> 16, batch
norm, act; three stages of n basic blocks with 16, 32 and 64 channels (the first block of
stages 2 and 3 strides by 2); global average pooling; the output layer. A basic block is
conv 3x3, BN, act, conv 3x3, BN, plus its shortcut, then act. Shortcuts are the paper's
option A (its CIFAR choice, BioTorch's default): the identity, and where a stage halves the
map and doubles the channels, the identity subsampled by 2 and zero-padded with the new
channels, so a shortcut has no weights. Convolutions have no bias (batch norm follows).
Batch norm is part of the architecture (``batchnorm`` and ``dropout`` stay at their defaults).
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

ARCHS = ("mlp", "cnn", "lenet", "resnet")
# every arch but the residual one: rules whose feedback cannot travel through a residual net train these
PLAIN_ARCHS = frozenset({"mlp", "cnn", "lenet"})
RESNET_WIDTHS = (16, 32, 64)  # channels of the three stages (He et al. 2016, CIFAR)
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

    arch: "mlp" (any task; input flattened), "cnn" (image tasks), "lenet" (LeNet-5,
        image tasks of at least 28x28; its layers are fixed, see the module docstring) or
        "resnet" (He et al.'s CIFAR ResNet, image tasks; see the module docstring).
    depth: resnet only: its number of weight layers, 6n + 2 (8, 14, 20, 32, 56, ...).
    hidden: widths of the fully connected hidden layers (may be empty: a linear model).
        mlp and cnn only.
    channels: cnn only: output channels of each 3x3 conv (each followed by 2x2 max-pool).
    activation: relu | tanh | sigmoid.  batchnorm: after each hidden layer (conv or fc),
    before the activation.  dropout: probability after each hidden block (0 disables).
    These three apply to every arch; their defaults give BioTorch's LeNet-5 exactly.
    """

    arch: Literal["mlp", "cnn", "lenet", "resnet"] = "mlp"
    hidden: tuple[int, ...] = (256, 256)
    channels: tuple[int, ...] = (16, 32)
    activation: Literal["relu", "tanh", "sigmoid"] = "relu"
    batchnorm: bool = False
    dropout: float = 0.0
    depth: int = 20

    def __post_init__(self) -> None:
        if any(h <= 0 for h in self.hidden):
            raise ValueError(f"model.hidden = {list(self.hidden)}: every width must be a positive integer")
        if any(c <= 0 for c in self.channels):
            raise ValueError(f"model.channels = {list(self.channels)}: every count must be a positive integer")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout = {self.dropout}: allowed is 0 <= dropout < 1")
        defaults = {f.name: f.default for f in fields(self)}
        if self.arch == "lenet":
            for key in ("hidden", "channels"):
                if getattr(self, key) != defaults[key]:
                    raise ValueError(
                        f"model.{key} = {list(getattr(self, key))} with arch = 'lenet': LeNet-5's layers are fixed "
                        f"(conv 6, 16, 120; fc 84); {key} applies to arch = 'mlp' or 'cnn' only: leave it out"
                    )
        if self.arch == "resnet":
            if self.depth < 8 or (self.depth - 2) % 6:
                raise ValueError(f"model.depth = {self.depth}: allowed is 6n + 2 with n >= 1 (8, 14, 20, 32, 56, ...)")
            for key in ("hidden", "channels", "batchnorm", "dropout"):
                if getattr(self, key) != defaults[key]:
                    raise ValueError(
                        f"model.{key} = {getattr(self, key)!r} with arch = 'resnet': the ResNet's layers are fixed "
                        f"(16, 32, 64 channels, batch norm in every block); leave {key} out"
                    )
        elif self.depth != defaults["depth"]:
            raise ValueError(
                f"model.depth = {self.depth} with arch = {self.arch!r}: depth applies to arch = 'resnet' only"
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
    if spec.arch == "resnet":
        model = resnet(spec.depth, input_shape, n_classes, act)
        for _, layer in weight_layers(model):
            _init_layer(layer, generator)
        return model
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


class Shortcut(nn.Module):
    """He et al.'s option A: the identity, or, where a block strides by 2 into ``extra`` more
    channels, the input subsampled by 2 and zero-padded with them (no weights)."""

    def __init__(self, stride: int, extra: int) -> None:
        super().__init__()
        self.stride, self.extra = stride, extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1 and self.extra == 0:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        return nn.functional.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


class BasicBlock(nn.Module):
    """conv 3x3 (stride), BN, act, conv 3x3, BN, + shortcut, act (He et al. 2016)."""

    def __init__(self, in_c: int, out_c: int, stride: int, activation: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_c, out_c, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_c)
        self.act1 = activation()
        self.conv2 = nn.Conv2d(out_c, out_c, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_c)
        self.shortcut = Shortcut(stride, out_c - in_c)
        self.act2 = activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(out + self.shortcut(x))


def resnet(depth: int, input_shape: tuple[int, ...], n_classes: int, act: Callable[[], nn.Module]) -> nn.Sequential:
    """He et al.'s CIFAR ResNet of ``depth`` = 6n + 2 weight layers (uninitialized: ``build_model`` draws)."""
    if len(input_shape) != 3 or min(input_shape[1:]) < 4:
        raise ValueError(
            f"model.arch = 'resnet' needs image input (C, H, W) of at least 4x4; got input shape {input_shape}"
        )
    n = (depth - 2) // 6
    layers: list[tuple[str, nn.Module]] = [
        ("conv1", nn.Conv2d(input_shape[0], RESNET_WIDTHS[0], 3, padding=1, bias=False)),
        ("bn1", nn.BatchNorm2d(RESNET_WIDTHS[0])),
        ("act1", act()),
    ]
    in_c = RESNET_WIDTHS[0]
    for stage, width in enumerate(RESNET_WIDTHS, start=1):
        blocks = []
        for i in range(n):
            blocks.append(BasicBlock(in_c, width, 2 if stage > 1 and i == 0 else 1, act))
            in_c = width
        layers.append((f"stage{stage}", nn.Sequential(*blocks)))
    layers += [("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()), ("out", nn.Linear(in_c, n_classes))]
    return nn.Sequential(OrderedDict(layers))


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
