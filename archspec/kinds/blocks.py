"""Built-in blocks: fields, expansion into layers (with torchvision's names), and emitted class.

Each block's `expand` makes its layers once its input shape is known, and `arguments`, beside it,
gives the constructor call of the class its template emits, so nothing is recovered from the
expanded layers by position.
"""

from __future__ import annotations

from fractions import Fraction as Exact
from types import MappingProxyType
from typing import ClassVar, Literal

from pydantic_core import PydanticCustomError

from ..core.errors import CHANNEL_MISMATCH, RANK
from ..core.ir import INPUT, Block, replace
from ..core.shape_rules import ShapeError
from ..registry import ACTIVATIONS, BlockKind, Call, call, layer_kind, op, register
from ..registry.fields import Bool, Fields, Fraction, PosFloat, PosInt, Probability, after
from . import activations  # noqa: F401  (registered before squeeze_excite lists them)

ONE = {"stride": 1, "groups": 1}  # the defaults of the ResNet blocks' keyword arguments


class _Layers:
    """Makes the layers of one expanded block, all located at the block's use."""

    def __init__(self, block: Block, path: str | None = None):
        self.path, self.loc = path or block.path, block.loc

    def __call__(self, kind: str, name: str, **args):
        return op(kind, name, f"{self.path}.{name}", self.loc, **args)

    def conv(self, name, out, kernel, stride=1, padding=0, groups=1, bias=False, dilation=1):
        return self(
            "conv",
            name,
            out=out,
            kernel=kernel,
            stride=stride,
            padding=padding,
            groups=groups,
            bias=bias,
            dilation=dilation,
        )

    def norm(self, name):
        return self("batchnorm", name)


def _residual(block: Block, body: tuple, stride: int) -> Block:
    """A ResNet block: body + shortcut (a projection named `downsample` when needed), then ReLU."""
    return replace(
        block,
        flow="residual",
        children=body,
        shortcut_mode="auto",
        shortcut_name="downsample",
        activation="relu",
        stride=stride,
        expanded=True,
    )


# ---------------------------------------------------------------- basic_block


class BasicBlock(Fields):
    primary: ClassVar = "out"
    kind: Literal["basic_block"]
    out: PosInt
    stride: PosInt = 1


def _basic_block(block: Block, shape) -> Block:
    a, layer = block.args, _Layers(block)
    body = (
        layer.conv("conv1", a["out"], 3, a["stride"], 1),
        layer.norm("bn1"),
        layer("relu", "relu"),
        layer.conv("conv2", a["out"], 3, 1, 1),
        layer.norm("bn2"),
    )
    return _residual(block, body, a["stride"])


register(
    BlockKind(
        "basic_block",
        "ResNet's basic block: two 3x3 convs + shortcut, added, then ReLU",
        BasicBlock,
        _basic_block,
        "basic_block.py.jinja",
        "BasicBlock",
        arguments=lambda b: call("BasicBlock", b.in_shape[0], b.args["out"], stride=b.args["stride"], defaults=ONE),
        channels=(0, 1),
    )
)


# ---------------------------------------------------------------- bottleneck


class Bottleneck(Fields):
    primary: ClassVar = "width"
    kind: Literal["bottleneck"]
    width: PosInt
    out: PosInt | None = None  # 4 * width by default, as in ResNet-50
    stride: PosInt = 1
    groups: PosInt = 1
    dilation: PosInt = 1  # of the 3x3 conv, padded to keep the size (torchvision's replace_stride_with_dilation)


def _bottleneck_out(args) -> int:
    return args["out"] or 4 * args["width"]


def _bottleneck(block: Block, shape) -> Block:
    a, layer = block.args, _Layers(block)
    body = (
        layer.conv("conv1", a["width"], 1),
        layer.norm("bn1"),
        layer("relu", "relu1"),
        layer.conv("conv2", a["width"], 3, a["stride"], a["dilation"], groups=a["groups"], dilation=a["dilation"]),
        layer.norm("bn2"),
        layer("relu", "relu2"),
        layer.conv("conv3", _bottleneck_out(a), 1),
        layer.norm("bn3"),
    )
    return _residual(block, body, a["stride"])


