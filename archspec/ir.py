"""Stage 3: resolve validated schema objects into a small typed IR.

The IR is immutable records (NamedTuples): `Op` for one torch layer, `Block` for anything holding
layers. Every later stage knows three ways data flows through a block: sequential, residual
(body + shortcut, added) and dense (concatenated). A built-in block (basic_block, dense_block,
...) stays one unexpanded Block here; the shape stage expands it through its registry entry once
its input shape is known, the way a Keras layer is built. Nothing after this stage touches
pydantic objects: a node's `args` are its validated fields, read-only.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, NamedTuple

from . import registry
from .errors import BAD_NAME, BAD_REFERENCE, DUPLICATE_NAME, LIMIT, Diagnostic, Location, SpecError, did_you_mean
from .fields import LAYER_FIELDS, declared_fields
from .limits import current as current_limits
from .limits import ensure_stack, how_to_raise

if TYPE_CHECKING:
    from .expand import Expanded
    from .schema import Spec

Shape = registry.Shape
NO_ARGS: Mapping = MappingProxyType({})
INPUT = "input"  # the `from:` name of the input its sequence received; no layer may take it


class Op(NamedTuple):
    """One torch layer."""

    kind: str
    name: str
    path: str  # qualified name, as in the state_dict
    loc: Location
    args: Mapping = NO_ARGS  # the validated fields, read-only; what shapes infer lives in the fields below
    inputs: tuple[str, ...] = ()  # earlier siblings (or INPUT) whose outputs feed this layer; () is the previous one
    merge: str | None = None  # how several inputs combine: a registry merge (concat, add, mul)
    notes: tuple = ()  # the block uses this layer was expanded through
    exports: tuple[str, ...] = ()  # always () for a single layer; see Block
    standin: bool = False  # an identity in place of a wrong layer (reported already): its output is unknown
    inplace: bool = False  # an activation that overwrites its input (archspec.inplace decides, after shapes)
    in_shape: Shape | None = None
    out_shape: Shape | None = None
    params: int = 0
    macs: int = 0  # multiply-adds for one sample, torchinfo's convention (costs.py)


class Block(NamedTuple):
    """Anything holding layers: a group, a residual block, a built-in block, the model's body."""

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
    inplace_add: bool = False  # residual: the add writes onto the body's output (archspec.inplace decides)
    inplace_activation: bool = False  # residual: the activation after the add works in place
    stride: int | None = None  # ResNet blocks: a strided block always projects its shortcut, as torchvision's
    args: Mapping = NO_ARGS  # a built-in block's validated fields
    expanded: bool = True  # False: a built-in block whose layers the shape stage has yet to make
    inputs: tuple[str, ...] = ()
    merge: str | None = None
    notes: tuple = ()
    exports: tuple[str, ...] = ()  # inner layers (relative names) whose outputs a later `from:` needs
    block_args: tuple | None = None  # a user block's use: its (parameter, value)s; None otherwise
    in_shape: Shape | None = None
    out_shape: Shape | None = None
    params: int = 0
    macs: int = 0  # multiply-adds for one sample, torchinfo's convention (costs.py)


Node = Op | Block


def replace(node, **changes):
    """`node` (an Op, Block or Model) with some fields changed."""
    return node._replace(**changes)


class Model(NamedTuple):
    name: str
    source: str
    input_shape: Shape
    body: Block
    vars: Mapping = NO_ARGS  # the spec's vars, as evaluated


def source_path(siblings: dict[str, str], name: str) -> str:
    """The path of the layer a `from:` name reaches, given the paths of the sequence's layers by
    name: `enc.conv2` is the layer at enc's path + ".conv2"."""
    head, _, rest = name.partition(".")
    return f"{siblings[head]}.{rest}" if rest else siblings[head]


def walk(node: Node):
    """Every node below and including `node`, parents first, in forward order."""
    stack = [node]  # not recursive: a generator per level would pass each node up through every level
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, Block):
            if node.shortcut is not None:
                stack.append(node.shortcut)
            stack.extend(reversed(node.children))


