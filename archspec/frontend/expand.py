"""Stage 1b: expand a loaded spec into plain tagged data, before validation.

This is where reuse happens, on plain data:
- `extends:` merges a base spec (chains allowed, cycles reported),
- `vars:` (plus overrides) are evaluated by a tiny safe evaluator, never Python's eval,
- `repeat:` copies a layer, with `first:` overrides and the repeat index `i`,
- user-defined `blocks:` are expanded at their use,
- `override:` patches named parts of the layer tree.

Every produced node remembers where it came from (file, YAML path, and the chain of block uses
that led to it), so every later error still points at the right line of the right file.
"""

from __future__ import annotations

import ast
import itertools
import keyword
import math
import operator
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from .. import registry
from ..core.errors import (
    BAD_ARGUMENT,
    BAD_BLOCK,
    BAD_EXPRESSION,
    BAD_EXTENDS,
    BAD_OVERRIDE,
    BAD_VALUE,
    BAD_VAR,
    BLOCK_RECURSION,
    LAYER_FORM,
    LIMIT,
    UNKNOWN_FIELD,
    Code,
    Diagnostic,
    Location,
    SpecError,
    UsageError,
    did_you_mean,
    shorten,
    show_names,
    show_number,
    show_value,
)
from ..core.limits import current as current_limits
from ..core.limits import ensure_stack, how_to_raise, magnitude_bounds, too_big
from ..kinds.structures import CONTAINER_FIELDS
from .load import Document, UnreadableFile, load_file

Note = tuple[Location, str]
PARAM_TYPES = {"int": int, "float": float, "bool": bool}


class Origin(NamedTuple):
    doc: Document
    ypath: tuple
    trace: tuple[Note, ...] = ()  # the block uses this node was expanded through, innermost last


@dataclass
class Expanded:
    """The expanded spec data, and a way back from any path in it to the source it came from."""

    path: str
    data: Any
    origins: dict[tuple, Origin] = field(default_factory=dict)
    errors: list[Diagnostic] = field(default_factory=list)
    block_uses: dict[tuple, str] = field(default_factory=dict)  # path of a group -> the user block it expands
    block_args: dict[tuple, tuple] = field(default_factory=dict)  # ... and the block's (parameter, value)s
    standins: set[tuple] = field(default_factory=set)  # paths of layers put in place of a wrong one
    vars: dict[str, Any] = field(default_factory=dict)  # the vars' values, overrides applied

    def _origin(self, path: tuple) -> tuple[Origin, tuple]:
        path = tuple(path)
        for cut in range(len(path), -1, -1):
            found = self.origins.get(path[:cut])
            if found is not None:
                return found, path[cut:]
        raise KeyError(path)  # the root is always recorded

    def locate(self, path: tuple, *, key: bool = False) -> Location:
        origin, rest = self._origin(path)
        return origin.doc.locate(origin.ypath + rest, key=key)

    def notes(self, path: tuple) -> tuple[Note, ...]:
        return tuple(reversed(self._origin(path)[0].trace))

    def place(self, path: tuple) -> tuple[Location, tuple[Note, ...]]:
        """locate(path) and notes(path) at once: the IR asks both of every layer (whose origin
        expansion recorded: looked up first)."""
        origin = self.origins.get(path)
        if origin is None:
            origin, rest = self._origin(path)
            return origin.doc.locate(origin.ypath + rest), tuple(reversed(origin.trace))
        return origin.doc.locate(origin.ypath), tuple(reversed(origin.trace)) if origin.trace else ()


def expand(doc: Document, overrides: dict[str, Any] | None = None) -> Expanded:
    """The expanded data; its `errors` are reported together with validation's."""
    if not doc.values:  # data given as such (a dict to analyze()), not read from YAML: check its shape first
        check_plain_data(doc)
    errors: list[Diagnostic] = []
    ensure_stack()
    try:
        result = _Expander(doc, errors).run(overrides or {})
    except RecursionError:  # only with limit depth raised past what Python's stack takes
        where = doc.locate(())
        message = f"the spec nests too deeply for Python's stack; lower the nesting or {how_to_raise('depth')}"
        raise SpecError([*errors, Diagnostic(message, LIMIT, where)]) from None
    result.errors = errors
    return result


def _entry(item: Any) -> tuple[str, Any] | None:
    """(kind, value) of a list entry written `kind`, `kind: value` or `kind: {fields}`; None for any other form."""
    if isinstance(item, str):
        return item, None
    if isinstance(item, dict) and len(item) == 1 and isinstance(next(iter(item)), str):
        return next(iter(item.items()))
    return None


def _surely_one(entry: tuple[str, Any] | None, blocks) -> bool:
    """Whether the list entry read as `entry` (_entry's) surely makes one layer, read off its form
    alone: a built-in kind without copies or layers inside (most entries), so there is nothing to measure."""
    if entry is None:
        return False
    kind, value = entry
    if kind in blocks or kind in _MANY or kind not in registry.KINDS:
        return False
    if isinstance(value, dict):
        return _NESTING.isdisjoint(value)
    return not isinstance(value, list)  # `group: [...]`: a primary field holding layers


_UNREAD = object()  # an entry not yet read by _entry
_MANY = ("repeat", "dense_block")  # kinds whose count the entry's fields decide
_NESTING = frozenset(("repeat", *CONTAINER_FIELDS))  # fields that make an entry more than one layer


def check_plain_data(doc: Document) -> None:
    """SpecError unless `doc.data` is a tree of plain data within limits: nested at most limit depth
    deep, with at most limit yaml_nodes nodes (shared ones counted each time), and holding no
    container inside itself. YAML's loader checks the same of a file; a dict given to analyze() is
    checked here, before anything walks it."""
    limits = current_limits()
    containers = (dict, list, tuple)
    nodes, on_path = 1, set()
    # Only containers are pushed, each with its (key, parent entry): a path is spelled out only for
    # an error. A pushed id with depth 0 leaves that container.
    stack: list = [(doc.data, 1, None)]
    problem = limit = place = None
    while stack and problem is None:
        entry = stack.pop()
        node, depth, place = entry
        if depth == 0:
            on_path.discard(node)
        elif not isinstance(node, containers):
            pass  # a scalar spec: the stages after this one say what is wrong with it
        elif id(node) in on_path:
            problem = "holds itself (a container inside itself)"
        elif depth > limits.depth:
            problem, limit = f"nests more than {limits.depth:,} deep", "depth"
        else:
            on_path.add(id(node))
            stack.append((id(node), 0, None))
            for key, value in node.items() if isinstance(node, dict) else enumerate(node):
                nodes += 1
                if nodes > limits.yaml_nodes:
                    problem, limit, place = f"has more than {limits.yaml_nodes:,} values", "yaml_nodes", (key, entry)
                    break
                if isinstance(value, containers):
                    stack.append((value, depth + 1, (key, entry)))
    if problem:
        path = _spelled_path(place)
        at = ".".join(_key(part) if isinstance(part, int) else shorten(_key(part), 20) for part in path[:12])
        where = f" at {at}{' ...' if len(path) > 12 else ''}" if path else ""
        message = f"the spec data {problem}{where}" + (f"; {how_to_raise(limit)}" if limit else "")
        raise SpecError([Diagnostic(message, LIMIT if limit else BAD_VALUE, doc.locate(()))])


def _spelled_path(place) -> tuple:
    """The keys from the root down to a node, given its (key, parent entry) link."""
    path = []
    while place is not None:
        key, parent = place
        path.append(key)
        place = parent[2]
    return tuple(reversed(path))


# ---------------------------------------------------------------- the safe evaluator
#
# Bounded whatever the spec: an expression's size (operators and operands) and nesting are checked
# on its parsed tree before it is evaluated (and a text far too long is refused before parsing);
# every number it reads or makes stays below 10**digits (limit digits), checked before a product is
# computed; `/` of integers is exact; a float that is not finite is an error.

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}


