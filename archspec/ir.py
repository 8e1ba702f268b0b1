"""Stage 3: resolve validated schema objects into a small typed IR.

The IR is plain frozen dataclasses: `Op` for one torch layer, `Block` for anything holding
layers. Built-in blocks (basic_block, bottleneck, dense_block, transition) are expanded here
into Ops with torchvision's names, so every later stage only knows three ways data flows
through a block: sequential, residual (body + shortcut, added) and dense (concatenated).
Nothing after this stage touches pydantic objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal, Union

from . import schema as s
from .errors import Diagnostic, Location, SpecError, did_you_mean

if TYPE_CHECKING:
    from .expand import Expanded

Shape = tuple[int, ...]  # one sample: (channels, *spatial) or (features,)


@dataclass(frozen=True)
class Op:
    kind: str
    name: str
    path: str  # qualified name, as in the state_dict
    loc: Location
    args: dict = field(default_factory=dict)
    inputs: tuple[str, ...] = ()  # earlier siblings whose outputs feed this layer; () is the previous one
    merge: str | None = None  # how several inputs combine: concat (channels) or add
    notes: tuple = ()  # the block uses this layer was expanded through
    exports: tuple[str, ...] = ()  # always () for a single layer; see Block
    in_shape: Shape | None = None
    out_shape: Shape | None = None
    params: int = 0


@dataclass(frozen=True)
class Block:
    kind: str  # what the user wrote (group, residual, dense_block, ...) or dense_layer / shortcut
    name: str
    path: str
    loc: Location
    flow: Literal["sequential", "residual", "dense"]
    children: tuple[Node, ...]
    # residual only: how the input reaches the add, and what follows it
    shortcut_mode: Literal["auto", "identity", "explicit"] | None = None
    shortcut_name: str = "shortcut"
    shortcut: Block | None = None
    activation: str | None = None
    stride: int | None = None  # ResNet blocks: a strided block always projects its shortcut, as torchvision's
    inputs: tuple[str, ...] = ()
    merge: str | None = None
    notes: tuple = ()
    exports: tuple[str, ...] = ()  # inner layers (relative names) whose outputs a later `from:` needs
    block_args: tuple | None = None  # a user block's use: its (parameter, value)s; None otherwise
    in_shape: Shape | None = None
    out_shape: Shape | None = None
    params: int = 0


Node = Union[Op, Block]


@dataclass(frozen=True)
class Model:
    name: str
    source: str
    input_shape: Shape
    body: Block


def walk(node: Node):
    """Every node below and including `node`, parents first, in forward order."""
    yield node
    if isinstance(node, Block):
        for child in node.children:
            yield from walk(child)
        if node.shortcut is not None:
            yield from walk(node.shortcut)


# ---------------------------------------------------------------- resolve


def resolve(spec: s.Spec, doc: Expanded) -> Model:
    """`doc` is the expand.Expanded the spec was validated from; it locates every node."""
    errors: list[Diagnostic] = []
    root_loc = doc.locate(("layers",))
    children = _resolve_list(spec.layers, ("layers",), "", doc, errors)
    if errors:
        raise SpecError(errors)
    body = Block("model", "", "", root_loc, "sequential", children)
    return Model(spec.name, doc.path, tuple(spec.input), body)


def _resolve_list(layers, yaml_path: tuple, prefix: str, doc: Expanded, errors, reserved=()) -> tuple[Node, ...]:
    nodes = []
    seen: dict[str, Location] = {}
    built: dict[str, Node] = {}
    exports: dict[str, list[str]] = {}  # sibling name -> inner layers a later `from:` reaches into
    for i, layer in enumerate(layers):
        path = yaml_path + (i,)
        name = layer.name or str(i)
        loc = doc.locate(path)
        for source in layer.sources or ():
            problem = _unreachable(source, built)
            if problem:
                errors.append(Diagnostic(f"from: {problem}", "bad-reference", doc.locate(path + (layer.kind, "from")),
                                         doc.notes(path)))  # fmt: skip
            elif "." in source:
                head, _, rest = source.partition(".")
                wanted = exports.setdefault(head, [])
                if rest not in wanted:
                    wanted.append(rest)
        if name in reserved:
            errors.append(Diagnostic(
                f'the name "{name}" is this residual block\'s shortcut_name; rename the layer or set shortcut_name',
                "duplicate-name", loc))  # fmt: skip
        elif name in seen:
            notes = ((seen[name], "first used here"),)
            errors.append(Diagnostic(f'the name "{name}" is already used in this scope', "duplicate-name", loc, notes))
        seen.setdefault(name, loc)
        qualified = f"{prefix}.{name}" if prefix else name
        node = _resolve(layer, path + (layer.kind,), name, qualified, loc, doc, errors)
        if path in doc.block_uses:
            node = replace(node, kind=doc.block_uses[path], block_args=doc.block_args[path])
        merge = layer.merge or ("concat" if len(layer.sources or ()) > 1 else None)
        node = replace(node, inputs=layer.sources or (), merge=merge, notes=doc.notes(path))
        nodes.append(node)
        built.setdefault(name, node)
    return tuple(_exporting(node, exports[node.name]) if node.name in exports else node for node in nodes)


def _unreachable(source: str, built: dict[str, Node]) -> str | None:
    """Why `source` names no earlier layer of this sequence (or of a group in it), or None."""
    head, *rest = source.split(".")
    if head not in built:
        return f'no earlier layer named "{head}" in this sequence{did_you_mean(head, built)}'
    node = built[head]
    for part in rest:
        if not (isinstance(node, Block) and node.flow == "sequential"):
            return f"{node.path} is a {node.kind}; from: reaches only into groups and user blocks"
        inner = {child.name: child for child in node.children}
        if part not in inner:
            return f'{node.path} has no layer named "{part}"{did_you_mean(part, inner)}'
        node = inner[part]
    return None


def _exporting(block: Block, paths: list[str]) -> Block:
    """`block`, made to hand out the outputs of the inner layers at `paths` besides its own."""
    inner: dict[str, list[str]] = {}
    for path in paths:
        head, _, rest = path.partition(".")
        if rest and rest not in inner.setdefault(head, []):
            inner[head].append(rest)
    children = tuple(_exporting(c, inner[c.name]) if inner.get(c.name) else c for c in block.children)
    return replace(block, children=children, exports=tuple(paths))


def _resolve(layer, yaml_path, name, path, loc, doc, errors) -> Node:
    expand = _EXPANDERS.get(layer.kind)
    if expand is not None:
        return expand(layer, yaml_path, name, path, loc, doc, errors)
    args = layer.model_dump(exclude={"kind", *s.LAYER_FIELDS})
    if layer.kind == "maxpool" or layer.kind == "avgpool":
        args["stride"] = args["stride"] if args["stride"] is not None else args["kernel"]
    return Op(layer.kind, name, path, loc, args)


def _group(layer: s.Group, yaml_path, name, path, loc, doc, errors) -> Block:
    children = _resolve_list(layer.layers, yaml_path + ("layers",), path, doc, errors)
    return Block("group", name, path, loc, "sequential", children)


def _residual(layer: s.Residual, yaml_path, name, path, loc, doc, errors) -> Block:
    body = _resolve_list(layer.body, yaml_path + ("body",), path, doc, errors, reserved=(layer.shortcut_name,))
    if isinstance(layer.shortcut, list):
        short_path = f"{path}.{layer.shortcut_name}"
        shortcut_children = _resolve_list(layer.shortcut, yaml_path + ("shortcut",), short_path, doc, errors)
        shortcut = Block("shortcut", layer.shortcut_name, short_path, doc.locate(yaml_path + ("shortcut",)),
                         "sequential", shortcut_children)  # fmt: skip
        mode = "explicit"
    else:
        shortcut, mode = None, layer.shortcut
    return Block("residual", name, path, loc, "residual", body, mode, layer.shortcut_name, shortcut, layer.activation)


class _Ops:
    """Makes the Ops of one expanded block, all located at the block's use."""

    def __init__(self, path: str, loc: Location):
        self.path, self.loc = path, loc

    def __call__(self, kind: str, name: str, **args) -> Op:
        return Op(kind, name, f"{self.path}.{name}", self.loc, args)

    def conv(self, name, out, kernel, stride=1, padding=0, groups=1, bias=False, **extra) -> Op:
        return self("conv", name, out=out, kernel=kernel, stride=stride, padding=padding, dilation=1,
                    groups=groups, bias=bias, **extra)  # fmt: skip

    def norm(self, name) -> Op:
        return self("batchnorm", name, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True)