# ---------------------------------------------------------------- resolve


def resolve(spec: Spec, doc: Expanded, standins: frozenset = frozenset()) -> Model:
    """`doc` is the expand.Expanded the spec was validated from; it locates every node. `standins`
    are the paths of layers put in place of wrong ones: their outputs are unknown."""
    errors: list[Diagnostic] = []
    root_loc = doc.locate(("layers",))
    ensure_stack()
    try:
        children = _resolve_list(spec.layers, ("layers",), "", doc, errors, standins=standins)
    except RecursionError:  # only with limit depth raised past what Python's stack takes
        message = f"the spec nests too deeply for Python's stack; lower the nesting or {how_to_raise('depth')}"
        raise SpecError([*errors, Diagnostic(message, LIMIT, root_loc)]) from None
    if errors:
        raise SpecError(errors)
    body = Block("model", "", "", root_loc, "sequential", children)
    return Model(spec.name, doc.path, tuple(spec.input), body, MappingProxyType(dict(doc.vars)))


def _resolve_list(
    layers, yaml_path: tuple, prefix: str, doc: Expanded, errors, reserved=(), standins=frozenset(), level: int = 1
):
    """The nodes of a list of layers `level` lists deep (expansion bounds that by limit depth; a
    schema.Spec given as such is bounded here)."""
    nodes = []
    seen: dict[str, Location] = {}
    built: dict[str, Node] = {}
    exports: dict[str, list[str]] = {}  # sibling name -> inner layers a later `from:` reaches into
    too_deep = level >= current_limits().depth
    for i, layer in enumerate(layers):
        path = yaml_path + (i,)
        name = layer.name or str(i)
        loc, notes = doc.place(path)
        for source in layer.sources or ():
            problem = _unreachable(source, built)
            if problem:
                errors.append(
                    Diagnostic(f"from: {problem}", BAD_REFERENCE, doc.locate(path + (layer.kind, "from")), notes)
                )
            elif "." in source:
                head, _, rest = source.partition(".")
                wanted = exports.setdefault(head, [])
                if rest not in wanted:
                    wanted.append(rest)
        if name == INPUT:
            errors.append(
                Diagnostic(
                    f'the name "{INPUT}" is reserved: `from: {INPUT}` means the input of the sequence; '
                    "rename the layer",
                    BAD_NAME,
                    doc.locate(path + (layer.kind, "name")),
                    notes,
                )
            )
        elif name in reserved:
            errors.append(
                Diagnostic(
                    f'the name "{name}" is this residual block\'s shortcut_name; rename the layer or set shortcut_name',
                    DUPLICATE_NAME,
                    loc,
                )
            )
        elif name in seen:
            notes = ((seen[name], "first used here"),)
            errors.append(Diagnostic(f'the name "{name}" is already used in this scope', DUPLICATE_NAME, loc, notes))
        seen.setdefault(name, loc)
        qualified = f"{prefix}.{name}" if prefix else name
        if too_deep and layer.kind in _STRUCTURES:
            errors.append(
                Diagnostic(
                    f"layers nest more than {current_limits().depth:,} deep here; {how_to_raise('depth')}",
                    LIMIT,
                    loc,
                    notes,
                )
            )
            node = Op("identity", name, qualified, loc, standin=True)
        else:
            node = _resolve(layer, path, name, qualified, loc, doc, errors, standins, level)
        changes = _wiring(layer, notes) if layer.sources or layer.merge or notes else {}
        if path in standins:
            changes["standin"] = True
        if path in doc.block_uses and isinstance(node, Block):  # not a stand-in for a use that failed
            changes.update(kind=doc.block_uses[path], block_args=doc.block_args[path])
        if changes:  # most layers take their input from the layer before and come from no block
            node = replace(node, **changes)
        nodes.append(node)
        built.setdefault(name, node)
    return tuple(_exporting(node, exports[node.name]) if node.name in exports else node for node in nodes)


