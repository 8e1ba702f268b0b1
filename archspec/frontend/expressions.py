"""The safe evaluator of a spec's arithmetic: `base * 2`, `depths[i]`, `make_divisible(w * 0.75, 8)`.

Never Python's eval: the text is parsed with `ast`, only arithmetic nodes are allowed, and the tree
is interpreted here, one node at a time. Bounded whatever the spec: an expression's size (operators
and operands) and nesting are checked on its parsed tree before it is evaluated (and a text far too
long is refused before parsing); every number it reads or makes stays below 10**digits (limit
digits), checked before a product is computed; `/` of integers is exact; a float that is not finite
is an error.
"""

from __future__ import annotations

import ast
import itertools
import math
import operator
import re
from typing import Any, NamedTuple

from ..core.errors import BAD_EXPRESSION, LIMIT, Code, show_names, show_number, show_value
from ..core.limits import current as current_limits
from ..core.limits import how_to_raise, magnitude_bounds


class ExpressionError(Exception):
    def __init__(self, message: str, code: Code = BAD_EXPRESSION):
        super().__init__(message)
        self.code = code


class Failed(str):
    """The value of a var whose definition is wrong (reported): a use of it says so."""


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
FUNCTIONS = {
    "min": (lambda *a: min(a), 1, None),
    "max": (lambda *a: max(a), 1, None),
    "round": (_round, 1, 2),
    "int": (_whole(math.trunc), 1, 1),
    "ceil": (_whole(math.ceil), 1, 1),
    "floor": (_whole(math.floor), 1, 1),
    "make_divisible": (make_divisible, 2, 3),
    "sum": (sum, 1, 1),  # of a list; evaluated apart (_sum)
}
_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
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
_OPERAND = re.compile(r"[A-Za-z0-9_.]+|[-+*/%~<>&|^@]")


class Parsed(NamedTuple):
    body: ast.expr
    names: tuple[str, ...]  # the names it reads, functions aside, in order of first use
    size: int  # operators and operands
    depth: int  # nesting of its tree, a chain of binary operators (1 + 2 + 3 ...) counting as one level


def parse(text: str, parsed: dict | None = None) -> Parsed | None:
    """The parsed expression `text`, or None when it is not arithmetic at all (plain text, which
    validation judges). ExpressionError when it is too large to parse. `parsed`: the texts parsed
    already in this expansion (a spec evaluates the same texts once per layer it makes)."""
    if parsed is not None and text in parsed:
        return parsed[text]
    found = _parse(text)
    if parsed is not None:
        parsed[text] = found
    return found


def _parse(text: str) -> Parsed | None:
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
            digits = current_limits().digits
            message = f"{_shown(text)} holds a number of more than {digits} digits; {how_to_raise('digits')}"
            raise ExpressionError(message, LIMIT) from None
        return None
    if not all(isinstance(n, _ALLOWED_NODES) for n in ast.walk(tree)):
        return None
    size, depth, names, stack = 0, 0, {}, [(tree.body, 1)]
    while stack:  # not recursive: the tree may be deep
        node, level = stack.pop()
        size += 1
        depth = max(depth, level)
        if isinstance(node, ast.Name) and node.id not in FUNCTIONS:
            names.setdefault(node.id, None)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):  # a chain a + b + c ... is evaluated in a loop: no deeper
                stack.append((child, level + (not (isinstance(node, ast.BinOp) and child is node.left))))
    return Parsed(tree.body, tuple(names), size, depth)