def _basic_block(layer: s.BasicBlock, yaml_path, name, path, loc, doc, errors) -> Block:
    op = _Ops(path, loc)
    body = (
        op.conv("conv1", layer.out, 3, layer.stride, 1),
        op.norm("bn1"),
        op("relu", "relu"),
        op.conv("conv2", layer.out, 3, 1, 1),
        op.norm("bn2"),
    )
    return Block("basic_block", name, path, loc, "residual", body, "auto", "downsample", None, "relu", layer.stride)


def _bottleneck(layer: s.Bottleneck, yaml_path, name, path, loc, doc, errors) -> Block:
    op = _Ops(path, loc)
    width, out = layer.width, layer.out or 4 * layer.width
    body = (
        op.conv("conv1", width, 1),
        op.norm("bn1"),
        op("relu", "relu1"),
        op.conv("conv2", width, 3, layer.stride, 1, groups=layer.groups),  # stride on the 3x3, as torchvision
        op.norm("bn2"),
        op("relu", "relu2"),
        op.conv("conv3", out, 1),
        op.norm("bn3"),
    )
    return Block("bottleneck", name, path, loc, "residual", body, "auto", "downsample", None, "relu", layer.stride)


def _dense_block(layer: s.DenseBlock, yaml_path, name, path, loc, doc, errors) -> Block:
    layers = []
    for i in range(1, layer.num_layers + 1):
        layer_name = f"denselayer{i}"
        op = _Ops(f"{path}.{layer_name}", loc)
        if layer.bn_size is None:  # the seed's conv_block: BN-ReLU-Conv3x3
            ops = [op.norm("norm"), op("relu", "relu"), op.conv("conv", layer.growth, 3, 1, 1, bias=layer.bias)]
        else:  # torchvision's _DenseLayer
            ops = [
                op.norm("norm1"),
                op("relu", "relu1"),
                op.conv("conv1", layer.bn_size * layer.growth, 1, bias=layer.bias),
                op.norm("norm2"),
                op("relu", "relu2"),
                op.conv("conv2", layer.growth, 3, 1, 1, bias=layer.bias),
            ]
        if layer.dropout > 0:
            ops.append(op("dropout", "dropout", p=layer.dropout))
        layers.append(Block("dense_layer", layer_name, op.path, loc, "sequential", tuple(ops)))
    return Block("dense_block", name, path, loc, "dense", tuple(layers))


def _transition(layer: s.Transition, yaml_path, name, path, loc, doc, errors) -> Block:
    op = _Ops(path, loc)
    conv = op.conv("conv", layer.out, 1, bias=layer.bias, out_ratio=layer.compression)
    ops = (
        op.norm("norm"),
        op("relu", "relu"),
        conv,
        op("avgpool", "pool", kernel=2, stride=2, padding=0, ceil_mode=False, count_include_pad=True),
    )
    return Block("transition", name, path, loc, "sequential", ops)


_EXPANDERS = {
    "group": _group,
    "residual": _residual,
    "basic_block": _basic_block,
    "bottleneck": _bottleneck,
    "dense_block": _dense_block,
    "transition": _transition,
}

__all__ = ["Op", "Block", "Node", "Model", "Shape", "resolve", "walk", "replace"]
