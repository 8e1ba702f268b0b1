"""Stage 4: infer every shape and parameter count statically, with PyTorch's own formulas.

`infer(model)` returns the same IR with `in_shape`, `out_shape` and `params` filled in, built-in
blocks expanded, and automatic residual shortcuts made concrete. Each layer's own rule comes from
its registry entry (archspec/kinds/); this module walks the flows and holds the helpers the rules
share. A layer whose input is unknown (an earlier error) is skipped, so each error is reported
once, at the layer that causes it, and all independent errors come out in one run.
"""

from __future__ import annotations

import math

from .. import kinds, registry  # noqa: F401  (kinds: registers the built-in kinds)
from ..core.errors import (
    BRANCH_MISMATCH,
    CONCAT_MISMATCH,
    LIMIT,
    OUTPUT_SIZE,
    Diagnostic,
    SpecError,
    in_file_order,
    show_number,
)
from ..core.ir import Block, Model, Node, Op, replace
from ..core.limits import current as current_limits
from ..core.limits import ensure_stack, how_to_raise, magnitude_bounds
from ..core.shape_rules import Shape, ShapeError, fmt_shape
from ..kinds.structures import projection
from .dataflow import input_of, tensor_path


class _Run:
    """One inference: the errors found, and every shaped layer by path, for the references that
    reach across sequences (`/backbone.16`, a resize's `like`)."""

    def __init__(self):
        self.errors: list[Diagnostic] = []
        self.shapes: dict[str, Shape | None] = {}  # every tensor's shape by path (dataflow.tensor_path)


def infer(model: Model) -> Model:
    run = _Run()
    errors = run.errors
    ensure_stack()
    try:
        body = _infer(model.body, model.input_shape, run)
    except RecursionError:  # only with limit depth raised past what Python's stack takes
        message = f"the model nests too deeply for Python's stack; lower the nesting or {how_to_raise('depth')}"
        raise SpecError([*errors, Diagnostic(message, LIMIT, model.body.loc)]) from None
    if errors:
        raise SpecError(in_file_order(errors))
    return replace(model, body=body)


def _infer(node: Node, shape: Shape | None, run: _Run) -> Node:
    node = _infer_node(node, shape, run)
    run.shapes[node.path] = node.out_shape
    return node


def _infer_node(node: Node, shape: Shape | None, run: _Run) -> Node:
    if shape is None:
        return node
    if isinstance(node, Op) and node.standin:
        return replace(node, in_shape=shape)
    try:
        if isinstance(node, Op):
            if node.like is not None and node.like_shape is None:  # the size it takes is unknown (reported)
                return replace(node, in_shape=shape)
            kind = registry.layer_kind(node.kind)
            out, params = kind.shape(node, shape)
            return _bounded(_shaped(kind, node, shape, out, params))
        if not node.expanded:
            _admit(node)
            node = registry.block_kind(node.kind).expand(node, shape)
        return _FLOWS[node.flow](node, shape, run)
    except ShapeError as exc:
        message = f"{_describe(node)} on input {fmt_shape(shape)}: {exc.message}"
        run.errors.append(Diagnostic(message, exc.code, node.loc, node.notes))
        if exc.result is not None and isinstance(node, Op):
            out, params = exc.result
            return _shaped(registry.layer_kind(node.kind), node, shape, out, params)
        return replace(node, in_shape=shape)


def _bounded(op: Op) -> Op:
    """`op`, if its output sizes, parameters and multiply-adds are below 10**digits (limit digits):
    every later figure (a flatten's features, a block's totals, a table) then stays small."""
    bound = magnitude_bounds()[0]
    if op.params < bound and op.macs < bound and max(op.out_shape, default=0) < bound:
        return op
    digits = current_limits().digits
    if any(size >= bound for size in op.out_shape):
        sizes = ", ".join(show_number(size) for size in op.out_shape)
        what, code = f"its output ({sizes}) has a size of more than {digits} digits", OUTPUT_SIZE
    else:
        count = op.params if op.params >= bound else op.macs
        which = "parameters" if op.params >= bound else "multiply-adds"
        what, code = f"its {which} ({show_number(count)}) are a number of more than {digits} digits", LIMIT
    raise ShapeError(f"{what}; {how_to_raise('digits')}", code)


def _admit(block: Block) -> None:
    """A built-in block whose layers would take the model past limit layers is refused before they
    are made (expansion counts them the same way, by the kind's `count`; this guards a validated spec
    given as such)."""
    kind, limit = registry.block_kind(block.kind), current_limits().layers
    count = kind.count(block.args) if kind.count else 0
    if count > limit:
        raise ShapeError(f"it makes {show_number(count)} layers, more than {limit:,}; {how_to_raise('layers')}", LIMIT)


def _shaped(kind: registry.LayerKind, op: Op, shape: Shape, out: Shape, params: int) -> Op:
    """`op` with its shapes, parameters and multiply-adds: the kind's rule, or else torchinfo's for
    the rest (each parameter once)."""
    shaped = replace(op, in_shape=shape, out_shape=out, params=params, macs=params)
    return replace(shaped, macs=kind.macs(shaped)) if kind.macs else shaped


def _describe(node: Node) -> str:
    return f"layer {node.path} ({node.kind})" if node.path else node.kind


# ---------------------------------------------------------------- blocks