def names_in(value, parsed: dict | None = None) -> list[str]:
    """The names the expressions in `value` (a string, or a list holding them) read."""
    found, stack = [], [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                expression = parse(item, parsed)
            except ExpressionError:
                expression = None  # reported when it is evaluated
            if expression is not None:
                found.extend(expression.names)
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return found


def evaluate(text: str, scope: dict[str, Any], parsed: dict | None = None):
    """The value of `text` (numbers, + - * / // %, parentheses, names, list[index], list[start:stop],
    and the functions min, max, round, int, ceil, floor, make_divisible and sum (of a list)).

    Returns `text` itself when it is not an expression over known names (an option like 'same').
    `parsed`: as parse's.
    """
    parsed = parse(text, parsed)
    if parsed is None:
        return text
    body = parsed.body
    if isinstance(body, ast.Name) and body.id not in scope:
        return text
    if not parsed.names and isinstance(body, ast.Constant):
        return text  # a quoted number stays a string: the user asked for one
    limits = current_limits()
    if parsed.size > limits.expression_size:
        message = f"{parsed.size:,} operators and operands, more than {limits.expression_size:,}"
        raise ExpressionError(_too_large(text, message), LIMIT)
    if parsed.depth > limits.depth:
        message = f"the expression {_shown(text)} nests {parsed.depth:,} deep, more than {limits.depth:,}"
        raise ExpressionError(f"{message}; {how_to_raise('depth')}", LIMIT)
    unknown = [name for name in parsed.names if name not in scope]
    if unknown:
        known = show_names(sorted(scope)) or "none"
        raise ExpressionError(f'no var named "{unknown[0]}" in {_shown(text)} (known: {known})')
    try:
        result = _Interpreter(scope, text, magnitude_bounds()[0]).value(body)
    except RecursionError:  # only with limit depth raised past what Python's stack takes
        raise ExpressionError(f"the expression {_shown(text)} nests too deeply to evaluate", LIMIT) from None
    if type(result) is float and not math.isfinite(result):
        raise ExpressionError(f"{_shown(text)} is {result}, not a finite number")
    return result


class _Interpreter:
    """Evaluates one parsed expression over `scope`, every integer it reads or makes below `bound`."""

    def __init__(self, scope: dict, text: str, bound: int):
        self.scope, self.text, self.bound = scope, text, bound

    def value(self, node: ast.expr):
        if isinstance(node, ast.Constant) and _is_number(node.value):
            return self.bounded(node.value)
        if isinstance(node, ast.Name):
            found = self.scope[node.id]
            if type(found) is Failed:
                raise ExpressionError(f"var {node.id} has no value: its definition is wrong (reported there)")
            return found
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = self.number(self.value(node.operand))
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp) and _arithmetic(node.op):
            return self.chain(node)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS:
            if not node.keywords:
                return self.call(node.func.id, node.args)
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice):  # depths[:s], depths[1:3]
            return self.sliced(node)
        if isinstance(node, ast.Subscript):
            return self.indexed(node)
        raise ExpressionError(
            f"{_shown(self.text)} is not a simple arithmetic expression (numbers, + - * / // %, vars, list[index] "
            f"and the functions {', '.join(FUNCTIONS)})"
        )

    def chain(self, node: ast.BinOp):
        """a + b - c ...: each operation's left operand is the one before, evaluated in a loop."""
        steps = []
        while isinstance(node, ast.BinOp) and _arithmetic(node.op):
            steps.append(node)
            node = node.left
        found = self.value(node)
        for step in reversed(steps):
            found = self.apply(type(step.op), found, self.value(step.right))
        return found

    def apply(self, op: type, a, b):
        a, b = self.number(a), self.number(b)
        if b == 0 and op in (ast.Div, ast.FloorDiv, ast.Mod):
            raise ExpressionError(f"division by zero in {_shown(self.text)}")
        if op is ast.Mult and type(a) is int and type(b) is int:  # refused before the product is made
            if a.bit_length() + b.bit_length() - 1 > self.bound.bit_length():
                raise ExpressionError(
                    f"{_shown(self.text)} multiplies {show_number(a)} by {show_number(b)}, a number of more "
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
            raise ExpressionError(f"{_shown(self.text)} goes out of the range of numbers") from None
        return self.bounded(result)

    def call(self, name: str, arguments: list[ast.expr]):
        if name == "sum":  # of a list: the one function whose argument is not a number
            items = self.value(arguments[0]) if len(arguments) == 1 else None
            if not isinstance(items, list):
                raise ExpressionError(
                    f"sum() takes one list, e.g. sum(depths) or sum(depths[:i]), in {_shown(self.text)}"
                )
            return self.bounded(sum(self.number(item) for item in items))
        function, fewest, most = FUNCTIONS[name]
        values = [self.number(self.value(argument)) for argument in arguments]
        if not fewest <= len(values) <= (most or len(values)):
            plural = "s" if fewest > 1 else ""
            wanted = (
                f"at least {fewest} argument{plural}"
                if most is None
                else f"{fewest} argument{plural}"
                if most == fewest
                else f"{fewest} to {most} arguments"
            )
            raise ExpressionError(f"{name}() takes {wanted}, got {len(values)}, in {_shown(self.text)}")
        if name == "round" and len(values) == 2 and not isinstance(values[1], int):
            raise ExpressionError(f"round()'s digits must be a whole number in {_shown(self.text)}")
        try:
            result = function(*values)
        except (OverflowError, ValueError):  # int(inf), int(nan): a spec's arithmetic went out of range
            raise ExpressionError(f"{name}() of a value out of range in {_shown(self.text)}") from None
        return self.bounded(result)

    def sliced(self, node: ast.Subscript):
        found = self.value(node.value)
        if not isinstance(found, list) or node.slice.step is not None:
            raise ExpressionError(f"only a list var can be sliced, as list[start:stop], in {_shown(self.text)}")
        bounds = [None if b is None else self.value(b) for b in (node.slice.lower, node.slice.upper)]
        if not all(b is None or (isinstance(b, int) and not isinstance(b, bool)) for b in bounds):
            raise ExpressionError(f"a slice's bounds are integers, in {_shown(self.text)}")
        return found[bounds[0] : bounds[1]]

    def indexed(self, node: ast.Subscript):
        found, index = self.value(node.value), self.value(node.slice)
        if not isinstance(found, list) or not isinstance(index, int) or isinstance(index, bool):
            raise ExpressionError(f"only a list var can be indexed, by an integer, in {_shown(self.text)}")
        if not -len(found) <= index < len(found):
            raise ExpressionError(
                f"index {show_number(index)} is out of range for a list of {len(found)} in {_shown(self.text)}"
            )
        return found[index]

    def number(self, value):
        if not _is_number(value):
            raise ExpressionError(f"arithmetic on a non-number in {_shown(self.text)}")
        return value

    def bounded(self, value):
        if type(value) is int and not -self.bound < value < self.bound:
            raise ExpressionError(
                f"{_shown(self.text)} is {show_number(value)}, a number of more than {current_limits().digits} "
                f"digits; {how_to_raise('digits')}",
                LIMIT,
            )
        return value


def _arithmetic(op) -> bool:
    return type(op) in _BINARY or isinstance(op, ast.Div)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shown(text: str) -> str:
    return show_value(text, 80)


def _too_large(text: str, what: str) -> str:
    return f"the expression {_shown(text)} is too large: {what}; {how_to_raise('expression_size')}"
