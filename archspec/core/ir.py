"""The IR: immutable records (NamedTuples), `Op` for one torch layer, `Block` for anything holding
layers. Every stage after resolution reads and makes these. Three ways data flows through a block:
sequential, residual (body + shortcut, added) and dense (concatenated). A built-in block
(basic_block, dense_block, ...) stays one unexpanded Block until its input shape is known; the
shape stage expands it through its registry entry, the way a Keras layer is built. A node's `args`
are its validated fields, read-only: nothing after validation touches the validated objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal, NamedTuple

from .errors import Location

Shape = tuple[int, ...]  # one sample: (channels, *spatial) or (features,)

NO_ARGS: Mapping = MappingProxyType({})
INPUT = "input"  # the `from:` name of the input its sequence received; no layer may take it
# REFERENCES, in `inputs`, `like` and `exports`: a sibling's name, `group.layer` inside one, INPUT,
# or CAPTURED + a path: a tensor of an enclosing sequence (`/backbone.16`), which every block between
# it and the reader takes as an argument besides its input (a Block's `captures`).
CAPTURED = "/"


def is_captured(reference: str) -> bool:
    return reference.startswith(CAPTURED)


class Op(NamedTuple):
    """One torch layer."""

    kind: str
    name: str
    path: str  # qualified name, as in the state_dict
    loc: Location
    args: Mapping = NO_ARGS  # the validated fields, read-only; what shapes infer lives in the fields below
    inputs: tuple[str, ...] = ()  # what feeds this layer (REFERENCES below); () is the previous layer
    merge: str | None = None  # how several inputs combine: a registry merge (concat, add, mul)
    notes: tuple = ()  # the block uses this layer was expanded through
    like: str | None = None  # a reference whose spatial size the output takes (a resize to a tensor's size)
    like_shape: Shape | None = None  # that tensor's shape, for the kind's shape rule
    exports: tuple[str, ...] = ()  # always () for a single layer; see Block
    standin: bool = False  # an identity in place of a wrong layer (reported already): its output is unknown
    inplace: bool = False  # an activation that overwrites its input (archspec.inplace decides, after shapes)
    in_shape: Shape | None = None
    out_shape: Shape | None = None
    params: int = 0
    macs: int = 0  # multiply-adds for one sample, torchinfo's convention (costs.py)


JOINS = {"residual": "add", "dense": "concat"}  # how a flow joins its branches: body and shortcut, input and layers


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
    captures: tuple[str, ...] = ()  # captured references its layers read: its arguments after its input
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
    files: tuple[str, ...] = ()  # the files the spec was read from: its own and its bases'
    outputs: tuple[tuple[str, str], ...] = ()  # (name, reference) it returns as an ordered dict; (): the body's output


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