def make_divisible(value, divisor, min_value=None):
    """torchvision's `_make_divisible` (MobileNet, EfficientNet, RegNet widths): `value` rounded to
    the nearest multiple of `divisor`, at least `min_value` (default `divisor`), and never more
    than 10% below `value`."""
    if not isinstance(divisor, int) or divisor < 1:
        raise ExpressionError(f"make_divisible's divisor must be a whole number >= 1, got {show_value(divisor)}")
    floor = divisor if min_value is None else min_value
    rounded = max(floor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _whole(function):
    """math.ceil/floor/trunc with a located error instead of OverflowError (inf) or ValueError (nan)."""

    def whole(value):
        if isinstance(value, float) and not math.isfinite(value):
            raise ExpressionError(f"{function.__name__}() of {value}")
        return function(value)

    whole.__name__ = function.__name__
    return whole


def _round(value, digits=None):
    if digits is None:
        return round(value)
    most = current_limits().digits  # round(x, -10**50) would compute 10**(10**50)
    if not -most <= digits <= most:
        raise ExpressionError(f"round()'s digits must be between -{most} and {most}, got {show_value(digits)}")
    return round(value, digits)


# name: (function, fewest arguments, most arguments; None: any number)
_FUNCTIONS = {
    "min": (lambda *a: min(a), 1, None),
    "max": (lambda *a: max(a), 1, None),
    "round": (_round, 1, 2),
    "int": (_whole(math.trunc), 1, 1),
    "ceil": (_whole(math.ceil), 1, 1),
    "floor": (_whole(math.floor), 1, 1),
    "make_divisible": (make_divisible, 2, 3),
    "sum": (sum, 1, 1),  # of a list; evaluated apart (_value)
}
_ALLOWED_NODES = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.Constant,
    ast.Name,
    ast.Load,
    ast.Call,
    ast.Subscript,
    ast.Slice,
    ast.operator,
    ast.unaryop,
)


class ExpressionError(Exception):
    def __init__(self, message: str, code: Code = BAD_EXPRESSION):
        super().__init__(message)
        self.code = code


class _Failed(str):
    """The value of a var whose definition is wrong (reported): a use of it says so."""


class _Index(int):
    """A repeat's copy index as the layer count's scopes hold it: each read is counted, so a repeat
    whose copies never read their index is known to make copies of one size (_Expander.measure)."""

    reads = 0


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shown(text: str) -> str:
    return show_value(text, 80)


@dataclass
class _Parsed:
    body: ast.expr
    names: tuple[str, ...]  # the names it reads, functions aside, in order of first use
    size: int  # operators and operands
    depth: int  # nesting of its tree, a chain of binary operators (1 + 2 + 3 ...) counting as one level
    run: Any = None  # (scope, bound) -> its value: compiled once it is within the limits


_PARSED: dict[str, _Parsed | None] = {}  # text -> its parse (None: not an expression); a spec repeats its texts
_OPERAND = re.compile(r"[A-Za-z0-9_.]+|[-+*/%~<>&|^@]")


def _parse(text: str) -> _Parsed | None:
    """The parsed expression `text`, or None when it is not arithmetic at all (plain text, which
    validation judges). ExpressionError when it is too large to parse or to evaluate."""
    found = _PARSED.get(text)
    if found is not None or text in _PARSED:
        return found
    limit = current_limits().expression_size
    if len(text) > limit:  # refused before parsing: each operand or operator takes at most 2 of these
        tokens = sum(1 for _ in itertools.islice(_OPERAND.finditer(text), 2 * limit + 2))
        if tokens > 2 * limit:
            raise ExpressionError(_too_large(text, f"more than {limit:,} operators and operands"), LIMIT)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (RecursionError, MemoryError):
        raise ExpressionError(_too_large(text, "nested too deeply to parse"), LIMIT) from None
    except (SyntaxError, ValueError) as exc:
        if "integer string conversion" in str(exc):  # a literal of more than 4,300 digits
            raise ExpressionError(
                f"{_shown(text)} holds a number of more than {current_limits().digits} digits; "
                f"{how_to_raise('digits')}",
                LIMIT,
            ) from None
        tree = None
    parsed = None
    if tree is not None and all(isinstance(n, _ALLOWED_NODES) for n in ast.walk(tree)):
        size, depth, names, stack = 0, 0, {}, [(tree.body, 1)]
        while stack:  # not recursive: the tree may be deep
            node, level = stack.pop()
            size += 1
            depth = max(depth, level)
            if isinstance(node, ast.Name) and node.id not in _FUNCTIONS:
                names.setdefault(node.id, None)
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.expr):  # a chain a + b + c ... is evaluated in a loop: no deeper
                    deeper = not (isinstance(node, ast.BinOp) and child is node.left)
                    stack.append((child, level + deeper))
        parsed = _Parsed(tree.body, tuple(names), size, depth)
    if len(text) <= 4096:  # a spec's texts are short; a long one is not kept
        if len(_PARSED) > 8192:
            _PARSED.clear()
        _PARSED[text] = parsed
    return parsed


def _too_large(text: str, what: str) -> str:
    return f"the expression {_shown(text)} is too large: {what}; {how_to_raise('expression_size')}"