def _bottleneck_arguments(b: Block) -> Call:
    a = b.args
    return call(
        "Bottleneck",
        b.in_shape[0],
        a["width"],
        _bottleneck_out(a),
        stride=a["stride"],
        groups=a["groups"],
        dilation=a["dilation"],
        defaults={**ONE, "dilation": 1},
    )


register(
    BlockKind(
        "bottleneck",
        "ResNet's bottleneck (v1.5: the stride is on the 3x3 conv), with groups for ResNeXt and dilation "
        "for segmentation backbones",
        Bottleneck,
        _bottleneck,
        "bottleneck.py.jinja",
        "Bottleneck",
        arguments=_bottleneck_arguments,
        channels=(0, 1, 2),
    )
)


# ---------------------------------------------------------------- dense_block


class DenseBlock(Fields):
    kind: Literal["dense_block"]
    num_layers: PosInt
    growth: PosInt
    bn_size: PosInt | None = None  # set: torchvision's BN-ReLU-Conv1x1-BN-ReLU-Conv3x3 layer
    dropout: Probability = 0.0
    bias: Bool = False
    # torchvision's memory_efficient: while gradients are needed, each layer's concatenation and its
    # first norm-relu-conv are recomputed in backward instead of kept (torch.utils.checkpoint)
    memory_efficient: Bool = False


def _whole(value) -> int:
    """A count as written, for limit layers before validation: a wrong one counts none (validation says why)."""
    return value if type(value) is int and value > 0 else 0


def _dense_block(block: Block, shape) -> Block:
    a, layers = block.args, []
    for i in range(1, a["num_layers"] + 1):
        layer_name = f"denselayer{i}"
        layer = _Layers(block, f"{block.path}.{layer_name}")
        if a["bn_size"] is None:  # the seed's conv_block: BN-ReLU-Conv3x3
            ops = [layer.norm("norm"), layer("relu", "relu"), layer.conv("conv", a["growth"], 3, 1, 1, bias=a["bias"])]
        else:  # torchvision's _DenseLayer
            ops = [
                layer.norm("norm1"),
                layer("relu", "relu1"),
                layer.conv("conv1", a["bn_size"] * a["growth"], 1, bias=a["bias"]),
                layer.norm("norm2"),
                layer("relu", "relu2"),
                layer.conv("conv2", a["growth"], 3, 1, 1, bias=a["bias"]),
            ]
        if a["dropout"] > 0:
            ops.append(layer("dropout", "dropout", p=a["dropout"]))
        layers.append(Block("dense_layer", layer_name, layer.path, block.loc, "sequential", tuple(ops)))
    return replace(block, flow="dense", children=tuple(layers), expanded=True)


def _dense_block_arguments(b: Block) -> Call:
    a = b.args
    return call(
        "DenseBlock",
        a["num_layers"],
        b.in_shape[0],
        growth=a["growth"],
        bn_size=a["bn_size"],
        dropout=a["dropout"],
        bias=a["bias"],
        memory_efficient=a["memory_efficient"],
        defaults={"bn_size": None, "dropout": 0.0, "bias": False, "memory_efficient": False},
    )


def memory_efficient(model, on: bool | None):
    """`model` (an ir.Model, or anything whose `body` is the IR) with `memory_efficient: on` on every
    dense block; None leaves each block's own field. compile_spec's and emit_python's option: it
    overrides what the spec says."""
    if on is None:
        return model
    body = _memory_efficient(model.body, bool(on))
    return model if body is model.body else replace(model, body=body)


def _memory_efficient(node, on: bool):
    if not isinstance(node, Block):
        return node
    changes = {}
    children = tuple(_memory_efficient(child, on) for child in node.children)
    if any(new is not old for new, old in zip(children, node.children)):
        changes["children"] = children
    if node.shortcut is not None and (shortcut := _memory_efficient(node.shortcut, on)) is not node.shortcut:
        changes["shortcut"] = shortcut
    if node.kind == "dense_block" and node.args.get("memory_efficient") is not on:
        changes["args"] = MappingProxyType({**node.args, "memory_efficient": on})
    return replace(node, **changes) if changes else node


