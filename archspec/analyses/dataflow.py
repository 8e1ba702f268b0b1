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
from ..core.ir import INPUT, Block, Node, Op, walk


def input_of(block: Block) -> str:
    """The path a sequence's own input goes by (`from: input`): no layer's path, which are names
    joined by dots, not even a residual shortcut's named `input`."""
    return f"{block.path}:{INPUT}"


def is_plain(block: Block) -> bool:
    """Whether nn.Sequential can run the sequence `block`: each layer reads the one before, no inner
    output is handed out, and no layer is a bare parameter (which nn.Sequential would hold but never
    apply). The live builder and the emitter (a user block's class too) both ask it."""
    return not block.exports and not any(
        child.inputs or child.exports or (isinstance(child, Op) and registry.layer_kind(child.kind).parameter)
        for child in block.children
    )


class Sequence(NamedTuple):
    """The references of one sequence (a group, a residual's body, the model's body)."""

    sources: dict[str, tuple[str, ...]]  # a layer's name -> the paths of the tensors its `from:` reads
    kept: frozenset[str]  # the references (`name`, `name.inner`, INPUT) a later `from:` reads or the sequence exports
    readers: Counter  # a layer's name or INPUT -> how many consumers read that tensor (the next layer included)


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
    paths = {child.name: child.path for child in block.children} | {INPUT: input_of(block)}
    sources = {
        child.name: tuple(_path(paths, reference) for reference in child.inputs)
        for child in block.children
        if child.inputs
    }
    kept = frozenset(reference for child in block.children for reference in child.inputs) | frozenset(block.exports)
    return Sequence(sources, kept, _readers(block.children, block.exports))


def _path(paths: dict[str, str], reference: str) -> str:
    """The path of the tensor a `from:` reference reads: `enc.conv2` is the layer at enc's path + ".conv2"."""
    head, _, rest = reference.partition(".")
    return f"{paths[head]}.{rest}" if rest else paths[head]


def _readers(children: tuple[Node, ...], exports: tuple[str, ...]) -> Counter:
    """How many consumers read each tensor of a sequence: its layers' outputs by name, and INPUT."""
    names = [INPUT, *(child.name for child in children)]  # names[i]: what child i reads without `from:`
    readers = Counter(names[i] for i, child in enumerate(children) if not child.inputs)
    if children:
        readers[children[-1].name] += 1  # the sequence's output, read by whatever follows it
    references = [source for child in children for source in child.inputs] + list(exports)
    by_name = {child.name: child for child in children}
    for reference in references:
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