def _sequential(block: Block, shape: Shape, run: _Run) -> Block:
    children = []
    current: Shape | None = shape
    run.shapes[input_of(block)] = shape
    for child in block.children:
        if child.inputs:
            shapes = [run.shapes.get(tensor_path(block, reference)) for reference in child.inputs]
            current = _merged_input(child, shapes, run.errors)
        if isinstance(child, Op) and child.like is not None:
            child = replace(child, like_shape=run.shapes.get(tensor_path(block, child.like)))
        child = _infer(child, current, run)
        children.append(child)
        current = child.out_shape
    return _done(block, shape, current, children)


def _merged_input(child: Node, shapes: list[Shape | None], errors) -> Shape | None:
    """The shape `child` receives from its `from:` sources' outputs: one, or several merged."""
    if any(s is None for s in shapes):
        return None
    if len(shapes) == 1:
        return shapes[0]
    try:
        return registry.merge(child.merge).shape(list(zip(child.inputs, shapes)))
    except ShapeError as exc:
        errors.append(Diagnostic(f"{_describe(child)}: {exc.message}", exc.code, child.loc, child.notes))
        return None


def _residual(block: Block, shape: Shape, run: _Run) -> Block:
    body = _sequential(replace(block, flow="sequential"), shape, run)
    out = body.out_shape
    shortcut, short_out = block.shortcut, shape
    if block.shortcut_mode == "explicit":
        shortcut = _infer(shortcut, shape, run)
        short_out = shortcut.out_shape
    elif block.shortcut_mode == "auto" and out is not None and (out != shape or (block.stride or 1) != 1):
        shortcut = _infer(_projection(block, shape, out), shape, run)
        short_out = shortcut.out_shape
    if out is not None and short_out is not None and out != short_out:
        raise ShapeError(
            f"cannot add the body's output {fmt_shape(out)} to the shortcut's {fmt_shape(short_out)}"
            + (" (the shortcut is identity)" if block.shortcut_mode == "identity" else ""),
            BRANCH_MISMATCH,
        )
    done = _done(block, shape, out if short_out is not None else None, body.children)
    if shortcut is None:
        return replace(done, shortcut=shortcut)
    return replace(done, shortcut=shortcut, params=done.params + shortcut.params, macs=done.macs + shortcut.macs)


def _projection(block: Block, shape: Shape, out: Shape) -> Block:
    """The 1x1 conv + BN that maps the input onto the body's output shape."""
    if len(shape) < 2 or len(out) != len(shape):
        raise ShapeError(f"no 1x1 convolution maps the input onto the body's output {fmt_shape(out)}", BRANCH_MISMATCH)
    strides = []
    for dim, (size_in, size_out) in enumerate(zip(shape[1:], out[1:])):
        # Prefer the body's own stride (a ResNet block's), so both branches sample the same positions.
        body_stride = block.stride or math.prod(_stride_of(child, dim, len(shape) - 1) for child in block.children)
        smallest = (size_in - 1) // size_out + 1  # the least s with (in - 1) // s + 1 <= out
        candidates = (body_stride, smallest)  # (a scan of 1..in found the same, in time linear in the size)
        stride = next((s for s in candidates if (size_in - 1) // s + 1 == size_out), None)
        if stride is None:
            raise ShapeError(
                f"no strided 1x1 convolution maps the input onto the body's output {fmt_shape(out)}; "
                f"give the shortcut explicitly",
                BRANCH_MISMATCH,
            )
        strides.append(stride)
    return projection(block, out[0], strides[0] if len(set(strides)) == 1 else tuple(strides))


def _stride_of(node: Node, dim: int, n: int) -> int:
    """The stride of a layer along `dim`; of a sequence or residual, its layers' strides multiplied
    (RegNet's body is a group `f` whose middle conv strides)."""
    if isinstance(node, Block):
        if node.stride is not None or node.flow == "dense":
            return node.stride or 1
        return math.prod(_stride_of(child, dim, n) for child in node.children)
    stride_of = registry.layer_kind(node.kind).stride
    if not stride_of:
        return 1
    stride = stride_of(node)
    return stride if isinstance(stride, int) else stride[dim] if len(stride) == n else 1


def _dense(block: Block, shape: Shape, run: _Run) -> Block:
    errors = run.errors
    children = []
    current: Shape | None = shape
    for child in block.children:
        child = _infer(child, current, run)
        children.append(child)
        out = child.out_shape
        if current is None or out is None:
            current = None
            continue
        if len(out) != len(current) or out[1:] != current[1:]:
            errors.append(
                Diagnostic(
                    f"{_describe(child)}: cannot concatenate its output {fmt_shape(out)} with its input "
                    f"{fmt_shape(current)} on the channel axis: the sizes after the channel differ",
                    CONCAT_MISMATCH,
                    child.loc,
                    child.notes,
                )
            )
            current = None
            continue
        current = (current[0] + out[0], *current[1:])
    return _done(block, shape, current, children)


def _done(block: Block, shape: Shape, out: Shape | None, children) -> Block:
    params = sum(child.params for child in children)
    macs = sum(child.macs for child in children)
    return replace(block, in_shape=shape, out_shape=out, children=tuple(children), params=params, macs=macs)


_FLOWS = {"sequential": _sequential, "residual": _residual, "dense": _dense}
