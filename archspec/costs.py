"""Stage 5 (static analyses): what a model costs and what it sees, from the shaped IR alone.

Multiply-adds are counted in the shape stage (each kind's rule, torchinfo's convention: see
docs/costs.md); this module adds the passes that need the whole graph:

- memory: parameter and buffer bytes, the activations a training step keeps, a peak estimate;
- receptive field: for each layer, per spatial dim, how many input positions one output position
  sees (`size`), how far apart in the input two neighbouring outputs are (`jump`, the effective
  stride), and the effective padding, composed layer by layer (size += (extent - 1) * jump;
  jump *= stride). Where paths merge (residual adds, concatenations, `from:`), the largest field
  wins, and a merge of paths with different jumps is noted.

Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from . import registry
from .inputs import Sizes, Windows, valid_sizes, windows
from .ir import Block, Model, Node, Op, source_path, walk
from .registry import Window

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}
INT64_BYTES = 8


@dataclass(frozen=True)
class Field:
    """The receptive field of one output position of a layer, one entry per spatial dim.

    `size`: input positions seen; `jump`: input positions between neighbouring outputs;
    `padding`: how far the first output's field starts before the input (effective padding).
    `whole`: every output sees the whole input (after a global pool or a flatten)."""

    size: tuple[int | Fraction, ...]  # Fractions only after resizing by a ratio that is not whole
    jump: tuple[int | Fraction, ...]
    padding: tuple[int | Fraction, ...]
    whole: bool = False

    def describe(self) -> str:
        if self.whole:
            return "all"
        if not self.size:
            return "-"
        size = "x".join(map(_number, self.size))
        jumps = set(self.jump)
        jump = _number(self.jump[0]) if len(jumps) == 1 else "x".join(map(_number, self.jump))
        return f"{size} /{jump}"


def _number(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{float(value):.3g}"


@dataclass(frozen=True)
class Layer:
    """One row of the cost table: a layer or block, by its state_dict path."""

    path: str
    kind: str
    depth: int
    in_shape: tuple[int, ...] | None
    out_shape: tuple[int, ...] | None
    params: int
    trainable: int
    macs: int
    activation_bytes: int  # what its forward keeps for the backward pass, one sample
    field: Field | None


@dataclass(frozen=True)
class Costs:
    """Every layer's row, and the totals torchinfo prints, for one sample unless `batch` says otherwise."""

    model: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...] | None
    dtype: str
    batch: int
    layers: tuple[Layer, ...]
    params: int
    trainable: int
    macs: int  # per sample
    param_bytes: int
    buffer_bytes: int
    input_bytes: int  # per sample
    activation_bytes: int  # per sample
    input_sizes: tuple[Sizes, ...] = ()  # per spatial dim, the sizes the model accepts (inputs.py)
    notes: tuple[str, ...] = field(default=())

    @property
    def flops(self) -> int:
        """Floating-point operations per sample, counted as 2 per multiply-add."""
        return 2 * self.macs

    @property
    def peak_training_bytes(self) -> int:
        """Estimated peak of one training step at `batch`: weights, their gradients, buffers, and the
        batch's input and kept activations (the optimizer's own state is not counted)."""
        return 2 * self.param_bytes + self.buffer_bytes + self.batch * (self.input_bytes + self.activation_bytes)


def measure(model: Model, batch: int = 1, dtype: str = "float32") -> Costs:
    """The costs of a shaped model (archspec.analyze's result)."""
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPE_BYTES)}, not {dtype!r}")
    item = DTYPE_BYTES[dtype]
    known = windows(model)
    fields, notes = receptive_fields(model, known)
    kept: dict[str, int] = {}
    _elements_kept(model.body, kept)
    layers = tuple(
        Layer(
            node.path,
            node.kind,
            node.path.count(".") + 1,
            node.in_shape,
            node.out_shape,
            node.params,
            node.params,  # a spec has no frozen layers: every parameter trains
            node.macs,
            kept[node.path] * item,
            fields.get(node.path),
        )
        for node in walk(model.body)
        if node.path
    )
    ops = [node for node in walk(model.body) if isinstance(node, Op)]
    return Costs(
        model.name,
        model.input_shape,
        model.body.out_shape,
        dtype,
        batch,
        layers,
        model.body.params,
        sum(layer.trainable for layer in layers if layer.depth == 1),
        model.body.macs,
        model.body.params * item,
        sum(_buffer_bytes(op, item) for op in ops),
        _prod(model.input_shape) * item,
        kept[""] * item,
        valid_sizes(model, known),
        tuple(notes),
    )


# ---------------------------------------------------------------- memory


_VIEWS = {"flatten", "identity"}  # their output is their input's memory


def _elements_kept(node: Node, kept: dict[str, int]) -> int:
    """Elements of the tensors a node's forward makes, per sample, stored by path in `kept` for it and
    everything inside: every layer's output (a view makes none), every merge's (a residual add, a
    dense block's concatenations, a `from:` of several)."""
    if isinstance(node, Op):
        total = 0 if node.out_shape is None or node.kind in _VIEWS else _prod(node.out_shape) + _merged(node)
    else:
        total = sum(_elements_kept(child, kept) for child in node.children) + _merged(node)
        if node.shortcut is not None:
            total += _elements_kept(node.shortcut, kept)
        if node.flow == "residual" and node.out_shape is not None:
            total += _prod(node.out_shape) * (2 if node.activation not in (None, "identity") else 1)
        if node.flow == "dense":  # each layer reads the concatenation of the block's input and what came before
            total += sum(_prod(child.in_shape) for child in node.children[1:] if child.in_shape)
            total += _prod(node.out_shape) if node.out_shape else 0
    kept[node.path] = total
    return total