register(
    BlockKind(
        "dense_block",
        "DenseNet's dense block: each layer sees the block input and every earlier output, concatenated",
        DenseBlock,
        _dense_block,
        "dense_block.py.jinja",
        "DenseBlock",
        arguments=_dense_block_arguments,
        variant=lambda b: {"bottleneck": b.args["bn_size"] is not None, "memory_efficient": b.args["memory_efficient"]},
        helpers=("layer", "keep_buffers"),  # KeepBuffers: memory_efficient's recompute context
        channels=(1,),
        count=lambda fields: _whole(fields.get("num_layers")),
    )
)


# ---------------------------------------------------------------- transition


class Transition(Fields):
    primary: ClassVar = "out"
    kind: Literal["transition"]
    out: PosInt | None = None
    compression: Fraction | None = None
    bias: Bool = False

    @after
    def _out_or_compression(self):
        if (self.out is None) == (self.compression is None):
            raise PydanticCustomError("bad_value", "give exactly one of out and compression")
        return self


def _transition_out(args, channels: int) -> int:
    if args["out"] is not None:
        return args["out"]
    # Exact decimal arithmetic: 100 * 0.29 is 28.999... in floating point, but 29 channels are meant.
    out = int(Exact(repr(args["compression"])) * channels)
    if out < 1:
        raise ShapeError(f"compression {args['compression']} of {channels} channels leaves none", CHANNEL_MISMATCH)
    return out


def _transition(block: Block, shape) -> Block:
    a, layer = block.args, _Layers(block)
    ops = (
        layer.norm("norm"),
        layer("relu", "relu"),
        layer.conv("conv", _transition_out(a, shape[0]), 1, bias=a["bias"]),
        layer("avgpool", "pool", kernel=2, stride=2),
    )
    return replace(block, children=ops, expanded=True)


register(
    BlockKind(
        "transition",
        "DenseNet's transition: BN-ReLU-Conv1x1 to fewer channels, then 2x2 average pooling",
        Transition,
        _transition,
        "transition.py.jinja",
        "Transition",
        arguments=lambda b: call(
            "Transition", b.in_shape[0], b.out_shape[0], bias=b.args["bias"], defaults={"bias": False}
        ),
        channels=(0, 1),
    )
)


# ---------------------------------------------------------------- inverted_residual


class InvertedResidual(Fields):
    primary: ClassVar = "out"
    kind: Literal["inverted_residual"]
    out: PosInt
    stride: PosInt = 1
    expand_ratio: PosFloat = 6
    dilation: PosInt = 1  # of the depthwise conv, padded to keep the size


def _hidden(block: Block, channels: int) -> int:
    return round(channels * block.args["expand_ratio"])  # torchvision: int(round(inp * expand_ratio))


def _inverted_residual(block: Block, shape) -> Block:
    """torchvision's MobileNetV2 InvertedResidual: its layers are `conv.0`, `conv.1`, ..., each conv
    + batchnorm + ReLU6 a numbered Sequential of its own, the projection conv and norm bare."""
    a, hidden = block.args, _hidden(block, shape[0])
    conv = _Layers(block, f"{block.path}.conv")

    def conv_norm_relu6(index: int, out: int, kernel: int, stride: int, groups: int, dilation: int = 1) -> Block:
        unit = _Layers(block, f"{conv.path}.{index}")
        padding = kernel // 2 * dilation
        ops = (
            unit.conv("0", out, kernel, stride, padding, groups, dilation=dilation),
            unit.norm("1"),
            unit("relu6", "2"),
        )
        return Block("conv_norm_activation", str(index), unit.path, block.loc, "sequential", ops)

    units = [conv_norm_relu6(0, hidden, 1, 1, 1)] if a["expand_ratio"] != 1 else []
    units.append(conv_norm_relu6(len(units), hidden, 3, a["stride"], hidden, a["dilation"]))
    units += [conv.conv(str(len(units)), a["out"], 1), conv.norm(str(len(units) + 1))]
    body = (Block("group", "conv", conv.path, block.loc, "sequential", tuple(units)),)
    if a["stride"] == 1 and shape[0] == a["out"]:  # torchvision's use_res_connect
        return replace(block, flow="residual", children=body, shortcut_mode="identity", activation=None, expanded=True)
    return replace(block, children=body, expanded=True)


