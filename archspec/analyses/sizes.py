"""Which input sizes a model accepts, per spatial dim, computed statically.

A size passes when every layer's output stays at least 1, the branches that meet (residual adds,
concatenations, `from:` merges) agree, and no layer's parameters would change shape (the linear
after a flatten, a layer norm over the spatial dims): the model built at the spec's input then
runs on it unchanged. Each dim is varied on its own, the others at the spec's sizes.

Each layer's registry `Window` says how it maps sizes, so one trial walks only the layers that
change a size, and a block answers a size it has seen from memory. The trials go up from 1 to the
smallest size that passes, then cover one period (the product of the strides) from one period
past the spec's own size, which shows the pattern that goes on: every size, the sizes of some residues mod a
period, or none, when the sizes that pass are bounded (a flatten feeding a linear).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

from .. import registry
from ..core.ir import Block, Model, Node, Op, walk
from ..core.shape_rules import SPATIAL_NAMES, ShapeError
from .dataflow import Dataflow, input_of

MAX_TRIAL = 1 << 14  # the largest size tried; beyond it the pattern is taken to go on


class Sizes(NamedTuple):
    """The sizes one spatial dim accepts: `smallest`, then those n with n % period in `residues`,
    up to `largest` (None: no bound)."""

    dim: str
    smallest: int | None  # None: no size works (the spec itself is wrong in this dim)
    period: int = 1
    residues: tuple[int, ...] = (0,)
    largest: int | None = None

    def accepts(self, size: int) -> bool:
        if self.smallest is None or size < self.smallest or (self.largest is not None and size > self.largest):
            return False
        return size % self.period in self.residues

    def describe(self) -> str:
        name = self.dim
        if self.smallest is None:
            return f"{name}: none"
        if self.largest == self.smallest:
            return f"{name} = {self.smallest} only"
        bound = (
            f"{self.smallest} <= {name} <= {self.largest}" if self.largest is not None else f"{name} >= {self.smallest}"
        )
        if self.period == 1:
            return bound if self.largest is not None else f"any {bound}"
        if self.residues == (0,):
            return f"{bound}, divisible by {self.period}"
        residues = ", ".join(map(str, self.residues))
        return f"{bound}, {name} mod {self.period} in {{{residues}}}"


Windows = dict[str, tuple]  # an op's path -> its Window per spatial dim (ops without windows: absent)


def windows(model: Model, nodes: list[Node] | None = None) -> Windows:
    """Every shaped op's windows, asked of its kind once for all the analyses (`nodes`: the model's, walked)."""
    found = {}
    for op in walk(model.body) if nodes is None else nodes:
        if isinstance(op, Op) and op.in_shape is not None and op.out_shape is not None:
            window = registry.layer_kind(op.kind).window
            if window is not None:
                found[op.path] = window(op)
    return found


def valid_sizes(model: Model, known: Windows | None = None) -> tuple[Sizes, ...]:
    """For each spatial dim of the input, the sizes the model accepts."""
    known = windows(model) if known is None else known
    rank = len(model.input_shape) - 1
    names = SPATIAL_NAMES[rank]
    found: list[Sizes] = []
    for dim in range(rank):
        twin = next((d for d in range(dim) if _alike(model, known, d, dim)), None)  # square kernels: H as W
        if twin is not None:
            found.append(found[twin]._replace(dim=names[dim]))
        else:
            found.append(_dim_sizes(model, known, dim, names[dim]))
    return tuple(found)


def _alike(model: Model, known: Windows, a: int, b: int) -> bool:
    """Whether dims a and b see the same input size and the same windows everywhere."""
    if model.input_shape[a + 1] != model.input_shape[b + 1]:
        return False
    return all(len(w) > max(a, b) and w[a] == w[b] for w in known.values())


def _dim_sizes(model: Model, known: Windows, dim: int, name: str) -> Sizes:
    trial = _Trial(model, known, dim)
    declared = min(model.input_shape[dim + 1], MAX_TRIAL)
    period = min(_period(known, dim), MAX_TRIAL)
    smallest = next((n for n in range(1, declared + 1) if trial(n)), None)
    if smallest is None:
        return Sizes(name, None)
    far = declared + period  # past the sizes that share the spec's flattened features, if any
    tail = [n for n in range(far, far + period) if trial(n)]
    if not tail:  # nothing larger passes: a bounded set, as after a flatten
        return _bounded(name, [n for n in range(smallest, far) if trial(n)])
    residues = {n % period for n in tail}
    if len(residues) == period:
        return Sizes(name, smallest)
    period, residues = _shortest_period(period, residues)
    return Sizes(name, smallest, period, residues)


def _shortest_period(period: int, residues: set[int]) -> tuple[int, tuple[int, ...]]:
    """The smallest divisor of `period` the pattern repeats within, and its residues there: sizes
    n % 4096 in {0, 29, 30, 31, 32, 61, ...} are n % 32 in {0, 29, 30, 31}."""
    for divisor in (d for d in range(1, period) if period % d == 0):
        reduced = {r % divisor for r in residues}
        if len(reduced) * (period // divisor) == len(residues):  # each residue mod divisor recurs every time
            return divisor, tuple(sorted(reduced))
    return period, tuple(sorted(residues))


def _bounded(name: str, passing: list[int]) -> Sizes:
    smallest, largest = passing[0], passing[-1]
    if passing == list(range(smallest, largest + 1)):
        return Sizes(name, smallest, largest=largest)
    gaps = math.gcd(*(n - smallest for n in passing[1:]))
    return Sizes(name, smallest, gaps, (smallest % gaps,), largest)


def _period(known: Windows, dim: int) -> int:
    """The product of every stride and rescaling along `dim`: the sizes' pattern repeats within it."""
    period = 1
    for found in known.values():
        if dim < len(found):
            window = found[dim]
            period *= max(window.stride, 1)
            if window.scale is not None:
                period *= max(round(window.scale), round(1 / window.scale), 1)
            period = min(period, MAX_TRIAL)  # all a caller uses: a product of a million strides is not made
    return period