def names_in(value) -> list[str]:
    """The names the expressions in `value` (a string, or a list holding them) read."""
    found, stack = [], [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                parsed = _parse(item)
            except ExpressionError:
                parsed = None  # reported when it is evaluated
            if parsed is not None:
                found.extend(parsed.names)
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return found


def evaluate(text: str, scope: dict[str, Any]):
    """The value of `text` (numbers, + - * / // %, parentheses, names, list[index], list[start:stop],
    and the functions min, max, round, int, ceil, floor, make_divisible and sum (of a list)).

    Returns `text` itself when it is not an expression over known names (an option like 'same').
    """
    parsed = _parse(text)
    if parsed is None:
        return text
    body = parsed.body
    if isinstance(body, ast.Name) and body.id not in scope:
        return text
    if not parsed.names and isinstance(body, ast.Constant):
        return text  # a quoted number stays a string: the user asked for one
    limits = current_limits()
    if parsed.size > limits.expression_size:
        raise ExpressionError(
            _too_large(text, f"{parsed.size:,} operators and operands, more than {limits.expression_size:,}"), LIMIT
        )
    if parsed.depth > limits.depth:
        raise ExpressionError(
            f"the expression {_shown(text)} nests {parsed.depth:,} deep, more than {limits.depth:,}; "
            f"{how_to_raise('depth')}",
            LIMIT,
        )
    unknown = [name for name in parsed.names if name not in scope]
    if unknown:
        known = show_names(sorted(scope)) or "none"
        raise ExpressionError(f'no var named "{unknown[0]}" in {_shown(text)} (known: {known})')
    if parsed.run is None:
        parsed.run = _compile(body, text)
    try:
        result = parsed.run(scope, magnitude_bounds()[0])
    except RecursionError:  # only with limit depth raised past what Python's stack takes
        raise ExpressionError(f"the expression {_shown(text)} nests too deeply to evaluate", LIMIT) from None
    if type(result) is float and not math.isfinite(result):
        raise ExpressionError(f"{_shown(text)} is {result}, not a finite number")
    return result


def _too_many_digits(text, value) -> ExpressionError:
    return ExpressionError(
        f"{_shown(text)} is {show_number(value)}, a number of more than {current_limits().digits} digits; "
        f"{how_to_raise('digits')}",
        LIMIT,
    )


def _compile(node, text):
    """`node` as a function of (scope, bound): its value, every integer it makes below `bound`
    (10**digits). Made once per text: a spec evaluates the same texts many times over."""
    if isinstance(node, ast.Constant) and _is_number(node.value):
        value = node.value

        def constant(scope, bound):
            if type(value) is int and not -bound < value < bound:
                raise _too_many_digits(text, value)
            return value

        return constant
    if isinstance(node, ast.Name):
        name = node.id

        def read(scope, bound):
            value = scope[name]
            if type(value) is _Index:  # the layer count asks whether a repeat's copies read their index
                value.reads += 1
                return int(value)
            if type(value) is _Failed:
                raise ExpressionError(f"var {name} has no value: its definition is wrong (reported there)")
            return value

        return read
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand, negative = _compile(node.operand, text), isinstance(node.op, ast.USub)

        def unary(scope, bound):
            value = _number(operand(scope, bound), text)
            return -value if negative else value

        return unary
    if isinstance(node, ast.BinOp) and _arithmetic(node.op):
        steps = []  # a + b - c ...: the left operand of each is the one before, compiled into a loop
        while isinstance(node, ast.BinOp) and _arithmetic(node.op):
            steps.append((type(node.op), node.right))
            node = node.left
        return _chain(_compile(node, text), [(op, _compile(right, text)) for op, right in reversed(steps)], text)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        return _call(node.func.id, [_compile(a, text) for a in node.args], text)
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice):  # depths[:s], depths[1:3]
        items, step = _compile(node.value, text), node.slice.step
        lower, upper = (None if b is None else _compile(b, text) for b in (node.slice.lower, node.slice.upper))

        def sliced(scope, bound):
            found = items(scope, bound)
            if not isinstance(found, list) or step is not None:
                raise ExpressionError(f"only a list var can be sliced, as list[start:stop], in {_shown(text)}")
            bounds = [None if b is None else b(scope, bound) for b in (lower, upper)]
            if not all(b is None or (isinstance(b, int) and not isinstance(b, bool)) for b in bounds):
                raise ExpressionError(f"a slice's bounds are integers, in {_shown(text)}")
            return found[bounds[0] : bounds[1]]

        return sliced
    if isinstance(node, ast.Subscript):
        items, at = _compile(node.value, text), _compile(node.slice, text)

        def indexed(scope, bound):
            found, index = items(scope, bound), at(scope, bound)
            if not isinstance(found, list) or not isinstance(index, int) or isinstance(index, bool):
                raise ExpressionError(f"only a list var can be indexed, by an integer, in {_shown(text)}")
            if not -len(found) <= index < len(found):
                raise ExpressionError(
                    f"index {show_number(index)} is out of range for a list of {len(found)} in {_shown(text)}"
                )
            return found[index]

        return indexed

    def unsupported(scope, bound):
        raise ExpressionError(
            f"{_shown(text)} is not a simple arithmetic expression (numbers, + - * / // %, vars, list[index] and "
            f"the functions {', '.join(_FUNCTIONS)})"
        )

    return unsupported


def _arithmetic(op) -> bool:
    return type(op) in _BINARY or isinstance(op, ast.Div)


def _chain(first, steps: list, text):
    def chain(scope, bound):
        value = first(scope, bound)
        for op, right in steps:
            value = _apply(op, value, right(scope, bound), text, bound)
        return value

    return chain


def _apply(op: type, a, b, text, bound: int):
    a, b = _number(a, text), _number(b, text)
    if b == 0 and op in (ast.Div, ast.FloorDiv, ast.Mod):
        raise ExpressionError(f"division by zero in {_shown(text)}")
    if op is ast.Mult and type(a) is int and type(b) is int:  # refused before the product is made
        if a.bit_length() + b.bit_length() - 1 > bound.bit_length():
            raise ExpressionError(
                f"{_shown(text)} multiplies {show_number(a)} by {show_number(b)}, a number of more "
                f"than {current_limits().digits} digits; {how_to_raise('digits')}",
                LIMIT,
            )
    try:
        if op is not ast.Div:
            result = _BINARY[op](a, b)
        elif type(a) is int and type(b) is int:  # `/` is exact: 64 / 2 is the size 32, 65 / 2 is 32.5
            quotient, remainder = divmod(a, b)
            result = quotient if remainder == 0 else a / b  # int / int is correctly rounded
        else:
            result = a / b
    except (OverflowError, ValueError, ZeroDivisionError):
        raise ExpressionError(f"{_shown(text)} goes out of the range of numbers") from None
    if type(result) is int and not -bound < result < bound:
        raise _too_many_digits(text, result)
    return result


def _call(name: str, args: list, text):
    if name == "sum":  # of a list: the one function whose argument is not a number

        def total(scope, bound):
            items = args[0](scope, bound) if len(args) == 1 else None
            if not isinstance(items, list):
                raise ExpressionError(f"sum() takes one list, e.g. sum(depths) or sum(depths[:i]), in {_shown(text)}")
            result = sum(_number(item, text) for item in items)
            if type(result) is int and not -bound < result < bound:
                raise _too_many_digits(text, result)
            return result

        return total
    function, fewest, most = _FUNCTIONS[name]

    def called(scope, bound):
        values = [_number(a(scope, bound), text) for a in args]
        if not fewest <= len(values) <= (most or len(values)):
            plural = "s" if fewest > 1 else ""
            wanted = (
                f"at least {fewest} argument{plural}"
                if most is None
                else f"{fewest} argument{plural}"
                if most == fewest
                else f"{fewest} to {most} arguments"
            )
            raise ExpressionError(f"{name}() takes {wanted}, got {len(values)}, in {_shown(text)}")
        if name == "round" and len(values) == 2 and not isinstance(values[1], int):
            raise ExpressionError(f"round()'s digits must be a whole number in {_shown(text)}")
        try:
            result = function(*values)
        except (OverflowError, ValueError):  # int(inf), int(nan): a spec's arithmetic went out of range
            raise ExpressionError(f"{name}() of a value out of range in {_shown(text)}") from None
        if type(result) is int and not -bound < result < bound:
            raise _too_many_digits(text, result)
        return result

    return called


def _number(value, text):
    if not _is_number(value):
        raise ExpressionError(f"arithmetic on a non-number in {_shown(text)}")
    return value


# ---------------------------------------------------------------- expansion


@dataclass
class _Part:
    """A top-level value of the spec and where it was written."""

    value: Any
    origin: Origin


