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

import math
from fractions import Fraction
from typing import NamedTuple

from .. import registry
from ..core.errors import show_value
from ..core.ir import Block, Model, Node, Op, walk
from ..core.limits import ensure_stack, magnitude_bounds
from ..core.shape_rules import Window
from .dataflow import Dataflow, input_of, tensor_path, unread
from .sizes import Sizes, Windows, valid_sizes, windows

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}
INT64_BYTES = 8


class Field(NamedTuple):
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
        size = "x".join(map(number_text, self.size))
        jumps = set(self.jump)
        jump = number_text(self.jump[0]) if len(jumps) == 1 else "x".join(map(number_text, self.jump))
        return f"{size} /{jump}"


def number_text(value: int | Fraction) -> str:
    if type(value) is int:  # most fields
        return str(value)
    return str(value.numerator) if value.denominator == 1 else f"{float(value):.3g}"


class Layer(NamedTuple):
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


class Output(NamedTuple):
    """One of the model's named outputs: timm's feature_info, computed."""

    name: str
    path: str  # the layer it returns
    shape: tuple[int, ...] | None
    field: Field | None  # its receptive field; `jump` is its stride (reduction) against the input


class Costs(NamedTuple):
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
    notes: tuple[str, ...] = ()
    outputs: tuple[Output, ...] = ()  # the named outputs, where the spec names them

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
    if not isinstance(model, Model):
        raise TypeError(f"measure() takes the model archspec.analyze() returns, not {type(model).__name__}")
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"batch must be a positive integer, not {show_value(batch)}")
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPE_BYTES)}, not {show_value(dtype)}")
    ensure_stack()  # its passes recurse once per level of nesting, as the shape stage does
    return _measure(model, batch, dtype)


def _measure(model: Model, batch: int, dtype: str) -> Costs:
    item = DTYPE_BYTES[dtype]
    nodes = list(walk(model.body))
    known = windows(model, nodes)
    fields, notes = receptive_fields(model, known)
    notes += [f"{node.path} ({node.kind}, line {node.loc.line}): no output depends on it" for node in unread(model)]
    memory = _Memory(item, Dataflow(model.body))
    memory.visit(model.body, _Tensor(math.prod(model.input_shape), "input"))  # the input is counted apart
    kept = memory.kept_bytes()
    totals = _totals_by_block(model.body, kept)
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
            totals[node.path],
            fields.get(node.path),
        )
        for node in nodes
        if node.path
    )
    return Costs(
        model.name,
        model.input_shape,
        model.body.out_shape,
        dtype,
        batch,
        layers,
        model.body.params,
        sum(child.params for child in model.body.children),  # the trainable parameters of the rows at depth 1
        model.body.macs,
        model.body.params * item,
        _buffer_bytes(nodes, item),
        math.prod(model.input_shape) * item,
        totals[""],
        valid_sizes(model, known),
        tuple(notes),
        tuple(_output(model, name, reference, nodes, fields) for name, reference in model.outputs),
    )


def _output(model: Model, name: str, reference: str, nodes: list, fields: dict) -> Output:
    path = tensor_path(model.body, reference)
    shape = next(node.out_shape for node in nodes if node.path == path)
    return Output(name, path, shape, fields.get(path))


# ---------------------------------------------------------------- memory


class _Tensor:
    """A tensor a forward pass makes: its elements per sample, and whether a backward keeps it."""

    __slots__ = ("elements", "kept", "owner")

    def __init__(self, elements: int, owner: str):
        self.elements, self.kept, self.owner = elements, False, owner


