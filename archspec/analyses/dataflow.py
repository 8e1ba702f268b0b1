"""Which layer reads which, resolved once for every pass after the shapes.

A layer of a sequence reads the output of the layer before it (the first, the sequence's input),
or the earlier layers its `from:` names: a sibling, `group.layer` inside one, or `input`, the
sequence's own input; several are merged. A sequence hands out the inner outputs that a later
`from:` reaches into (its exports). `Dataflow` resolves every such reference to the path of the
tensor it reads and counts each tensor's readers, sequence by sequence, as sqlglot's `Scope` does
for a query; costs, accepted sizes, in place, the diagram, the live builder and the emitter read it.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

from .. import registry
from ..core.ir import CAPTURED, INPUT, Block, Node, Op, is_captured, walk


def input_of(block: Block) -> str:
    """The path a sequence's own input goes by (`from: input`): no layer's path, which are names
    joined by dots, not even a residual shortcut's named `input`."""
    return f"{block.path}:{INPUT}"


def tensor_path(block: Block, reference: str) -> str:
    """The path of the tensor a reference of `block`'s layers reads: `enc.conv2` is the layer at
    block's path + ".enc.conv2", a captured `/backbone.16` the layer at backbone.16."""
    if is_captured(reference):
        return reference[len(CAPTURED) :]
    if reference == INPUT:
        return input_of(block)
    return f"{block.path}.{reference}" if block.path else reference


def is_plain(block: Block) -> bool:
    """Whether nn.Sequential can run the sequence `block`: each layer reads the one before and nothing
    else, nothing is handed in or out, and no layer is a bare parameter (which nn.Sequential would
    hold but never apply). The live builder and the emitter (a user block's class too) both ask it."""
    return not block.exports and not block.captures and not any(_wired(child) for child in block.children)


def _wired(node: Node) -> bool:
    """Whether a layer needs more than its predecessor's output: references, or being a parameter."""
    if node.inputs or node.exports:
        return True
    if isinstance(node, Block):
        return bool(node.captures)
    return node.like is not None or registry.layer_kind(node.kind).parameter


class Sequence(NamedTuple):
    """The references of one sequence (a group, a residual's body, the model's body)."""

    sources: dict[str, tuple[str, ...]]  # a layer's name -> the paths of the tensors its `from:` reads
    kept: frozenset[str]  # the references a later layer reads, a block is handed or the sequence exports
    readers: Counter  # a layer's name or INPUT -> how many consumers read that tensor (the next layer included)
    passes: dict[str, tuple[str, ...]]  # a block's name -> the references it is handed after its input (its captures)
    likes: dict[str, str]  # a layer's name -> the path of the tensor whose size it takes


class Dataflow:
    """Every sequence's references resolved, by the sequence's path."""

    def __init__(self, body: Block):
        self.sequences = {
            node.path: _sequence(node)
            for node in walk(body)
            if isinstance(node, Block) and node.flow in ("sequential", "residual")
        }

    def of(self, block: Block) -> Sequence:
        return self.sequences[block.path]

    def sources(self, block: Block, child: Node) -> tuple[str, ...]:
        """The paths of the tensors `child` (a layer of `block`, with `from:`) reads."""
        return self.sequences[block.path].sources[child.name]


def _sequence(block: Block) -> Sequence:
    sources = {
        child.name: tuple(tensor_path(block, reference) for reference in child.inputs)
        for child in block.children
        if child.inputs
    }
    passes = {
        child.name: tuple(_handed(block, captured) for captured in child.captures)
        for child in _with_shortcut(block)
        if isinstance(child, Block) and child.captures
    }
    likes = {child.name: child.like for child in block.children if isinstance(child, Op) and child.like is not None}
    references = [r for child in block.children for r in child.inputs] + [*likes.values(), *block.exports]
    references += [r for handed in passes.values() for r in handed]
    return Sequence(
        sources,
        frozenset(references),
        _readers(block.children, references),
        passes,
        {name: tensor_path(block, like) for name, like in likes.items()},
    )


def _with_shortcut(block: Block) -> tuple[Node, ...]:
    return (*block.children, block.shortcut) if block.shortcut is not None else block.children


def _handed(block: Block, captured: str) -> str:
    """The reference by which `block` hands a child the captured tensor `captured`: its own capture,
    or the name (`backbone.16`) of what its own layers made."""
    if captured in block.captures:
        return captured
    path = captured[len(CAPTURED) :]
    return path[len(block.path) + 1 :] if block.path else path


def _readers(children: tuple[Node, ...], references: list[str]) -> Counter:
    """How many consumers read each tensor of a sequence: its layers' outputs by name, and INPUT."""
    names = [INPUT, *(child.name for child in children)]  # names[i]: what child i reads without `from:`
    readers = Counter(names[i] for i, child in enumerate(children) if not child.inputs)
    if children:
        readers[children[-1].name] += 1  # the sequence's output, read by whatever follows it
    by_name = {child.name: child for child in children}
    for reference in references:
        if is_captured(reference):
            continue  # a tensor of a sequence around this one, counted there
        head, _, rest = reference.partition(".")
        if not rest or _aliases_output(by_name.get(head), rest):  # an inner output that is the layer's own
            readers[head] += 1
    return readers


def _aliases_output(node: Node | None, path: str) -> bool:
    """Whether the inner layer at `path` (relative to `node`) may hand out `node`'s own output."""
    for part in path.split("."):
        if not isinstance(node, Block) or not node.children:
            return True  # unknown: count it as a reader
        if node.flow != "sequential" or node.children[-1].name != part:
            return False
        node = node.children[-1]
    return True


def unread(model) -> list[Node]:
    """The layers whose output nothing reads: no later layer, reference, or output of the model
    (with named outputs, not even the last layer's). The outermost of each such part, in order:
    they still run, and cost, in the live and emitted modules."""
    flow, found = Dataflow(model.body), []
    for block in walk(model.body):
        if not isinstance(block, Block) or block.flow not in ("sequential", "residual"):
            continue
        sequence = flow.of(block)
        heads = {reference.partition(".")[0] for reference in sequence.kept}
        readers = sequence.readers
        for i, child in enumerate(block.children):
            last = i == len(block.children) - 1
            read = readers[child.name] - (last and block is model.body and bool(model.outputs))
            if read <= 0 and child.name not in heads:
                found.append(child)
    outer = {node.path for node in found}  # a part inside an unread one is not named again
    return [node for node in found if not any(node.path.startswith(f"{path}.") for path in outer)]