class _Expander:
    def __init__(self, doc: Document, errors: list[Diagnostic]):
        self.root = doc
        self.errors = errors
        self.origins: dict[tuple, Origin] = {(): Origin(doc, ())}
        self.blocks: dict[str, _Part] = {}
        self.block_uses: dict[tuple, str] = {}
        self.block_args: dict[tuple, tuple] = {}
        self.using: list[str] = []  # block uses being expanded, to catch recursion
        self.standin_ids: set[int] = set()
        self.standins: set[tuple] = set()
        # The layer count (limit layers): every entry of a list that nothing has counted yet is
        # measured before it is made (measure: counts, no layers), so a spec that would make too
        # many is refused at the entry that crosses the limit, having made none of them.
        limits = current_limits()
        self.max_layers, self.max_depth = limits.layers, limits.depth
        self.bound = magnitude_bounds()[0]  # 10**digits: every number is below it in magnitude
        self.count = 0  # layers made so far (an empty copy of a repeat counts as one)
        self.counted = 0  # > 0 while making an entry already measured
        self.overflowed = False
        self.measuring: list[str] = []  # block uses being measured, to catch recursion there too
        self.memo: dict[tuple, tuple] = {}  # (list or block use, scope) -> (layers, what keeps the key alive)

    def standin(self, own: dict) -> dict:
        """An identity in place of a layer already reported wrong, so the other layers are still checked;
        the shape stage treats its output as unknown."""
        layer = {"kind": "identity", **own}
        self.standin_ids.add(id(layer))
        return layer

    def error(self, message: str, code: str, origin: Origin, rest: tuple = (), key: bool = False) -> None:
        where = origin.doc.locate(origin.ypath + rest, key=key)
        self.errors.append(Diagnostic(message, code, where, tuple(reversed(origin.trace))))

    # ---- extends

    def run(self, overrides: dict[str, Any]) -> Expanded:
        parts, var_parts, patches = self.merged(self.root, [])
        if parts is None:
            return Expanded(self.root.path, None, self.origins)
        scope = _Scope(self.variables(var_parts, overrides), {})
        data: dict[str, Any] = {}
        for key, part in parts.items():
            self.origins[(key,)] = part.origin
            if key == "layers" and isinstance(part.value, list):
                data[key] = self.layer_list(part.value, ("layers",), part.origin, scope)
            elif key == "input":
                data[key] = self.values(part.value, part.origin, (), scope)
            else:
                data[key] = part.value
        for patch in patches:
            self.apply_patch(data, patch, scope)
        return Expanded(
            self.root.path,
            data,
            self.origins,
            block_uses=self.block_uses,
            block_args=self.block_args,
            standins=self.standins,
            vars=dict(scope),
        )

    def merged(self, doc: Document, chain: list[str], trace: tuple[Note, ...] = ()):
        """The top-level parts, vars and part overrides of `doc`, its bases merged in (base first).

        `trace` notes, for anything from a base file, the `extends:` that brought it in.
        """
        data = doc.data
        if not isinstance(data, dict):
            message = "a spec is a mapping with archspec, name, input and layers"
            self.errors.append(Diagnostic(message, BAD_VALUE, doc.locate(()), trace))  # trace: who extended it
            return None, None, None
        parts, var_parts, patches = {}, {}, []
        if "extends" in data:
            base = self.load_base(doc, data["extends"], chain, trace)
            if base is None:
                return None, None, None  # without its base the spec is incomplete: report only that
            extended = ((doc.locate(("extends",)), f"in {base.path}, extended here"), *trace)
            parts, var_parts, patches = self.merged(base, chain + [_real_path(doc.path)], extended)
            if parts is None:
                return None, None, None
        for key, value in data.items():
            origin = Origin(doc, (key,), tuple(reversed(trace)))
            if key == "vars":
                var_parts.update(self.var_definitions(value, origin))
            elif key == "blocks":
                self.block_definitions(value, origin)
            elif key == "override":
                patches.append(_Part(value, origin))
            elif key != "extends":
                parts[key] = _Part(value, origin)
        return parts, var_parts, patches

    def load_base(self, doc: Document, target: Any, chain: list[str], trace: tuple[Note, ...] = ()) -> Document | None:
        """The base spec `extends:` names; None, with the problem reported at that line (and, for
        a problem inside the base, noted there: "extended here"), when there is none to merge."""
        from ..core.limits import current, how_to_raise
        from .load import shown as printable

        origin = Origin(doc, ("extends",))
        if not isinstance(target, str) or not target:
            self.error("extends takes the path of a base spec, relative to this file", BAD_EXTENDS, origin)
            return None
        shown = os.path.normpath(Path(doc.path).parent / target)  # as a person would write it
        path, here = _real_path(shown), _real_path(doc.path)
        if path in chain + [here]:
            cycle = " -> ".join(Path(p).name for p in chain + [here, path])
            self.error(f"extends makes a cycle: {cycle}", BAD_EXTENDS, origin)
            return None
        traced = Origin(doc, ("extends",), tuple(reversed(trace)))  # a base's extends: name who extended it
        if len(chain) + 2 > current().depth:  # the specs above this one, this one and its base
            longer = f"more than {current().depth:,} specs long ({how_to_raise('depth')})"
            self.error(f"extends: the chain of bases is {longer}", BAD_EXTENDS, traced)
            return None
        try:
            return load_file(shown)
        except UnreadableFile as exc:  # missing, a directory, a FIFO, a name the system refuses...
            message = f"extends: no such file {printable(shown)}" if exc.missing else f"extends: {exc}"
            self.error(message, BAD_EXTENDS, traced)
        except SpecError as exc:  # a file, but no spec: too large, not UTF-8 text, not YAML
            note = (doc.locate(("extends",)), f"in {printable(shown)}, extended here")
            self.errors.extend(Diagnostic(d.message, d.code, d.loc, (*d.notes, note, *trace)) for d in exc.diagnostics)
        return None

    # ---- vars

    def var_definitions(self, value: Any, origin: Origin) -> dict[str, _Part]:
        if not isinstance(value, dict):
            self.error("vars is a mapping of names to numbers or expressions", BAD_VAR, origin)
            return {}
        result = {}
        for name, definition in value.items():
            if not _is_identifier(name):
                self.error(
                    f"a var name must be an ASCII identifier and not a Python keyword, not {show_value(name)}",
                    BAD_VAR,
                    origin,
                    (name,),
                    key=True,
                )
                continue
            result[name] = _Part(definition, Origin(origin.doc, origin.ypath + (name,), origin.trace))
        return result

    def variables(self, var_parts: dict[str, _Part], overrides: dict[str, Any]) -> dict[str, Any]:
        unknown = [name for name in overrides if name not in var_parts]
        if unknown:
            known = show_names(sorted(var_parts)) or "none"
            raise UsageError(
                f'no var named "{shorten(unknown[0])}" to override{did_you_mean(unknown[0], var_parts)} '
                f"(known vars: {known})"
            )
        for name, value in overrides.items():
            declared = var_parts[name].value
            if isinstance(declared, list) != isinstance(value, list):
                raise UsageError(_override_mismatch(name, declared, value))
        raw = {name: overrides.get(name, part.value) for name, part in var_parts.items()}
        values: dict[str, Any] = {}
        scope = _LazyScope(var_parts, values.__getitem__)  # knows every var; holds those evaluated

        def uses(name: str):
            return iter(dict.fromkeys(used for used in names_in(raw[name]) if used in var_parts))

        # Each var after the vars it uses, in any order written: a depth-first walk with a stack of
        # its own, so a chain of thousands of vars takes no Python recursion.
        done: set[str] = set()
        failed: set[str] = set()  # vars whose definition is wrong
        for root in var_parts:
            if root in done:
                continue
            path, stack = [root], [uses(root)]
            while stack:
                for used in stack[-1]:
                    if used in done:
                        continue
                    if used in path:
                        cycle = path[path.index(used) :] + [used]
                        chain = " -> ".join(cycle) if len(cycle) <= MAX_CYCLE else _long_chain(cycle)
                        self.error(
                            f"var {used} is defined in terms of itself ({chain})", BAD_VAR, var_parts[used].origin
                        )
                        values.setdefault(used, 0)
                        continue
                    path.append(used)
                    stack.append(uses(used))
                    break
                else:
                    stack.pop()
                    name = path.pop()
                    errors = len(self.errors)
                    if any(used in failed for used in uses(name)):  # reported there: not again at each var using it
                        self.errors, kept = [], self.errors
                        self.values(raw[name], var_parts[name].origin, (), scope)
                        self.errors = kept
                        failed.add(name)
                    else:
                        values[name] = self.values(raw[name], var_parts[name].origin, (), scope)
                        if len(self.errors) > errors:
                            failed.add(name)
                    if name in failed:  # its uses say so, rather than show its text as the value
                        values[name] = _Failed(name)
                    done.add(name)
        return {name: values[name] for name in var_parts}

    def values(self, value: Any, origin: Origin, rest: tuple, scope) -> Any:
        """`value` with every expression string in it evaluated; every number in it bounded."""
        if isinstance(value, str):
            try:
                return evaluate(value, scope)
            except ExpressionError as exc:
                self.error(str(exc), exc.code, origin, rest)
                return value
        if isinstance(value, list):
            return [self.values(v, origin, rest + (i,), scope) for i, v in enumerate(value)]
        if type(value) is int and -self.bound < value < self.bound:
            return value
        if _is_number(value) and too_big(value) and (type(value) is int or math.isfinite(value)):
            digits = current_limits().digits
            what = (
                f"{show_number(value)} is a number of more than {digits} digits"
                if type(value) is int
                else f"{value:.3g} is beyond 10**{digits}"
            )
            self.error(f"{what}; {how_to_raise('digits')}", LIMIT, origin, rest)
        return value

    # ---- blocks

    def block_definitions(self, value: Any, origin: Origin) -> None:
        if not isinstance(value, dict):
            self.error("blocks is a mapping of block names to {params, layers}", BAD_BLOCK, origin)
            return
        for name, definition in value.items():
            where = Origin(origin.doc, origin.ypath + (name,), origin.trace)
            if not _is_identifier(name):
                self.error(
                    f"a block name must be an ASCII identifier and not a Python keyword, not {show_value(name)}",
                    BAD_BLOCK,
                    where,
                    key=True,
                )
            elif name in registry.KINDS:
                self.error(
                    f'"{name}" is a built-in layer kind; give the block another name', BAD_BLOCK, where, key=True
                )
            elif not (
                isinstance(definition, dict) and isinstance(definition.get("layers"), list) and definition["layers"]
            ):
                self.error(f"block {name} needs a non-empty list of layers", BAD_BLOCK, where)
            elif set(definition) - {"params", "layers", "description"}:
                extra = _key(sorted(set(definition) - {"params", "layers", "description"}, key=_key)[0])
                self.error(
                    f'unknown field "{extra}" in block {name}; a block has params and layers',
                    BAD_BLOCK,
                    where,
                    (extra,),
                    key=True,
                )
            else:
                self.blocks[name] = _Part(definition, where)

    def params(self, block: str, definition: _Part) -> dict[str, tuple[type | None, Any, Origin]]:
        """name -> (type, default or _REQUIRED, where it is declared)."""
        declared = definition.value.get("params") or {}
        result = {}
        if not isinstance(declared, dict):
            self.error(
                f"params of block {block} is a mapping of names to a type or a default",
                BAD_BLOCK,
                definition.origin,
                ("params",),
            )
            return result
        for name, spec in declared.items():
            where = Origin(definition.origin.doc, definition.origin.ypath + ("params", name), definition.origin.trace)
            if not _is_identifier(name):
                self.error(
                    f"a parameter name must be an ASCII identifier and not a Python keyword, not {show_value(name)}",
                    BAD_BLOCK,
                    where,
                    key=True,
                )
            elif spec is None:  # `params: {out}`: YAML reads a bare key as null
                self.error(
                    f'parameter "{name}" of block {block} needs a type ({", ".join(PARAM_TYPES)}) or a default value',
                    BAD_BLOCK,
                    where,
                    key=True,
                )
                result[name] = (None, _REQUIRED, where)  # so its uses are not blamed as well
            elif isinstance(spec, str) and spec in PARAM_TYPES:
                result[name] = (PARAM_TYPES[spec], _REQUIRED, where)
            elif isinstance(spec, dict) and spec.get("type") in PARAM_TYPES and set(spec) <= {"type", "default"}:
                result[name] = (PARAM_TYPES[spec["type"]], spec.get("default", _REQUIRED), where)
            else:
                result[name] = (None, spec, where)  # a default; its type is the default's
        return result

    def block_scope(self, kind: str, fields: dict, origin: Origin, scope):
        """(parameters, own fields, the scope of the body) of a use of block `kind`: the spec's vars,
        then the block's parameters. The scope is None when the use is wrong (reported: the body
        would only repeat the argument errors)."""
        params = self.params(kind, self.blocks[kind])
        arg_origin = Origin(origin.doc, origin.ypath + (kind,), origin.trace)
        own = {k: fields.pop(k) for k in ("name", "from", "merge") if k in fields}
        if "name" in own:
            own["name"] = self.name_of(own["name"], arg_origin, scope)
        errors_before = len(self.errors)
        for unknown in [k for k in fields if k not in params]:
            self.error(
                f'block {kind} has no parameter "{_key(unknown)}"{did_you_mean(unknown, params)}'
                f" (parameters: {show_names(params) or 'none'})",
                BAD_ARGUMENT,
                arg_origin,
                (unknown,),
                key=True,
            )
        body_scope = _Scope(scope, {})
        for name, (kind_type, default, where) in params.items():
            if name in fields:
                value = self.values(fields[name], arg_origin, (name,), scope)
                value_origin, rest = arg_origin, (name,)
            elif default is _REQUIRED:
                self.error(f'block {kind} needs the argument "{name}"', BAD_ARGUMENT, arg_origin)
                value = 1
                value_origin, rest = arg_origin, ()
            else:
                value = self.values(default, where, (), body_scope)
                value_origin, rest = where, ()
            if kind_type is not None and not _has_type(value, kind_type):
                self.error(
                    f'argument "{name}" of block {kind} must be {kind_type.__name__}, got {show_value(value)}',
                    BAD_ARGUMENT,
                    value_origin,
                    rest,
                )
            body_scope[name] = value
        return params, own, None if len(self.errors) > errors_before else body_scope

    def use_block(self, kind: str, fields: dict, path: tuple, origin: Origin, scope, level: int) -> dict:
        definition = self.blocks[kind]
        if kind in self.using:
            cycle = " -> ".join(self.using[self.using.index(kind) :] + [kind])
            self.error(f"block {kind} uses itself ({cycle})", BLOCK_RECURSION, origin)
            return self.standin({})
        params, own, body_scope = self.block_scope(kind, fields, origin, scope)
        if body_scope is None:
            return self.standin(own)
        one_residual = _one_residual(definition.value["layers"])  # the block is that residual: no group around it
        if not one_residual and level >= self.max_depth:
            self.too_deep(origin)
            return self.standin(own)
        arg_origin = Origin(origin.doc, origin.ypath + (kind,), origin.trace)
        use = (origin.doc.locate(origin.ypath), f"in block {kind}, used here")
        layers_origin = Origin(definition.origin.doc, definition.origin.ypath + ("layers",), origin.trace + (use,))
        self.using.append(kind)
        if one_residual:
            item_origin = Origin(layers_origin.doc, layers_origin.ypath + (0,), layers_origin.trace)
            ((residual, _, _),) = self.layer(
                definition.value["layers"][0], item_origin, path[:-1], path[-1], body_scope, level
            )
            self.using.pop()
            if id(residual) in self.standin_ids:  # refused (too deep): a stand-in, not a use of the block
                return self.standin(own)
            self.origins[path + ("residual",)] = Origin(
                item_origin.doc, item_origin.ypath + ("residual",), item_origin.trace
            )
            self.block_uses[path] = kind
            self.block_args[path] = tuple((name, body_scope[name]) for name in params)
            return {**residual, **own}
        layers = self.layer_list(
            definition.value["layers"], path + ("group", "layers"), layers_origin, body_scope, level + 1
        )
        self.using.pop()
        self.origins[path + ("group",)] = arg_origin
        self.block_uses[path] = kind
        self.block_args[path] = tuple((name, body_scope[name]) for name in params)
        return {"kind": "group", **own, "layers": layers}

    def too_deep(self, origin: Origin) -> None:
        self.error(
            f"layers nest more than {self.max_depth:,} deep here (groups, residual bodies and block uses "
            f"inside one another); {how_to_raise('depth')}",
            LIMIT,
            origin,
        )

    # ---- layers

    def layer_list(self, items: Any, path: tuple, origin: Origin, scope, level: int = 1) -> list:
        """The layers of a list of entries, `level` lists deep (the spec's layers are level 1)."""
        if not isinstance(items, list):
            return items  # validation reports it
        self.origins[path] = origin
        out: list = []
        doc, ypath, trace = origin
        for j, item in enumerate(items):
            item_origin = Origin(doc, ypath + (j,), trace)
            entry = _entry(item)
            refused = self.refused(item, entry, item_origin, scope, level)
            if refused is not None:  # too many layers: one stand-in, and none of them made
                at = path + (len(out),)
                self.origins[at] = item_origin
                self.standins.add(at)
                out.append(refused)
                self.count += 1
                continue
            self.counted += 1
            try:
                made = self.layer(item, item_origin, path, len(out), scope, level, entry)
            finally:
                self.counted -= 1
            for layer, layer_origin, kind_written in made:
                at = path + (len(out),)
                self.origins[at] = layer_origin
                if kind_written is not None and layer.get("kind") != kind_written:  # a block's use, made a group
                    # (where the kind is as written, the layer's origin locates its fields as well)
                    kind_origin = Origin(layer_origin.doc, layer_origin.ypath + (kind_written,), layer_origin.trace)
                    self.origins.setdefault(at + (layer.get("kind"),), kind_origin)
                if id(layer) in self.standin_ids:
                    self.standins.add(at)
                out.append(layer)
            self.count += len(made)
        return out

    def refused(self, item: Any, entry: tuple[str, Any] | None, origin: Origin, scope, level: int) -> dict | None:
        """A stand-in for an entry that would take the spec past limit layers (reported), or None.

        An entry is measured once, where no enclosing entry has been (the spec's own layers, an
        override's): measuring counts what making it would make, with no layers made."""
        if self.overflowed:
            return self.standin({})
        if self.count > self.max_layers:  # only if measuring and making ever disagree
            self.overflowed = True
            self.error(f"the spec makes more than {self.max_layers:,} layers; {how_to_raise('layers')}", LIMIT, origin)
            return self.standin({})
        if self.counted or (self.count < self.max_layers and _surely_one(entry, self.blocks)):
            return None
        need = self.measure(item, origin, scope, level)
        if self.count + need <= self.max_layers:
            return None
        where, what = _site(item, origin, self.blocks)
        if need > self.max_layers:
            message = f"{what} makes more than {self.max_layers:,} layers"
        else:
            message = (
                f"{what} makes {need:,} layer{'s' if need != 1 else ''}, which with the {self.count:,} before it "
                f"are more than {self.max_layers:,}"
            )
        self.error(f"{message}; {how_to_raise('layers')}", LIMIT, where)
        return self.standin({})

    def layer(self, item: Any, origin: Origin, path: tuple, index: int, scope, level: int, entry=_UNREAD):
        """The layers one entry expands to: (tagged data, origin, kind key as written). `entry`: its
        _entry, where the caller has read it."""
        if entry is _UNREAD:
            entry = _entry(item)
        if entry is None:
            message = "a layer is written `kind`, `kind: value` or `kind: {fields}`"
            if isinstance(item, dict) and len(item) > 1:
                keys = show_names(map(_key, item))
                message += f"; this entry has {len(item)} keys ({keys}): indent the fields under the kind"
            self.error(message, LAYER_FORM, origin)
            return [(self.standin({}), origin, None)]
        kind, value = entry
        if kind == "repeat" and kind not in registry.KINDS and kind not in self.blocks:
            return self.flat_repeat(value, origin, path, index, scope, level)
        if not (isinstance(value, dict) and ("repeat" in value or "first" in value)):  # one copy, as written
            return [
                (
                    self.one_layer(kind, self.fields(kind, value, origin), path + (index,), origin, scope, level),
                    origin,
                    kind,
                )
            ]
        fields, repeat, first = self.repeat_of(kind, value, origin, scope)
        repeated = isinstance(value, dict) and "repeat" in value
        results = []
        for copy in range(repeat):
            copy_fields = {**fields, **(first if copy == 0 and first else {})}
            copy_scope = _Scope(scope, {"i": copy}) if repeated else scope
            numbered = repeat > 1 and "name" in fields and not _is_template(fields["name"])  # a template names each
            if numbered and copy_fields.get("name") == fields["name"]:
                copy_fields["name"] = f"{fields['name']}{copy + 1}"
            at = path + (index + copy,)
            results.append((self.one_layer(kind, copy_fields, at, origin, copy_scope, level), origin, kind))
        return results

    def repeat_of(self, kind: str, value: Any, origin: Origin, scope):
        """(fields, copies, fields of the first copy) of a layer entry."""
        fields = self.fields(kind, value, origin)
        fields_origin = Origin(origin.doc, origin.ypath + (kind,), origin.trace)
        repeat = self.values(fields.pop("repeat", 1), fields_origin, ("repeat",), scope)
        first = fields.pop("first", None)
        if not (isinstance(repeat, int) and not isinstance(repeat, bool) and repeat >= 0):
            self.error(
                f"repeat must be an integer >= 0, got {show_value(repeat)}", BAD_VALUE, fields_origin, ("repeat",)
            )
            repeat = 1
        if first is not None and not isinstance(first, dict):
            self.error("first is a mapping of fields for the first copy", BAD_VALUE, fields_origin, ("first",))
            first = None
        return fields, repeat, first

    def flat_repeat(self, value: Any, origin: Origin, path: tuple, index: int, scope, level: int):
        """`- repeat: {times: n, layers: [...]}`: the layers n times over, spliced into the list they
        are in, so they are numbered on with their neighbours (VGG's features.0, features.1, ...).
        The var `index` (default i) is the copy's index; repeats nest, each with its own index."""
        form = self.flat_form(value, origin, scope)
        if form is None:
            return [(self.standin({}), origin, None)]
        times, name, items_origin = form
        results = []
        for copy in range(times):
            copy_scope = _Scope(scope, {name: copy})
            before = len(results)
            for j, item in enumerate(value["layers"]):
                item_origin = Origin(items_origin.doc, items_origin.ypath + (j,), items_origin.trace)
                results += self.layer(item, item_origin, path, index + len(results), copy_scope, level)
            if len(results) == before:  # an empty copy counts as one layer: n of them take time too
                self.count += 1
        return results

    def flat_form(self, value: Any, origin: Origin, scope):
        """(times, index name, where its layers are) of a flat repeat; None if it is malformed (reported)."""
        where = Origin(origin.doc, origin.ypath + ("repeat",), origin.trace)
        form = "repeat takes {times: n, layers: [...]} (and index: a var name for the copy's index, default i)"
        if not isinstance(value, dict) or not isinstance(value.get("layers"), list) or "times" not in value:
            self.error(form, LAYER_FORM, where)
            return None
        for extra in sorted(set(value) - {"times", "layers", "index"}, key=_key):
            self.error(f'unknown field "{_key(extra)}" of repeat; {form}', UNKNOWN_FIELD, where, (extra,), key=True)
        times = self.values(value["times"], where, ("times",), scope)
        if not (isinstance(times, int) and not isinstance(times, bool) and times >= 0):
            self.error(f"repeat's times must be an integer >= 0, got {show_value(times)}", BAD_VALUE, where, ("times",))
            times = 1
        name = value.get("index", "i")
        if not _is_identifier(name):
            self.error(f"repeat's index must be a var name, got {show_value(name)}", BAD_VALUE, where, ("index",))
            name = "i"
        return times, name, Origin(origin.doc, where.ypath + ("layers",), origin.trace)

    def fields(self, kind: str, value: Any, origin: Origin) -> dict:
        if value is None:
            return {}
        if isinstance(value, dict):
            return dict(value)
        known = registry.KINDS.get(kind)
        model = known.fields if known is not None else None
        if model is not None and model.primary is not None:
            return {model.primary: value}
        if kind in self.blocks:
            declared = self.blocks[kind].value.get("params") or {}
            if isinstance(declared, dict) and declared:
                return {next(iter(declared)): value}
        if known is not None or kind in self.blocks:  # an unknown kind is reported once, by validation
            message = f"{kind} takes no single value; give its fields as a mapping"
            self.error(message, LAYER_FORM, Origin(origin.doc, origin.ypath + (kind,), origin.trace))
        return {}

    def one_layer(self, kind: str, fields: dict, path: tuple, origin: Origin, scope, level: int) -> dict:
        if kind in self.blocks and kind not in registry.KINDS:
            return self.use_block(kind, fields, path, origin, scope, level)
        if level >= self.max_depth and any(k in CONTAINER_FIELDS and isinstance(v, list) for k, v in fields.items()):
            self.too_deep(origin)
            return self.standin({k: v for k, v in fields.items() if k == "name"})
        out = {"kind": kind}
        bound, fields_origin = self.bound, None
        for key, value in fields.items():
            if type(value) is int and -bound < value < bound:  # what values() gives it, most fields
                out[key] = value
                continue
            if fields_origin is None:  # made only where a field needs it
                fields_origin = Origin(origin.doc, origin.ypath + (kind,), origin.trace)
            if key in CONTAINER_FIELDS and isinstance(value, list):
                child_origin = Origin(fields_origin.doc, fields_origin.ypath + (key,), fields_origin.trace)
                out[key] = self.layer_list(value, path + (kind, key), child_origin, scope, level + 1)
            elif key == "name":
                out[key] = self.name_of(value, fields_origin, scope)
            elif key in ("from", "merge"):
                out[key] = value
            else:
                out[key] = self.values(value, fields_origin, (key,), scope)
        if kind == "dense_block":  # its layers are made by the shape stage, and count as well
            self.count += _count_of(out.get("num_layers"))
        return out

    def name_of(self, name: Any, origin: Origin, scope) -> Any:
        """A layer name with its `{expression}` parts filled in (`block{s + 1}-{i}` in a repeat gives
        block1-0, block1-1, ...). Each part is evaluated like a field and must give an integer >= 0,
        so a name holds only what validation then checks: letters, digits, _ and -."""
        if not _is_template(name):
            return name

        def filled(part: re.Match) -> str:
            text = part.group(1).strip()
            value = evaluate(text, scope)
            if isinstance(value, str):  # what evaluate hands back as text: a number, or a bare unknown name
                if not (text.isascii() and text.isdecimal()):
                    known = show_names(sorted(scope)) or "none"
                    raise ExpressionError(f'no var named "{shorten(text)}" in the name {_shown(name)} (known: {known})')
                value = int(text)
            if type(value) is not int or value < 0:
                raise ExpressionError(f"a name's {{{text}}} must give an integer >= 0, got {show_value(value)}")
            return str(value)

        try:
            return _NAME_PART.sub(filled, name)
        except ExpressionError as exc:
            self.error(str(exc), exc.code, origin, ("name",))
            return None  # a stand-in with no name: the layer is still checked

    # ---- measuring: the layers an entry would make, without making them

    def measure(self, item: Any, origin: Origin, scope, level: int) -> int:
        """How many layers the list entry `item` makes (at most limit layers + 1): layer()'s rules,
        with no layers made and its errors left for layer() to report. Lists and block uses met
        again in the same scope are measured once, and a repeat whose copies do not read their
        index is measured by one copy, so neither anchors fanning out nor blocks doubling each
        other, nor a repeat of a billion, take more than a few steps."""
        errors, self.errors = self.errors, []
        try:
            return self._measure(item, origin, scope, level)
        except RecursionError:  # only with limit depth raised past what Python's stack takes
            return self.max_layers + 1
        finally:
            self.errors = errors

    def _measure(self, item: Any, origin: Origin, scope, level: int) -> int:
        cap = self.max_layers + 1
        entry = _entry(item)
        if entry is None:
            return 1
        kind, value = entry
        if kind == "repeat" and kind not in registry.KINDS and kind not in self.blocks:
            form = self.flat_form(value, origin, scope)
            if form is None:
                return 1
            times, name, _ = form

            def copy_of(copy: int, copy_scope) -> int:
                return max(1, self.measure_list(value["layers"], origin, copy_scope, level))

            return self.copies(times, scope, name, copy_of)
        fields, repeat, first = self.repeat_of(kind, value, origin, scope)
        if repeat >= cap:  # each copy is at least one layer
            return cap
        if repeat == 1:  # most layers: no copies to weigh (and two Python frames fewer a level deep)
            return self.measure_layer(kind, {**fields, **(first or {})}, origin, scope, level)

        def layer_of(copy: int, copy_scope) -> int:
            copy_fields = {**fields, **(first if copy == 0 and first else {})}
            return self.measure_layer(kind, copy_fields, origin, copy_scope, level)

        return self.copies(repeat, scope, "i" if isinstance(value, dict) and "repeat" in value else None, layer_of)

    def copies(self, times: int, scope, index: str | None, measure_copy) -> int:
        """The layers of `times` copies, the var `index` (if any) holding the copy's number."""
        cap = self.max_layers + 1
        if times >= cap:
            return cap
        counters: list[_Index] = []

        def scope_of(copy: int):
            if index is None:
                return scope
            counters.append(_Index(copy))
            return _Scope(scope, {index: counters[-1]})

        total = made = 0
        for copy in range(times):
            if copy == 2 and (index is None or counters[1].reads == 0):
                # Copies after the first have the same fields, and the second never read its index:
                # every later copy makes as many layers as the second.
                return min(total + (times - 2) * made, cap)
            made = measure_copy(copy, scope_of(copy))
            total += made
            if total >= cap:
                return cap
        return total

    def measure_list(self, items: Any, origin: Origin, scope, level: int) -> int:
        if not isinstance(items, list):
            return 0
        key = ("list", id(items), scope.serial, level)
        found = self.memo.get(key)
        if found is not None:
            return found[0]
        cap, total = self.max_layers + 1, 0
        for item in items:
            total += self._measure(item, origin, scope, level)
            if total >= cap:
                total = cap
                break
        self.remember(key, total, items)
        return total

    def measure_layer(self, kind: str, fields: dict, origin: Origin, scope, level: int) -> int:
        if kind in self.blocks and kind not in registry.KINDS:
            return self.measure_use(kind, fields, origin, scope, level)
        lists = [v for k, v in fields.items() if k in CONTAINER_FIELDS and isinstance(v, list)]
        if lists and level >= self.max_depth:
            return 1  # refused as too deep: a stand-in
        total = 1
        for items in lists:
            total += self.measure_list(items, origin, scope, level + 1)
        if kind == "dense_block":
            total += _count_of(self.values(fields.get("num_layers"), origin, (), scope))
        return min(total, self.max_layers + 1)

    def measure_use(self, kind: str, fields: dict, origin: Origin, scope, level: int) -> int:
        if kind in self.measuring or kind in self.using:
            return 1  # a recursion: a stand-in
        key = ("use", kind, scope.serial, level, _frozen(fields))
        found = self.memo.get(key)
        if found is not None:
            return found[0]
        _, _, body_scope = self.block_scope(kind, dict(fields), origin, scope)
        layers = self.blocks[kind].value["layers"]
        if body_scope is None:
            total = 1
        elif _one_residual(layers):
            self.measuring.append(kind)
            total = self._measure(layers[0], origin, body_scope, level)
            self.measuring.pop()
        elif level >= self.max_depth:
            total = 1
        else:
            self.measuring.append(kind)
            total = min(1 + self.measure_list(layers, origin, body_scope, level + 1), self.max_layers + 1)
            self.measuring.pop()
        self.remember(key, total, None)
        return total

    def remember(self, key: tuple, total: int, keep) -> None:
        if len(self.memo) > 200_000:  # a bound on the memory it takes; measuring stays correct
            self.memo.clear()
        self.memo[key] = (total, keep)

    # ---- override: patches of named parts

    def apply_patch(self, data: dict, patch: _Part, scope) -> None:
        if not isinstance(patch.value, dict):
            self.error("override is a mapping of layer names to the fields to change", BAD_OVERRIDE, patch.origin)
            return
        named = dict(_named_layers(data.get("layers", []), ("layers",), ""))
        for target, changes in patch.value.items():
            where = Origin(patch.origin.doc, patch.origin.ypath + (target,))
            if target not in named:
                message = f'override: no layer named "{_key(target)}"{did_you_mean(target, named)}'
                self.error(message, BAD_OVERRIDE, where, key=True)
                continue
            if not isinstance(changes, dict):
                self.error(f"override of {target} is a mapping of fields to change", BAD_OVERRIDE, where)
                continue
            layer, path = named[target]
            if path in self.block_uses:  # its fields are the block's layers now, not the arguments written
                inner = [name for name in named if name.startswith(f"{target}.")][:3]
                self.error(
                    f"override: {target} is a use of block {self.block_uses[path]}, already made into its layers; "
                    f"override those ({', '.join(inner) or 'none named'}), or give the block's arguments through vars",
                    BAD_OVERRIDE,
                    where,
                    key=True,
                )
                continue
            for key, value in changes.items():
                at = Origin(where.doc, where.ypath + (key,))
                self.origins[path + (layer["kind"], key)] = at
                if key in CONTAINER_FIELDS and isinstance(value, list):  # new layers: expanded like any
                    self.forget(path + (layer["kind"], key))
                    level = sum(isinstance(part, int) for part in path) + 1  # of the lists holding the layer
                    layer[key] = self.layer_list(value, path + (layer["kind"], key), at, scope, level)
                else:
                    layer[key] = self.values(value, where, (key,), scope)

    def forget(self, prefix: tuple) -> None:
        """Drop what was recorded of the layers under `prefix`, which an override replaces."""
        for table in (self.origins, self.block_uses, self.block_args):
            for path in [p for p in table if p[: len(prefix)] == prefix]:
                del table[path]
        self.standins -= {p for p in self.standins if p[: len(prefix)] == prefix}


