"""In place where it is safe, decided once, statically, for both backends.

`decide(model)` runs after the shape stage (built-in blocks are expanded by then) and sets
`Op.inplace` on activations and `Block.inplace_add` / `Block.inplace_activation` on residual
blocks; the live builder (nn.ReLU(inplace=True), `x += identity`) and the emitter read those fields,
so they never decide anything themselves. torchvision does the same: ReLU(inplace=True) after its
norms and `out += identity` in its ResNet blocks.

An activation may overwrite its input tensor T when

- its kind has an in-place form (registry.Activation.inplace) and its fields allow it (a negative
  leaky_relu slope does not: PyTorch has no in-place backward for it);
- T is the fresh output of a layer whose backward does not need that output and whose output is
  not a view of its input (a kind that says `fresh`: conv, conv_transpose, linear, the norms), a
  merge of several `from:` layers that allocates its result (`fresh`: add, concat, mul), a
  residual block without an activation (its add allocates, or writes onto such a fresh output), or
  a sequence ending in one of these;
- nobody else reads T: not the next layer as well as a `from:`, not a sequence's exports, and never
  the model's input or a residual body's input (its shortcut reads it too).

Anything else (an activation's output, a view such as flatten or chunk, identity and dropout, which
in eval return their input, pooling, a dense block, a plugin's kind) counts as unsafe: correct
first, fast where it is certain. A residual block adds in place (`out += identity`) when its body's
output is such a fresh tensor, and applies its activation in place after the add, whose result
nobody else holds. `inplace: false` on a layer always wins; `inplace: true` where it is not safe
is a located error that says why. Auto never picks elu (its in-place backward computes the
gradient from the output, equal to the out-of-place one only to the last bits).
"""

from __future__ import annotations

from .. import registry
from ..core.errors import BAD_VALUE, Diagnostic, SpecError, in_file_order
from ..core.ir import INPUT, Block, Model, Node, Op, replace
from .dataflow import Dataflow

UNKNOWN = "its input stands in for a wrong layer"  # reported already: no second error about it


def decide(model: Model) -> Model:
    """`model` with the in-place decisions made; raises SpecError where `inplace: true` is unsafe."""
    errors: list[Diagnostic] = []
    flow = Dataflow(model.body)
    body = _sequence(model.body, "it is the model's input, which the caller still holds", errors, flow)
    if errors:
        raise SpecError(in_file_order(errors))
    return model if body is model.body else replace(model, body=body)


def without(model: Model) -> Model:
    """`model` with nothing in place: what archspec built before it decided (tests and benchmarks
    compare the two; `build_model(without(analyze(spec)))` is the out-of-place module)."""

    def off(node: Node) -> Node:
        if isinstance(node, Op):
            return replace(node, inplace=False) if node.inplace else node
        shortcut = off(node.shortcut) if node.shortcut is not None else None
        children = tuple(off(child) for child in node.children)
        return replace(node, children=children, shortcut=shortcut, inplace_add=False, inplace_activation=False)

    return replace(model, body=off(model.body))


def activation_inplace(name: str | None, args=None, auto: bool = True) -> str | None:
    """Why the activation `name` with fields `args` (its defaults: a residual's) is not applied in
    place on a tensor that may be overwritten, or None when it is."""
    entry = registry.ACTIVATIONS.get(name) if name else None
    if entry is None or entry.inplace is None:
        return f"{name} has no in-place form"
    if args is None:
        args = registry.defaults(name)
    return entry.inplace_refusal(args, auto) if entry.inplace_refusal is not None else None