class _Memory:
    """Which tensors a training step keeps until its backward, walked over the shaped IR: a tensor
    is kept when its maker's backward needs it (ReLU keeps its output) or one of its readers' does
    (a convolution or a norm keeps its input). Max pooling also keeps int64 indices, dropout a
    byte mask. Elements kept are charged to the layer that made the tensor."""

    def __init__(self, item: int, flow: Dataflow):
        self.item, self.flow = item, flow
        self.tensors: list[_Tensor] = []
        self.extra: dict[str, int] = {}  # path -> bytes of indices and masks
        self.made: dict[str, _Tensor] = {}  # path -> the tensor it output

    def new(self, elements: int, owner: str) -> _Tensor:
        tensor = _Tensor(elements, owner)
        self.tensors.append(tensor)
        return tensor

    def visit(self, node: Node, x: _Tensor) -> _Tensor:
        if isinstance(node, Op):
            out = self.op(node, x)
        elif node.flow == "residual":
            out = self.residual(node, x)
        elif node.flow == "dense":
            out = self.dense(node, x)
        else:
            out = self.sequence(node, x)
        self.made[node.path] = out  # a later `from:` may read it, from inside a group too
        return out

    def op(self, op: Op, x: _Tensor) -> _Tensor:
        if op.out_shape is None:
            return x
        saves = registry.layer_kind(op.kind).saves
        if callable(saves):
            saves = saves(op)
        if "view" in saves:
            return x
        size = math.prod(op.out_shape)
        out = self.new(size, op.path)
        x.kept |= "input" in saves
        out.kept |= "output" in saves
        extra = (INT64_BYTES * size if "indices" in saves else 0) + (size if "mask" in saves else 0)
        if extra:
            self.extra[op.path] = self.extra.get(op.path, 0) + extra
        return out

    def sequence(self, block: Block, x: _Tensor) -> _Tensor:
        current = self.made[input_of(block)] = x  # `from: input` reads x itself, counted where it was made
        for child in block.children:
            if child.inputs:
                current = self.merge(child, [self.made[path] for path in self.flow.sources(block, child)])
            current = self.visit(child, current)
        return current

    def merge(self, node: Node, sources: list[_Tensor]) -> _Tensor:
        if len(sources) == 1:
            return sources[0]
        if registry.merge(node.merge).keeps_inputs:
            for source in sources:
                source.kept = True
        return self.new(math.prod(node.in_shape) if node.in_shape else 0, node.path)

    def residual(self, block: Block, x: _Tensor) -> _Tensor:
        body = self.sequence(block, x)
        if block.shortcut is not None:
            self.visit(block.shortcut, x)
        if block.out_shape is None:
            return body
        total = self.new(math.prod(block.out_shape), block.path)  # the add keeps nothing itself
        if block.activation is None or registry.ACTIVATIONS[block.activation].function is None:
            return total
        saves = registry.layer_kind(block.activation).saves if block.activation in registry.KINDS else ("input",)
        out = self.new(math.prod(block.out_shape), block.path)
        total.kept |= "input" in saves
        out.kept |= "output" in saves
        return out

    def dense(self, block: Block, x: _Tensor) -> _Tensor:
        current = x
        for i, child in enumerate(block.children):
            if i and child.in_shape:  # each layer reads the concatenation of all before it
                current = self.new(math.prod(child.in_shape), block.path)
            self.visit(child, current)
        return self.new(math.prod(block.out_shape), block.path) if block.out_shape else current

    def kept_bytes(self) -> dict[str, int]:
        """Bytes kept per path of the layer (or block, for what its flow makes) that made them."""
        kept = dict(self.extra)
        for tensor in self.tensors:
            if tensor.kept:
                kept[tensor.owner] = kept.get(tensor.owner, 0) + tensor.elements * self.item
        return kept


def _totals_by_block(node: Node, kept: dict[str, int], totals: dict[str, int] | None = None) -> dict[str, int]:
    """Bytes kept per node path, a block's including everything inside it."""
    totals = {} if totals is None else totals
    total = kept.get(node.path, 0)
    if isinstance(node, Block):
        for child in (*node.children, *((node.shortcut,) if node.shortcut is not None else ())):
            _totals_by_block(child, kept, totals)
            total += totals[child.path]
    totals[node.path] = total
    return totals


def _buffer_bytes(nodes: list[Node], item: int) -> int:
    """The bytes of the buffers (a batch norm's running statistics...) of the shaped ops among `nodes`."""
    total = 0
    for op in nodes:
        if isinstance(op, Op) and op.in_shape is not None and registry.layer_kind(op.kind).buffers is not None:
            buffers = registry.layer_kind(op.kind).buffers(op)
            if buffers:
                total += sum(count * (INT64_BYTES if dtype == "int64" else item) for count, dtype in buffers)
    return total


# ---------------------------------------------------------------- receptive field


def receptive_fields(model: Model, known: Windows | None = None) -> tuple[dict[str, Field], list[str]]:
    """The receptive field of every layer's output, by path, and notes on merges of unlike paths."""
    spatial = len(model.input_shape) - 1
    composition = _Composition(windows(model) if known is None else known, Dataflow(model.body))
    composition.field(model.body, Field((1,) * spatial, (1,) * spatial, (0,) * spatial))
    return composition.fields, composition.notes