class _Trial:
    """Does the model accept size n along one dim? A walk over the layers that change sizes."""

    def __init__(self, model: Model, known: Windows, dim: int):
        self.dim, self.known = dim, known
        self.flow = Dataflow(model.body)
        sequences = self.flow.sequences.values()
        self.like_of = {  # a resize's path -> the path of the tensor whose size it takes
            f"{path}.{name}" if path else name: like
            for path, sequence in self.flow.sequences.items()
            for name, like in sequence.likes.items()
        }
        self.recorded = {  # the outputs a `from:` reads or a resize takes its size from, by path
            path for sequence in sequences for paths in sequence.sources.values() for path in paths
        } | set(self.like_of.values())
        # blocks holding a recorded layer: answering them from memory would skip recording it
        self.holding = {path.rsplit(".", i)[0] for path in self.recorded for i in range(1, path.count(".") + 1)}
        self.seen: dict[str, tuple] = {}  # those outputs, in the current trial
        self.run: Callable = self._compile(model.body)

    def __call__(self, n: int) -> bool:
        try:
            return self.run((n, False)) is not None
        except _Refused:
            return False

    # Each compiled node maps its input size to its output size, or raises _Refused. A size is
    # paired with whether the features after a flatten differ from the spec's: (size, changed).

    def _compile(self, node: Node) -> Callable:
        if isinstance(node, Op):
            step = self._op(node)
        elif node.flow == "residual":
            step = self._residual(node)
        elif node.flow == "dense":
            step = self._dense(node)
        else:
            step = self._sequence(node)
        if isinstance(node, Block) and step is not _same and node.path not in self.holding:
            step = _remembered(step)
        if node.path not in self.recorded:
            return step
        path, seen = node.path, self.seen

        def recording(state):
            seen[path] = out = step(state)
            return out

        return recording

    def _op(self, op: Op) -> Callable:
        if op.in_shape is None or op.out_shape is None:
            return _same
        if op.path in self.like_of:  # its size is another tensor's, whatever its input's
            like, seen, dim = self.like_of[op.path], self.seen, self.dim
            if len(op.in_shape) <= dim + 1:
                return _same
            return lambda state: (seen[like][0], state[1])
        if len(op.in_shape) <= self.dim + 1:  # a flat input: the size lives on as `changed`
            return self._fixed_params(op) if op.params else _same
        found = self.known.get(op.path, ())
        window = found[self.dim] if self.dim < len(found) else None
        if window is None:
            return self._fixed_params(op) if op.params and self._size_sets_params(op) else _same
        declared = op.in_shape[self.dim + 1]
        if window.whole and window.size is None:  # a flatten: the features now depend on the size

            def flatten(state):
                return (1, state[1] or state[0] != declared)

            return flatten
        sliding = window.size is None and window.scale is None and not window.transposed
        if sliding and window.stride == 1 and window.pad_total == window.extent - 1:
            return _same  # keeps every size (a 3x3 conv with padding 1)

        def sized(state):
            try:
                out = window.out(state[0])
            except OverflowError:  # a scale so large the size is no number: refused, as PyTorch would
                raise _Refused from None
            if out < 1:
                raise _Refused
            return (out, state[1])

        return sized

    def _size_sets_params(self, op: Op) -> bool:
        """Whether `op`'s parameter count changes with the size (a layer norm over H and W; not a batch norm)."""
        shape = list(op.in_shape)
        shape[self.dim + 1] += 1
        try:
            return registry.layer_kind(op.kind).shape(op, tuple(shape))[1] != op.params
        except ShapeError:
            return True

    def _fixed_params(self, op: Op) -> Callable:
        """A layer with parameters on a rank the size reaches: its parameters must keep their shape."""
        kind, declared = registry.layer_kind(op.kind), op.in_shape
        flat = len(declared) <= self.dim + 1

        def fixed(state):
            if flat:
                if state[1]:
                    raise _Refused
                return state
            if state[0] != declared[self.dim + 1]:
                shape = list(declared)
                shape[self.dim + 1] = state[0]
                try:
                    _, params = kind.shape(op, tuple(shape))
                except ShapeError:
                    raise _Refused from None
                if params != op.params:
                    raise _Refused
            return state

        return fixed

    def _sequence(self, block: Block) -> Callable:
        steps = [(child, self._compile(child)) for child in block.children]
        if not any(child.inputs for child in block.children) and input_of(block) not in self.recorded:
            chain = [step for _, step in steps if step is not _same]

            def run_chain(state):
                for step in chain:
                    state = step(state)
                return state

            return run_chain
        return self._graph(block, steps)

    def _graph(self, block: Block, steps) -> Callable:
        """A sequence with `from:`: the outputs later layers read are recorded by path as they pass."""
        sources, seen = self.flow.of(block).sources, self.seen
        entry = input_of(block)

        def run_graph(state):
            seen[entry] = state  # for `from: input`
            for child, step in steps:
                if child.inputs:
                    state = self._merge(child, [seen[path] for path in sources[child.name]])
                state = step(state)
            return state

        return run_graph

    def _merge(self, child: Node, states: list) -> tuple:
        if len(states) == 1:
            return states[0]
        sizes = {state[0] for state in states}
        changed = any(state[1] for state in states)
        if len(sizes) == 1:
            return (sizes.pop(), changed)
        if registry.merge(child.merge).broadcasts and len(sizes - {1}) == 1:
            return (max(sizes), changed)
        raise _Refused

    def _residual(self, block: Block) -> Callable:
        body = self._sequence(block)
        shortcut = self._compile(block.shortcut) if block.shortcut is not None else _same

        def residual(state):
            out, short = body(state), shortcut(state)
            if out[0] != short[0]:
                raise _Refused
            return out

        return residual

    def _dense(self, block: Block) -> Callable:
        steps = [self._compile(child) for child in block.children]

        def dense(state):
            for step in steps:
                if step(state)[0] != state[0]:
                    raise _Refused
            return state

        return dense


def _remembered(step: Callable) -> Callable:
    """`step` with its answers kept: after a few strides, many input sizes reach a block at the same
    size, and a block's answer depends on nothing else (blocks holding a layer that a `from:` reads
    are not remembered: they must record its output in each trial)."""
    answers: dict = {}

    def remembered(state):
        if state not in answers:
            try:
                answers[state] = step(state)
            except _Refused:
                answers[state] = None
        if answers[state] is None:
            raise _Refused
        return answers[state]

    return remembered


class _Refused(Exception):
    pass


def _same(state):
    return state