class _Scope(dict):
    """A scope of names: local values over an enclosing scope. Its serial number tells scopes apart
    for as long as the expansion runs (an id can be reused once a scope is gone)."""

    def __init__(self, outer, local: dict):
        super().__init__({**dict(outer.items()), **local})
        self.serial = next(_SERIALS)


_SERIALS = itertools.count()


class _LazyScope:
    """Vars seen from another var's expression: evaluated on first use, in any order."""

    def __init__(self, parts: dict, value_of):
        self.parts, self.value_of = parts, value_of

    def __contains__(self, name) -> bool:
        return name in self.parts

    def __getitem__(self, name):
        return self.value_of(name)

    def __iter__(self):
        return iter(self.parts)

    def items(self):
        return ((name, self.value_of(name)) for name in self.parts)


_REQUIRED = object()


MAX_CYCLE = 12  # vars shown in a cycle's message


def _long_chain(cycle: list[str]) -> str:
    skipped = len(cycle) - MAX_CYCLE
    return " -> ".join([*cycle[: MAX_CYCLE - 4], f"({skipped:,} more)", *cycle[-4:]])


def _override_mismatch(name: str, declared, value) -> str:
    """Why `--set name=value` does not fit the spec's var: a list for a number or the reverse."""
    if isinstance(declared, list):
        example = ", ".join([str(value)] * len(declared))
        return (
            f"--set {name}={value}: {name} is a list of {len(declared)} in the spec; "
            f'give a list, e.g. --set "{name}=[{example}]"'
        )
    return f"--set {name}: {name} is a single value in the spec, not a list"


