"""The structures: kinds whose fields hold layers (group: a named sequence; residual: body plus
shortcut, added), resolved by rules of their own (registry.Structure.resolve)."""

from __future__ import annotations

from types import MappingProxyType
from typing import ClassVar, Literal

from ..core.ir import NO_ARGS, Block
from ..registry import Structure, op, register
from ..registry.fields import Activation, AnyLayer, Bool, Fields, Name, field

CONTAINER_FIELDS = ("layers", "body", "shortcut")  # the fields that hold lists of layers
GROUP, RESIDUAL = "group", "residual"  # what expansion makes a user block's use into
SHORTCUT = "shortcut"  # a residual's shortcut's name unless its shortcut_name says


class Group(Fields):
    primary: ClassVar = "layers"
    kind: Literal["group"]
    layers: list[AnyLayer] = field(min_length=1)


class Residual(Fields):
    kind: Literal["residual"]
    body: list[AnyLayer] = field(min_length=1)
    shortcut: Literal["auto", "identity"] | list[AnyLayer] = "auto"
    shortcut_name: Name = SHORTCUT
    activation: Activation | None = "relu"
    shortcut_first: Bool = False  # register the shortcut before the body: its keys come first (RegNet's proj, f)


def projection(block: Block, channels: int, stride) -> Block:
    """An auto shortcut that projects: a strided 1x1 conv and a batch norm, as torchvision's ResNets."""
    path, loc = f"{block.path}.{block.shortcut_name}", block.loc
    conv = op("conv", "0", f"{path}.0", loc, out=channels, kernel=1, stride=stride, bias=False)
    norm = op("batchnorm", "1", f"{path}.1", loc)
    return Block(SHORTCUT, block.shortcut_name, path, loc, "sequential", (conv, norm))


def _group(layer, name, path, loc, nested) -> Block:
    return Block("group", name, path, loc, "sequential", nested.layers(layer.layers, "layers", path))


def _residual(layer, name, path, loc, nested) -> Block:
    body = nested.layers(layer.body, "body", path, reserved=(layer.shortcut_name,))
    shortcut, mode = None, layer.shortcut
    if isinstance(layer.shortcut, list):
        short_path = f"{path}.{layer.shortcut_name}"
        inner = nested.layers(layer.shortcut, "shortcut", short_path)
        shortcut = Block(
            "shortcut",
            layer.shortcut_name,
            short_path,
            nested.locate("shortcut"),
            "sequential",
            inner,
            captures=nested.captured["shortcut"],
        )
        mode = "explicit"
    args = MappingProxyType({"shortcut_first": True}) if layer.shortcut_first else NO_ARGS
    return Block(
        "residual", name, path, loc, "residual", body, mode, layer.shortcut_name, shortcut, layer.activation, args=args
    )


register(Structure(GROUP, "a named sequence: its name prefixes its layers' names", Group, _group))
register(
    Structure(
        RESIDUAL,
        "activation(body(x) + shortcut(x)); the shortcut is auto (identity or a 1x1 projection), "
        "identity, or a list of layers",
        Residual,
        _residual,
    )
)
