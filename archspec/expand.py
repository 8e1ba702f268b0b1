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
import keyword
import math
import operator
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import registry, schema
from .errors import (
    BAD_ARGUMENT,
    BAD_BLOCK,
    BAD_EXPRESSION,
    BAD_EXTENDS,
    BAD_OVERRIDE,
    BAD_VALUE,
    BAD_VAR,
    BLOCK_RECURSION,
    LAYER_FORM,
    UNKNOWN_FIELD,
    Diagnostic,
    Location,
    SpecError,
    UsageError,
    did_you_mean,
)
from .load import Document, load_file

Note = tuple[Location, str]
CONTAINER_FIELDS = schema.CONTAINER_FIELDS
PARAM_TYPES = {"int": int, "float": float, "bool": bool}


@dataclass(frozen=True)
class Origin:
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


def expand(doc: Document, overrides: dict[str, Any] | None = None) -> Expanded:
    """The expanded data; its `errors` are reported together with validation's."""
    errors: list[Diagnostic] = []
    result = _Expander(doc, errors).run(overrides or {})
    result.errors = errors
    return result


# ---------------------------------------------------------------- the safe evaluator

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
        raise ExpressionError(f"make_divisible's divisor must be a whole number >= 1, got {divisor!r}")
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


# name: (function, fewest arguments, most arguments; None: any number)
_FUNCTIONS = {
    "min": (lambda *a: min(a), 1, None),
    "max": (lambda *a: max(a), 1, None),
    "round": (lambda v, digits=None: round(v) if digits is None else round(v, digits), 1, 2),
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
    pass


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def evaluate(text: str, scope: dict[str, Any]):
    """The value of `text` (numbers, + - * / // %, parentheses, names, list[index], list[start:stop],
    and the functions min, max, round, int, ceil, floor, make_divisible and sum (of a list)).

    Returns `text` itself when it is not an expression over known names (an option like 'same').
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError):
        return text
    if not all(isinstance(n, _ALLOWED_NODES) for n in ast.walk(tree)):
        return text  # not arithmetic at all: plain text, which validation judges
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - set(_FUNCTIONS)
    if isinstance(tree.body, ast.Name) and tree.body.id not in scope:
        return text
    if not names and isinstance(tree.body, ast.Constant):
        return text  # a quoted number stays a string: the user asked for one
    unknown = sorted(names - set(scope))
    if unknown:
        known = ", ".join(sorted(scope)) or "none"
        raise ExpressionError(f'no var named "{unknown[0]}" in {text!r} (known: {known})')
    return _value(tree.body, scope, text)


def _value(node, scope, text):
    if isinstance(node, ast.Constant) and _is_number(node.value):
        return node.value
    if isinstance(node, ast.Name):
        return scope[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _number(_value(node.operand, scope, text), text)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and (type(node.op) in _BINARY or isinstance(node.op, ast.Div)):
        left, right = _number(_value(node.left, scope, text), text), _number(_value(node.right, scope, text), text)
        if right == 0 and isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)):
            raise ExpressionError(f"division by zero in {text!r}")
        if isinstance(node.op, ast.Div):  # exact: 64 / 2 is the size 32, 65 / 2 is 32.5 (not a size)
            quotient = left / right
            return int(quotient) if isinstance(left, int) and isinstance(right, int) and left % right == 0 else quotient
        return _BINARY[type(node.op)](left, right)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        if node.func.id == "sum":  # of a list: the one function whose argument is not a number
            items = _value(node.args[0], scope, text) if len(node.args) == 1 else None
            if not isinstance(items, list):
                raise ExpressionError(f"sum() takes one list, e.g. sum(depths) or sum(depths[:i]), in {text!r}")
            return sum(_number(item, text) for item in items)
        function, fewest, most = _FUNCTIONS[node.func.id]
        args = [_number(_value(a, scope, text), text) for a in node.args]
        if not fewest <= len(args) <= (most or len(args)):
            plural = "s" if fewest > 1 else ""
            wanted = (
                f"at least {fewest} argument{plural}"
                if most is None
                else f"{fewest} argument{plural}"
                if most == fewest
                else f"{fewest} to {most} arguments"
            )
            raise ExpressionError(f"{node.func.id}() takes {wanted}, got {len(args)}, in {text!r}")
        if node.func.id == "round" and len(args) == 2 and not isinstance(args[1], int):
            raise ExpressionError(f"round()'s digits must be a whole number in {text!r}")
        try:
            return function(*args)
        except (OverflowError, ValueError):  # int(inf), int(nan): a spec's arithmetic went out of range
            raise ExpressionError(f"{node.func.id}() of a value out of range in {text!r}") from None
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice):  # depths[:s], depths[1:3]
        items = _value(node.value, scope, text)
        if not isinstance(items, list) or node.slice.step is not None:
            raise ExpressionError(f"only a list var can be sliced, as list[start:stop], in {text!r}")
        bounds = [None if b is None else _value(b, scope, text) for b in (node.slice.lower, node.slice.upper)]
        if not all(b is None or (isinstance(b, int) and not isinstance(b, bool)) for b in bounds):
            raise ExpressionError(f"a slice's bounds are integers, in {text!r}")
        return items[bounds[0] : bounds[1]]
    if isinstance(node, ast.Subscript):
        items, index = _value(node.value, scope, text), _value(node.slice, scope, text)
        if not isinstance(items, list) or not isinstance(index, int) or isinstance(index, bool):
            raise ExpressionError(f"only a list var can be indexed, by an integer, in {text!r}")
        if not -len(items) <= index < len(items):
            raise ExpressionError(f"index {index} is out of range for a list of {len(items)} in {text!r}")
        return items[index]
    raise ExpressionError(
        f"{text!r} is not a simple arithmetic expression (numbers, + - * / // %, vars, list[index] and "
        f"the functions {', '.join(_FUNCTIONS)})"
    )


def _number(value, text):
    if not _is_number(value):
        raise ExpressionError(f"arithmetic on a non-number in {text!r}")
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
        scope = self.variables(var_parts, overrides)
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
            self.errors.append(Diagnostic(message, BAD_VALUE, doc.locate(())))
            return None, None, None
        parts, var_parts, patches = {}, {}, []
        if "extends" in data:
            base = self.load_base(doc, data["extends"], chain)
            if base is None:
                return None, None, None  # without its base the spec is incomplete: report only that
            extended = ((doc.locate(("extends",)), f"in {base.path}, extended here"), *trace)
            parts, var_parts, patches = self.merged(base, chain + [str(Path(doc.path).resolve())], extended)
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

    def load_base(self, doc: Document, target: Any, chain: list[str]) -> Document | None:
        origin = Origin(doc, ("extends",))
        if not isinstance(target, str) or not target:
            self.error("extends takes the path of a base spec, relative to this file", BAD_EXTENDS, origin)
            return None
        shown = os.path.normpath(Path(doc.path).parent / target)  # as a person would write it
        path = Path(shown).resolve()
        here = str(Path(doc.path).resolve())
        if str(path) in chain + [here]:
            cycle = " -> ".join(Path(p).name for p in chain + [here, str(path)])
            self.error(f"extends makes a cycle: {cycle}", BAD_EXTENDS, origin)
            return None
        if not path.is_file():
            self.error(f"extends: no such file {shown}", BAD_EXTENDS, origin)
            return None
        try:
            return load_file(shown)
        except SpecError as exc:
            self.errors.extend(exc.diagnostics)
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
                    f"a var name must be an ASCII identifier and not a Python keyword, not {name!r}",
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
            known = ", ".join(sorted(var_parts)) or "none"
            raise UsageError(
                f'no var named "{unknown[0]}" to override{did_you_mean(unknown[0], var_parts)} (known vars: {known})'
            )
        for name, value in overrides.items():
            declared = var_parts[name].value
            if isinstance(declared, list) != isinstance(value, list):
                raise UsageError(_override_mismatch(name, declared, value))
        values: dict[str, Any] = {}
        pending: list[str] = []

        def value_of(name: str):
            if name in values:
                return values[name]
            part = var_parts[name]
            if name in pending:
                self.error(
                    f"var {name} is defined in terms of itself ({' -> '.join(pending + [name])})", BAD_VAR, part.origin
                )
                values[name] = 0
                return 0
            pending.append(name)
            raw = overrides.get(name, part.value)
            lazy = _LazyScope(var_parts, value_of)
            values[name] = self.values(raw, part.origin, (), lazy)
            pending.pop()
            return values[name]

        for name in var_parts:
            value_of(name)
        return values

    def values(self, value: Any, origin: Origin, rest: tuple, scope) -> Any:
        """`value` with every expression string in it evaluated."""
        if isinstance(value, str):
            try:
                return evaluate(value, scope)
            except ExpressionError as exc:
                self.error(str(exc), BAD_EXPRESSION, origin, rest)
                return value
        if isinstance(value, list):
            return [self.values(v, origin, rest + (i,), scope) for i, v in enumerate(value)]
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
                    f"a block name must be an ASCII identifier and not a Python keyword, not {name!r}",
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
                extra = sorted(set(definition) - {"params", "layers", "description"}, key=str)[0]
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
                    f"a parameter name must be an ASCII identifier and not a Python keyword, not {name!r}",
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

    def use_block(self, kind: str, fields: dict, path: tuple, origin: Origin, scope) -> dict:
        definition = self.blocks[kind]
        if kind in self.using:
            cycle = " -> ".join(self.using[self.using.index(kind) :] + [kind])
            self.error(f"block {kind} uses itself ({cycle})", BLOCK_RECURSION, origin)
            return self.standin({})
        params = self.params(kind, definition)
        arg_origin = Origin(origin.doc, origin.ypath + (kind,), origin.trace)
        own = {k: fields.pop(k) for k in ("name", "from", "merge") if k in fields}
        errors_before = len(self.errors)
        for unknown in [k for k in fields if k not in params]:
            self.error(
                f'block {kind} has no parameter "{unknown}"{did_you_mean(unknown, params)}'
                f" (parameters: {', '.join(params) or 'none'})",
                BAD_ARGUMENT,
                arg_origin,
                (unknown,),
                key=True,
            )
        body_scope = dict(scope)  # the spec's vars, then the block's parameters
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
                    f'argument "{name}" of block {kind} must be {kind_type.__name__}, got {value!r}',
                    BAD_ARGUMENT,
                    value_origin,
                    rest,
                )
            body_scope[name] = value
        if len(self.errors) > errors_before:  # the body would only repeat the argument errors
            return self.standin(own)
        use = (origin.doc.locate(origin.ypath), f"in block {kind}, used here")
        layers_origin = Origin(definition.origin.doc, definition.origin.ypath + ("layers",), origin.trace + (use,))
        self.using.append(kind)
        if _one_residual(definition.value["layers"]):  # the block is that residual: no group around it
            item_origin = Origin(layers_origin.doc, layers_origin.ypath + (0,), layers_origin.trace)
            ((residual, _, _),) = self.layer(
                definition.value["layers"][0], item_origin, path[:-1], path[-1], body_scope
            )
            self.using.pop()
            self.origins[path + ("residual",)] = Origin(
                item_origin.doc, item_origin.ypath + ("residual",), item_origin.trace
            )
            self.block_uses[path] = kind
            self.block_args[path] = tuple((name, body_scope[name]) for name in params)
            return {**residual, **own}
        layers = self.layer_list(definition.value["layers"], path + ("group", "layers"), layers_origin, body_scope)
        self.using.pop()
        self.origins[path + ("group",)] = arg_origin
        self.block_uses[path] = kind
        self.block_args[path] = tuple((name, body_scope[name]) for name in params)
        return {"kind": "group", **own, "layers": layers}

    # ---- layers

    def layer_list(self, items: Any, path: tuple, origin: Origin, scope) -> list:
        if not isinstance(items, list):
            return items  # validation reports it
        self.origins[path] = origin
        out: list = []
        for j, item in enumerate(items):
            item_origin = Origin(origin.doc, origin.ypath + (j,), origin.trace)
            for layer, layer_origin, kind_written in self.layer(item, item_origin, path, len(out), scope):
                at = path + (len(out),)
                self.origins[at] = layer_origin
                if kind_written is not None:
                    kind_origin = Origin(layer_origin.doc, layer_origin.ypath + (kind_written,), layer_origin.trace)
                    self.origins.setdefault(at + (layer.get("kind"),), kind_origin)
                if id(layer) in self.standin_ids:
                    self.standins.add(at)
                out.append(layer)
        return out

    def layer(self, item: Any, origin: Origin, path: tuple, index: int, scope):
        """The layers one entry expands to: (tagged data, origin, kind key as written)."""
        if isinstance(item, str):
            item = {item: None}
        if not (isinstance(item, dict) and len(item) == 1 and isinstance(next(iter(item)), str)):
            message = "a layer is written `kind`, `kind: value` or `kind: {fields}`"
            if isinstance(item, dict) and len(item) > 1:
                keys = ", ".join(map(str, item))
                message += f"; this entry has {len(item)} keys ({keys}): indent the fields under the kind"
            self.error(message, LAYER_FORM, origin)
            return [(self.standin({}), origin, None)]
        kind, value = next(iter(item.items()))
        if kind == "repeat" and kind not in registry.KINDS and kind not in self.blocks:
            return self.flat_repeat(value, origin, path, index, scope)
        fields = self.fields(kind, value, origin)
        fields_origin = Origin(origin.doc, origin.ypath + (kind,), origin.trace)
        repeat = self.values(fields.pop("repeat", 1), fields_origin, ("repeat",), scope)
        first = fields.pop("first", None)
        if not (isinstance(repeat, int) and not isinstance(repeat, bool) and repeat >= 0):
            self.error(f"repeat must be an integer >= 0, got {repeat!r}", BAD_VALUE, fields_origin, ("repeat",))
            repeat = 1
        if first is not None and not isinstance(first, dict):
            self.error("first is a mapping of fields for the first copy", BAD_VALUE, fields_origin, ("first",))
            first = None
        repeated = isinstance(value, dict) and "repeat" in value
        results = []
        for copy in range(repeat):
            copy_fields = {**fields, **(first if copy == 0 and first else {})}
            copy_scope = _Scope(scope, {"i": copy}) if repeated else scope
            if repeat > 1 and "name" in fields and copy_fields.get("name") == fields["name"]:
                copy_fields["name"] = f"{fields['name']}{copy + 1}"
            at = path + (index + copy,)
            results.append((self.one_layer(kind, copy_fields, at, origin, copy_scope), origin, kind))
        return results

    def flat_repeat(self, value: Any, origin: Origin, path: tuple, index: int, scope):
        """`- repeat: {times: n, layers: [...]}`: the layers n times over, spliced into the list they
        are in, so they are numbered on with their neighbours (VGG's features.0, features.1, ...).
        The var `index` (default i) is the copy's index; repeats nest, each with its own index."""
        where = Origin(origin.doc, origin.ypath + ("repeat",), origin.trace)
        form = "repeat takes {times: n, layers: [...]} (and index: a var name for the copy's index, default i)"
        if not isinstance(value, dict) or not isinstance(value.get("layers"), list) or "times" not in value:
            self.error(form, LAYER_FORM, where)
            return [(self.standin({}), origin, None)]
        for extra in sorted(set(value) - {"times", "layers", "index"}, key=str):
            self.error(f'unknown field "{extra}" of repeat; {form}', UNKNOWN_FIELD, where, (extra,), key=True)
        times = self.values(value["times"], where, ("times",), scope)
        if not (isinstance(times, int) and not isinstance(times, bool) and times >= 0):
            self.error(f"repeat's times must be an integer >= 0, got {times!r}", BAD_VALUE, where, ("times",))
            times = 1
        name = value.get("index", "i")
        if not _is_identifier(name):
            self.error(f"repeat's index must be a var name, got {name!r}", BAD_VALUE, where, ("index",))
            name = "i"
        items_origin = Origin(origin.doc, where.ypath + ("layers",), origin.trace)
        results = []
        for copy in range(times):
            copy_scope = _Scope(scope, {name: copy})
            for j, item in enumerate(value["layers"]):
                item_origin = Origin(items_origin.doc, items_origin.ypath + (j,), items_origin.trace)
                results += self.layer(item, item_origin, path, index + len(results), copy_scope)
        return results

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

    def one_layer(self, kind: str, fields: dict, path: tuple, origin: Origin, scope) -> dict:
        if kind in self.blocks and kind not in registry.KINDS:
            return self.use_block(kind, fields, path, origin, scope)
        fields_origin = Origin(origin.doc, origin.ypath + (kind,), origin.trace)
        out = {"kind": kind}
        for key, value in fields.items():
            if key in CONTAINER_FIELDS and isinstance(value, list):
                child_origin = Origin(fields_origin.doc, fields_origin.ypath + (key,), fields_origin.trace)
                out[key] = self.layer_list(value, path + (kind, key), child_origin, scope)
            elif key in ("name", "from", "merge"):
                out[key] = value
            else:
                out[key] = self.values(value, fields_origin, (key,), scope)
        return out

    # ---- override: patches of named parts

    def apply_patch(self, data: dict, patch: _Part, scope) -> None:
        if not isinstance(patch.value, dict):
            self.error("override is a mapping of layer names to the fields to change", BAD_OVERRIDE, patch.origin)
            return
        named = dict(_named_layers(data.get("layers", []), ("layers",), ""))
        for target, changes in patch.value.items():
            where = Origin(patch.origin.doc, patch.origin.ypath + (target,))
            if target not in named:
                self.error(
                    f'override: no layer named "{target}"{did_you_mean(target, named)}', BAD_OVERRIDE, where, key=True
                )
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
                    layer[key] = self.layer_list(value, path + (layer["kind"], key), at, scope)
                else:
                    layer[key] = self.values(value, where, (key,), scope)

    def forget(self, prefix: tuple) -> None:
        """Drop what was recorded of the layers under `prefix`, which an override replaces."""
        for table in (self.origins, self.block_uses, self.block_args):
            for path in [p for p in table if p[: len(prefix)] == prefix]:
                del table[path]
        self.standins -= {p for p in self.standins if p[: len(prefix)] == prefix}


class _Scope(dict):
    """A scope of names: local values over an enclosing scope."""

    def __init__(self, outer, local: dict):
        super().__init__({**dict(outer.items()), **local})


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


def _override_mismatch(name: str, declared, value) -> str:
    """Why `--set name=value` does not fit the spec's var: a list for a number or the reverse."""
    if isinstance(declared, list):
        example = ", ".join([str(value)] * len(declared))
        return (
            f"--set {name}={value}: {name} is a list of {len(declared)} in the spec; "
            f'give a list, e.g. --set "{name}=[{example}]"'
        )
    return f"--set {name}: {name} is a single value in the spec, not a list"


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