def _real_path(path: str) -> str:
    """The path with symbolic links resolved, to find cycles; as given where it cannot be (a loop, a NUL byte)."""
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return os.path.abspath(path) if "\0" not in path else path


def _key(key) -> str:
    """A mapping key as a message shows it: a string as it is, anything else (from a dict given as
    such: a number of any size) bounded."""
    return key if isinstance(key, str) else show_value(key)


def _count_of(value) -> int:
    """A dense block's num_layers as the layer count takes it (a wrong one is validation's to report)."""
    return value if type(value) is int and value > 0 else 0


def _frozen(value, depth: int = 0):
    """`value` (YAML data) as a key of a dict."""
    if isinstance(value, dict):
        return ("{", *((k, _frozen(v, depth + 1)) for k, v in value.items())) if depth < 8 else id(value)
    if isinstance(value, list):
        return ("[", *(_frozen(v, depth + 1) for v in value)) if depth < 8 else id(value)
    try:
        hash(value)
    except TypeError:
        return id(value)
    return (type(value).__name__, value)


def _site(item: Any, origin: Origin, blocks: dict) -> tuple[Origin, str]:
    """Where an entry that makes too many layers is shown, and what to call it: at its repeat count
    if it is repeated."""
    if isinstance(item, str):
        item = {item: None}
    if not (isinstance(item, dict) and len(item) == 1 and isinstance(next(iter(item)), str)):
        return origin, "this entry"
    kind, value = next(iter(item.items()))
    at = Origin(origin.doc, origin.ypath + (kind,), origin.trace)
    if kind == "repeat" and kind not in registry.KINDS and kind not in blocks:
        return Origin(origin.doc, at.ypath + ("times",), origin.trace), "this repeat"
    if isinstance(value, dict) and "repeat" in value:
        return Origin(origin.doc, at.ypath + ("repeat",), origin.trace), f"this {shorten(kind)}, repeated,"
    if kind in blocks and kind not in registry.KINDS:
        return origin, f"this use of block {shorten(kind)}"
    return origin, f"this {shorten(kind)}"


