"""Stage 5a: build a live torch.nn.Module from the shaped IR. The only module that imports torch."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .ir import Block, Model, Node, Op

ACTIVATIONS = {
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "leaky_relu": nn.functional.leaky_relu,
    "gelu": nn.functional.gelu,
    "silu": nn.functional.silu,
    "identity": lambda x: x,
}


class SpecModel(nn.Sequential):
    """The compiled spec: its layers in order, with the per-sample shape it expects."""

    def __init__(self, layers: OrderedDict, input_shape: tuple[int, ...], name: str):
        super().__init__(layers)
        self.input_shape = input_shape
        self.spec_name = name


class Residual(nn.Module):
    """body(x) + shortcut(x), then an optional activation; body layers are direct children."""

    def __init__(self, body: OrderedDict, shortcut_name: str, shortcut: nn.Module | None, activation: str | None):
        super().__init__()
        for name, module in body.items():
            self.add_module(name, module)
        if shortcut is not None:
            self.add_module(shortcut_name, shortcut)
        self.body_names = tuple(body)
        self.shortcut_name = shortcut_name if shortcut is not None else None
        self.activation = activation

    def forward(self, x):
        identity = x if self.shortcut_name is None else self.get_submodule(self.shortcut_name)(x)
        for name in self.body_names:
            x = self.get_submodule(name)(x)
        x = x + identity
        return ACTIVATIONS[self.activation](x) if self.activation else x


class DenseBlock(nn.ModuleDict):
    """Each layer sees the concatenation of the block input and every earlier layer's output."""

    def forward(self, x):
        features = [x]
        for layer in self.values():
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


class Normalize(nn.Module):
    """Per-channel (x - mean) / std, like torchvision's transforms.Normalize, as a layer."""

    def __init__(self, mean, std, rank: int):
        super().__init__()
        view = (len(mean),) + (1,) * (rank - 1)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(view))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(view))

    def forward(self, x):
        return (x - self.mean) / self.std


def build_model(model: Model) -> SpecModel:
    return SpecModel(_children(model.body), model.input_shape, model.name)


def build(node: Node) -> nn.Module:
    if isinstance(node, Block):
        return _BLOCKS[node.flow](node)
    builder = _OPS.get(node.kind)
    if builder is None:
        raise NotImplementedError(f"Unsupported node kind {node.kind!r}")
    return builder(node)


def _children(block: Block) -> OrderedDict:
    return OrderedDict((child.name, build(child)) for child in block.children)


def _residual(block: Block) -> nn.Module:
    shortcut = build(block.shortcut) if block.shortcut is not None else None
    return Residual(_children(block), block.shortcut_name, shortcut, block.activation)


_BLOCKS = {
    "sequential": lambda block: nn.Sequential(_children(block)),
    "residual": _residual,
    "dense": lambda block: DenseBlock(_children(block)),
}


# ---------------------------------------------------------------- layers


def _dims(op: Op) -> int:
    return len(op.in_shape) - 1


def _nd(op: Op, family: str) -> type[nn.Module]:
    return getattr(nn, f"{family}{_dims(op)}d")


def _conv(op: Op):
    a = op.args
    return _nd(op, "Conv")(a["in_channels"], a["out"], a["kernel"], stride=a["stride"], padding=a["padding"],
                           dilation=a["dilation"], groups=a["groups"], bias=a["bias"])  # fmt: skip


def _conv_transpose(op: Op):
    a = op.args
    return _nd(op, "ConvTranspose")(a["in_channels"], a["out"], a["kernel"], stride=a["stride"],
                                    padding=a["padding"], output_padding=a["output_padding"],
                                    groups=a["groups"], bias=a["bias"], dilation=a["dilation"])  # fmt: skip


def _batchnorm(op: Op):
    a = op.args
    family = nn.BatchNorm1d if len(op.in_shape) <= 2 else _nd(op, "BatchNorm")
    return family(a["num_features"], eps=a["eps"], momentum=a["momentum"], affine=a["affine"],
                  track_running_stats=a["track_running_stats"])  # fmt: skip


def _maxpool(op: Op):
    a = op.args
    return _nd(op, "MaxPool")(a["kernel"], a["stride"], a["padding"], a["dilation"], ceil_mode=a["ceil_mode"])


def _avgpool(op: Op):
    a = op.args
    return _nd(op, "AvgPool")(a["kernel"], a["stride"], a["padding"], ceil_mode=a["ceil_mode"],
                              count_include_pad=a["count_include_pad"])  # fmt: skip


def _upsample(op: Op):
    a = op.args
    scale = a["scale"]
    if scale is not None:
        scale = float(scale) if isinstance(scale, (int, float)) else tuple(float(s) for s in scale)
    return nn.Upsample(size=a["size"], scale_factor=scale, mode=a["mode"], align_corners=a["align_corners"])


_OPS = {
    "conv": _conv,
    "conv_transpose": _conv_transpose,
    "batchnorm": _batchnorm,
    "layernorm": lambda op: nn.LayerNorm(op.args["normalized_shape"], eps=op.args["eps"],
                                         elementwise_affine=op.args["affine"], bias=op.args["bias"]),
    "groupnorm": lambda op: nn.GroupNorm(op.args["groups"], op.args["num_channels"], eps=op.args["eps"],
                                         affine=op.args["affine"]),
    "relu": lambda op: nn.ReLU(inplace=False),
    "leaky_relu": lambda op: nn.LeakyReLU(op.args["slope"]),
    "sigmoid": lambda op: nn.Sigmoid(),
    "tanh": lambda op: nn.Tanh(),
    "gelu": lambda op: nn.GELU(approximate=op.args["approximate"]),
    "silu": lambda op: nn.SiLU(),
    "softmax": lambda op: nn.Softmax(dim=op.args["dim"]),
    "maxpool": _maxpool,
    "avgpool": _avgpool,
    "adaptive_avgpool": lambda op: _nd(op, "AdaptiveAvgPool")(op.args["size"]),
    "adaptive_maxpool": lambda op: _nd(op, "AdaptiveMaxPool")(op.args["size"]),
    "global_avgpool": lambda op: _nd(op, "AdaptiveAvgPool")(1),
    "upsample": _upsample,
    "dropout": lambda op: nn.Dropout(op.args["p"]),
    "flatten": lambda op: nn.Flatten(),
    "linear": lambda op: nn.Linear(op.args["in_features"], op.args["out"], bias=op.args["bias"]),
    "identity": lambda op: nn.Identity(),
    "normalize": lambda op: Normalize(op.args["mean"], op.args["std"], len(op.in_shape)),
}  # fmt: skip