register(
    BlockKind(
        "inverted_residual",
        "MobileNetV2's inverted residual: 1x1 expansion (unless expand_ratio is 1), 3x3 depthwise, linear 1x1 "
        "projection, each with batchnorm (and ReLU6); the input is added back when stride is 1 and channels agree",
        InvertedResidual,
        _inverted_residual,
        "inverted_residual.py.jinja",
        "InvertedResidual",
        arguments=lambda b: call(
            "InvertedResidual",
            b.in_shape[0],
            b.args["out"],
            stride=b.args["stride"],
            expand_ratio=b.args["expand_ratio"],
            dilation=b.args["dilation"],
            defaults={"stride": 1, "expand_ratio": 6, "dilation": 1},
        ),
        channels=(0, 1),
    )
)


# ---------------------------------------------------------------- squeeze_excite

# The built-in activations (the import above registers them first): the choices of `activation` and
# `gate`, listed in the editor schema.
ActivationName = Literal[tuple(ACTIVATIONS)]


class SqueezeExcite(Fields):
    primary: ClassVar = "squeeze"
    kind: Literal["squeeze_excite"]
    squeeze: PosInt | None = None  # the channels of the squeezed vector (torchvision's squeeze_channels)
    ratio: Fraction | None = None  # or: max(1, round(ratio * channels)) of them
    activation: ActivationName = "relu"  # between fc1 and fc2
    gate: ActivationName = "sigmoid"  # torchvision's scale_activation

    @after
    def _squeeze_or_ratio(self):
        if (self.squeeze is None) == (self.ratio is None):
            raise PydanticCustomError("bad_value", "give exactly one of squeeze and ratio")
        return self


def _squeezed(args, channels: int) -> int:
    if args["squeeze"] is not None:
        return args["squeeze"]
    return max(1, round(Exact(repr(args["ratio"])) * channels))  # exact, as transition's compression


def _squeeze_excite(block: Block, shape) -> Block:
    """torchvision.ops.SqueezeExcitation: `avgpool fc1 activation fc2 scale_activation`, then the
    input scaled by the gate's output, channel by channel."""
    if len(shape) < 2:
        raise ShapeError(
            f"squeeze_excite needs (channels, 1 to 3 spatial dims) to pool over, not a rank-{len(shape)} input",
            RANK,
        )
    a, layer = block.args, _Layers(block)
    ops = (
        layer("global_avgpool", "avgpool"),
        layer("conv", "fc1", out=_squeezed(a, shape[0]), kernel=1),
        layer(a["activation"], "activation"),
        layer("conv", "fc2", out=shape[0], kernel=1),
        layer(a["gate"], "scale_activation"),
        layer("identity", "scale")._replace(inputs=("scale_activation", INPUT), merge="mul"),
    )
    return replace(block, children=ops, expanded=True)


def _squeeze_excite_variant(block: Block) -> dict:
    """Its activation and gate as the constructor calls the live layers have: the emitter writes
    each into the class (`nn.SiLU(inplace=True)`), so uses that differ get a class each."""
    layers = {child.name: child for child in block.children}
    return {name: layer_kind(layers[layer].kind).build(layers[layer]) for name, layer in _SE_ACTIVATIONS}


_SE_ACTIVATIONS = (("activation", "activation"), ("gate", "scale_activation"))  # template name, layer


register(
    BlockKind(
        "squeeze_excite",
        "squeeze-and-excitation (torchvision's SqueezeExcitation): global average pooling, a 1x1 conv to "
        "`squeeze` channels, `activation`, a 1x1 conv back, `gate`; the input is scaled by the result",
        SqueezeExcite,
        _squeeze_excite,
        "squeeze_excite.py.jinja",
        "SqueezeExcitation",
        arguments=lambda b: call("SqueezeExcitation", b.in_shape[0], b.children[1].args["out"]),
        variant=_squeeze_excite_variant,
    )
)