_NAME_PART = re.compile(r"\{([^{}]*)\}")


def _is_template(name) -> bool:
    return isinstance(name, str) and _NAME_PART.search(name) is not None


def _is_identifier(name) -> bool:
    """A name usable in expressions and, in emitted code, as a parameter: ASCII, so two names that
    Python's NFKC normalisation makes equal (`ａbc`, `abc`) cannot both exist."""
    return isinstance(name, str) and name.isascii() and name.isidentifier() and not keyword.iskeyword(name)


def _one_residual(layers: list) -> bool:
    """Whether a block's layers are one unnamed, unrepeated residual, which its uses become directly
    (an InvertedResidual is the residual, not a Sequential holding one)."""
    if len(layers) != 1 or not isinstance(layers[0], dict) or set(layers[0]) != {"residual"}:
        return False
    fields = layers[0]["residual"]
    return isinstance(fields, dict) and not {"name", "repeat", "from", "merge", "first"} & set(fields)


def _has_type(value, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return _is_number(value)


def _named_layers(layers: list, path: tuple, prefix: str):
    """(qualified name, (layer data, its path)) for every layer, as resolve will name them."""
    if not isinstance(layers, list):
        return
    for index, layer in enumerate(layers):
        if not isinstance(layer, dict):
            continue
        name = layer.get("name") if isinstance(layer.get("name"), str) else str(index)
        qualified = f"{prefix}.{name}" if prefix else name
        at = path + (index,)
        yield qualified, (layer, at)
        kind = layer.get("kind")
        for key in CONTAINER_FIELDS:
            child_prefix = f"{qualified}.{layer.get('shortcut_name', 'shortcut')}" if key == "shortcut" else qualified
            yield from _named_layers(layer.get(key), at + (kind, key), child_prefix)