def _sequence(block: Block, entering: str | None, errors, flow: Dataflow) -> Block:
    """Decide inside a sequential block (or a residual's body: `block.children`). `entering`: why the
    tensor the sequence receives may not be overwritten (None: it is fresh and only this reads it)."""
    children = block.children
    readers = flow.of(block).readers
    unsafe: dict[str, str | None] = {}  # layer name -> why its output may not be overwritten, None if it may
    unsafe[INPUT] = entering if readers[INPUT] <= 1 else "the input of this sequence is read by more than one layer"
    decided = []
    for i, child in enumerate(children):
        if type(child) is not Op:
            child = _block(child, _input_unsafe(child, i, children, unsafe, readers), errors, flow)
        elif "inplace" in child.args:  # a kind that can work in place (most layers cannot: no need to ask)
            child = _op(child, _input_unsafe(child, i, children, unsafe, readers), errors)
        decided.append(child)
        unsafe[child.name] = _output_unsafe(child)
    if all(a is b for a, b in zip(decided, children)):
        return block
    return replace(block, children=tuple(decided))


def _input_unsafe(child: Node, i: int, children, unsafe: dict, readers) -> str | None:
    """Why the tensor `child` receives may not be overwritten by it, or None."""
    if len(child.inputs) > 1:
        return None if registry.merge(child.merge).fresh else f"it is the result of the merge {child.merge}"
    source = child.inputs[0] if child.inputs else children[i - 1].name if i else INPUT
    if "." in source:
        return f"it is the output of {source}, reached into with from:"
    why = unsafe[source] if source in unsafe else f"it is the output of {source}"
    if why is None and readers[source] > 1:
        where = "the input of this sequence" if source == INPUT else f"the output of {source}"
        return f"it is {where}, which another layer reads too"
    return why


def _op(op: Op, why: str | None, errors) -> Op:
    if "inplace" not in op.args:
        return op  # not a kind that can work in place
    asked = op.args["inplace"]
    if asked is False:
        return op
    why = why or activation_inplace(op.kind, op.args, auto=asked is None)
    if why is None:
        return replace(op, inplace=True)
    if asked and why != UNKNOWN:
        message = f"layer {op.path} ({op.kind}): inplace: true is not safe here: {why}"
        errors.append(Diagnostic(message, BAD_VALUE, op.loc, op.notes))
    return op


def _block(block: Block, why: str | None, errors, flow: Dataflow) -> Block:
    if block.flow == "sequential":
        return _sequence(block, why, errors, flow)
    if block.flow == "dense":  # each layer's input is made by the block (kept as unsafe: its own business)
        children = tuple(_sequence(c, "it is a dense layer's input", errors, flow) for c in block.children)
        return block if all(a is b for a, b in zip(children, block.children)) else replace(block, children=children)
    # residual: the shortcut reads the input as well, so neither branch may overwrite it
    shared = "it is the input of a residual block, which its shortcut reads too"
    body = _sequence(replace(block, flow="sequential", exports=()), shared, errors, flow)
    changes = {}
    if body is not block and body.children is not block.children:
        changes["children"] = body.children
    if block.shortcut is not None:
        shortcut = _sequence(block.shortcut, shared, errors, flow)
        if shortcut is not block.shortcut:
            changes["shortcut"] = shortcut
    last = body.children[-1] if body.children else None
    if last is not None and _output_unsafe(last) is None:
        changes["inplace_add"] = True
    if block.activation and registry.ACTIVATIONS[block.activation].function is not None:
        if activation_inplace(block.activation) is None:
            changes["inplace_activation"] = True
    return replace(block, **changes) if changes else block


def _output_unsafe(node: Node) -> str | None:
    """Why the output of `node` may not be overwritten by the layer after it, or None."""
    if isinstance(node, Op):
        if node.standin:
            return UNKNOWN
        if registry.layer_kind(node.kind).fresh:
            return None
        return f"it is the output of {node.path} ({node.kind}), which its backward may need or which may share memory"
    if node.flow == "residual":
        if node.activation and registry.ACTIVATIONS[node.activation].function is not None:
            return f"it is the output of {node.path}'s {node.activation}"
        return None  # the add's result: new, or the body's fresh output written in place
    if node.flow == "sequential" and node.children:
        last = node.children[-1]
        if any(path.partition(".")[0] == last.name for path in node.exports):
            return f"it is the output of {last.path}, which later layers read too"
        return _output_unsafe(last)
    return f"it is the output of {node.path} ({node.kind})"


__all__ = ["activation_inplace", "decide", "without"]