def _merged(node: Node) -> int:
    return _prod(node.in_shape) if len(node.inputs) > 1 and node.in_shape else 0


def _buffer_bytes(op: Op, item: int) -> int:
    kind = registry.layer_kind(op.kind)
    if kind.buffers is None or op.in_shape is None:
        return 0
    return sum(count * (INT64_BYTES if dtype == "int64" else item) for count, dtype in kind.buffers(op))


def _prod(shape) -> int:
    total = 1
    for size in shape:
        total *= size
    return total


# ---------------------------------------------------------------- receptive field


def receptive_fields(model: Model, known: Windows | None = None) -> tuple[dict[str, Field], list[str]]:
    """The receptive field of every layer's output, by path, and notes on merges of unlike paths."""
    spatial = len(model.input_shape) - 1
    composition = _Composition(windows(model) if known is None else known)
    composition.field(model.body, Field((1,) * spatial, (1,) * spatial, (0,) * spatial))
    return composition.fields, composition.notes


class _Composition:
    """One pass over the shaped IR, composing each layer's window onto the field of its input."""

    def __init__(self, known: Windows):
        self.known = known
        self.fields: dict[str, Field] = {}
        self.notes: list[str] = []

    def field(self, node: Node, seen: Field) -> Field:
        if isinstance(node, Op):
            out = self.through(node, seen)
        elif node.flow == "residual":
            body = self.sequence(node, seen)
            short = self.field(node.shortcut, seen) if node.shortcut is not None else seen
            out = self.widest([body, short], node.path)
        elif node.flow == "dense":
            out = seen
            for child in node.children:
                out = self.widest([out, self.field(child, out)], node.path)
        else:
            out = self.sequence(node, seen)
        if node.path:
            self.fields[node.path] = out
        return out

    def sequence(self, block: Block, seen: Field) -> Field:
        current, siblings = seen, {child.name: child.path for child in block.children}
        for child in block.children:
            if child.inputs:
                current = self.widest([self.fields[source_path(siblings, name)] for name in child.inputs], child.path)
            current = self.field(child, current)
        return current

    def widest(self, paths: list[Field], where: str) -> Field:
        if len(paths) == 1:
            return paths[0]
        if any(path.whole for path in paths):
            return next(path for path in paths if path.whole)
        if len({path.jump for path in paths}) > 1:
            jumps = " and ".join(Field(p.size, p.jump, p.padding).describe().split("/")[-1] for p in paths)
            self.notes.append(f"{where or 'the model'}: paths with different jumps ({jumps}) meet; the widest is shown")
        return max(paths, key=lambda path: path.size)

    def through(self, op: Op, seen: Field) -> Field:
        """The field after `op`: an op without a window (activations, norms, linear) keeps its input's."""
        found = self.known.get(op.path)
        if seen.whole or not found:
            return seen
        if any(window.whole for window in found):
            return Field(seen.size, seen.jump, seen.padding, whole=True)
        dims = [_step(w, *dim, n) for w, dim, n in zip(found, zip(seen.size, seen.jump, seen.padding), op.in_shape[1:])]
        return Field(*(tuple(part) for part in zip(*dims)))


def _ratio(a, b):
    """a / b, as an int where it is one (Fractions cost ten times more, and most fields are whole)."""
    return a // b if isinstance(a, int) and a % b == 0 else Fraction(a, b)


def _transposed_span(window: Window) -> int:
    """How many input positions apart the farthest two inputs of one output of a transposed window
    are: output o reads input i through the kernel position t where i * stride + t = o + pad, so only the taps
    of one residue mod stride meet an output, and the kernel's extent spans extent // stride inputs."""
    stride, taps = window.stride, range(0, window.extent, window.dilation)
    spans = [[t for t in taps if (r - t) % stride == 0] for r in range(stride)]
    return max((hit[-1] - hit[0]) // stride for hit in spans if hit)


def _step(window: Window, size: Fraction, jump: Fraction, pad: Fraction, n: int) -> tuple[Fraction, ...]:
    """(size, jump, padding) after one window, along one dim whose input has `n` positions."""
    if window.size is not None or window.scale is not None:  # resizing: its stride is the size ratio
        out = window.out(n)
        stride = _ratio(n, out)
        taps = window.extent
        if window.size is not None and window.extent == 1:  # adaptive pooling: the widest of its windows
            taps = max(-(-(i + 1) * n // out) - (i * n // out) for i in range(out))
        return size + (taps - 1) * jump, jump * stride, pad
    if window.transposed:
        jump_out = _ratio(jump, window.stride)
        return size + _transposed_span(window) * jump, jump_out, pad + window.pad * jump_out
    return size + (window.extent - 1) * jump, jump * window.stride, pad + window.pad * jump