class _Composition:
    """One pass over the shaped IR, composing each layer's window onto the field of its input."""

    def __init__(self, known: Windows, flow: Dataflow):
        self.known, self.flow = known, flow
        self.inputs: dict[str, Field] = {}  # what each sequence's input sees, by input_of
        self.bound = magnitude_bounds()[0]
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
        current = self.inputs[input_of(block)] = seen  # `from: input` sees what the sequence's input sees
        for child in block.children:
            if child.inputs:
                sources = self.flow.sources(block, child)
                current = self.widest([self.fields.get(path) or self.inputs[path] for path in sources], child.path)
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
        widest = [max(paths, key=lambda path: path.size[d]) for d in range(len(paths[0].size))]  # in each dim
        return Field(
            tuple(path.size[d] for d, path in enumerate(widest)),
            tuple(path.jump[d] for d, path in enumerate(widest)),
            tuple(path.padding[d] for d, path in enumerate(widest)),
        )

    def through(self, op: Op, seen: Field) -> Field:
        """The field after `op`: an op without a window (activations, norms, linear) keeps its input's."""
        found = self.known.get(op.path)
        if seen.whole or not found:
            return seen
        if any(window.whole for window in found):
            return Field(seen.size, seen.jump, seen.padding, whole=True)
        dims = [_step(w, *dim, n) for w, dim, n in zip(found, zip(seen.size, seen.jump, seen.padding), op.in_shape[1:])]
        values = [value for dim in dims for value in dim]
        bound = self.bound
        if not (all(type(value) is int for value in values) and max(map(abs, values), default=0) < bound):
            dims = [tuple(_tamed(value, bound) for value in dim) for dim in dims]
            if any(value is None for dim in dims for value in dim):
                # A field of more than 10**digits positions (strides of 10**50, layer after layer) sees more
                # than any input has: the whole of it, as after a global pool; its figures would grow without end.
                return Field(seen.size, seen.jump, seen.padding, whole=True)
        return Field(*(tuple(part) for part in zip(*dims)))


def _tamed(value, bound: int):
    """A receptive field's figure kept small: None beyond `bound` (10**digits); a ratio whose
    denominator outgrows that (many resizings by 2/3) made the nearest with a smaller one."""
    if isinstance(value, Fraction) and value.denominator >= bound:
        value = value.limit_denominator(bound - 1)
    return value if -bound < value < bound else None


def _ratio(a, b):
    """a / b, as an int where it is one (Fractions cost ten times more, and most fields are whole)."""
    return a // b if isinstance(a, int) and a % b == 0 else Fraction(a, b)


def _transposed_span(window: Window) -> int:
    """How many input positions apart the farthest two inputs of one output of a transposed window
    are: output o reads input i through the kernel position t where i * stride + t = o + pad, so only the taps
    of one residue mod stride meet an output, and the kernel's extent spans extent // stride inputs.

    Taps j * dilation (j = 0 .. last) meet the same outputs when their j differ by a multiple of
    m = stride / gcd(dilation, stride); the residue of j = 0 has the most, spanning last // m * m taps,
    (last // m) * (dilation / gcd) inputs. (In closed form: a loop over the stride or the taps would
    take as long as the stride is large.)"""
    last, common = (window.extent - 1) // window.dilation, math.gcd(window.dilation, window.stride)
    return last // (window.stride // common) * (window.dilation // common)


def _adaptive_taps(n: int, out: int) -> int:
    """The widest window of adaptive pooling from n to out positions: window i spans
    [floor(i n / out), ceil((i + 1) n / out)), widest where i n mod out is largest, out - gcd(n, out)."""
    return (2 * out + n - math.gcd(n, out) - 1) // out


def _step(window: Window, size: Fraction, jump: Fraction, pad: Fraction, n: int) -> tuple[Fraction, ...]:
    """(size, jump, padding) after one window, along one dim whose input has `n` positions."""
    if window.size is not None or window.scale is not None:  # resizing: its stride is the size ratio
        out = window.out(n)
        stride = _ratio(n, out)
        taps = window.extent
        if window.size is not None and window.extent == 1:  # adaptive pooling: the widest of its windows
            taps = _adaptive_taps(n, out)
        return size + (taps - 1) * jump, jump * stride, pad
    if window.transposed:
        jump_out = _ratio(jump, window.stride)
        return size + _transposed_span(window) * jump, jump_out, pad + window.pad * jump_out
    return size + (window.extent - 1) * jump, jump * window.stride, pad + window.pad * jump