def _wiring(layer, notes: tuple) -> dict:
    """The fields of a layer's node that say where its input comes from and how it was made, where
    they differ from the defaults."""
    wiring = {}
    if layer.sources:
        wiring["inputs"] = layer.sources
        wiring["merge"] = layer.merge or ("concat" if len(layer.sources) > 1 else None)
    elif layer.merge:
        wiring["merge"] = layer.merge
    if notes:
        wiring["notes"] = notes
    return wiring


def _unreachable(source: str, built: dict[str, Node]) -> str | None:
    """Why `source` names no earlier layer of this sequence (or of a group in it), or None."""
    head, *rest = source.split(".")
    if head == INPUT:
        return f'"{INPUT}" is the input of this sequence, which has no layers to reach into' if rest else None
    if head not in built:
        return f'no earlier layer named "{head}" in this sequence{did_you_mean(head, [*built, INPUT])}'
    node = built[head]
    for part in rest:
        if not (isinstance(node, Block) and node.flow == "sequential" and node.expanded):
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


def _resolve(layer, entry_path, name, path, loc, doc, errors, standins, level) -> Node:
    """The node of `layer`, the entry at `entry_path` of its expanded list."""
    kind = registry.kind(layer.kind)
    if isinstance(kind, registry.Structure):  # (never dumped: pydantic would build their serializers)
        yaml_path = entry_path + (layer.kind,)
        return _STRUCTURES[layer.kind](layer, yaml_path, name, path, loc, doc, errors, standins, level)
    args = MappingProxyType({field: getattr(layer, field) for field in _fields(type(layer))})
    if isinstance(kind, registry.BlockKind):
        return Block(layer.kind, name, path, loc, "sequential", (), args=args, expanded=False)
    return Op(layer.kind, name, path, loc, args)


def _fields(model: type) -> list[str]:
    """A kind's own fields: not kind, name, from or merge."""
    return [f.name for f in declared_fields(model) if f.name not in ("kind", *LAYER_FIELDS)]


def op(kind: str, name: str, path: str, loc: Location, **given) -> Op:
    """An Op made by archspec itself (a block's layer), its other fields at the kind's defaults."""
    return Op(kind, name, path, loc, MappingProxyType({**registry.defaults(kind), **given}))


def _group(layer, yaml_path, name, path, loc, doc, errors, standins, level) -> Block:
    children = _resolve_list(layer.layers, yaml_path + ("layers",), path, doc, errors, (), standins, level + 1)
    return Block("group", name, path, loc, "sequential", children)


def _residual(layer, yaml_path, name, path, loc, doc, errors, standins, level) -> Block:
    reserved = (layer.shortcut_name,)
    body = _resolve_list(layer.body, yaml_path + ("body",), path, doc, errors, reserved, standins, level + 1)
    if isinstance(layer.shortcut, list):
        short_path = f"{path}.{layer.shortcut_name}"
        shortcut_children = _resolve_list(
            layer.shortcut, yaml_path + ("shortcut",), short_path, doc, errors, (), standins, level + 1
        )
        where = doc.locate(yaml_path + ("shortcut",))
        shortcut = Block("shortcut", layer.shortcut_name, short_path, where, "sequential", shortcut_children)
        mode = "explicit"
    else:
        shortcut, mode = None, layer.shortcut
    args = MappingProxyType({"shortcut_first": True}) if layer.shortcut_first else NO_ARGS
    return Block(
        "residual", name, path, loc, "residual", body, mode, layer.shortcut_name, shortcut, layer.activation, args=args
    )


_STRUCTURES = {"group": _group, "residual": _residual}

__all__ = [
    "INPUT",
    "Block",
    "Model",
    "Node",
    "Op",
    "Shape",
    "op",
    "replace",
    "resolve",
    "source_path",
    "walk",
]
