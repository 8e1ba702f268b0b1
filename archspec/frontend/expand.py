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

import keyword
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from .. import registry
from ..core.errors import (
    BAD_ARGUMENT,
    BAD_BLOCK,
    BAD_EXTENDS,
    BAD_OVERRIDE,
    BAD_VALUE,
    BAD_VAR,
    BLOCK_RECURSION,
    LAYER_FORM,
    LIMIT,
    UNKNOWN_FIELD,
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
from ..kinds.layers import STANDIN
from ..kinds.structures import CONTAINER_FIELDS, GROUP, RESIDUAL, SHORTCUT
from .expressions import ExpressionError, Failed, evaluate, names_in
from .load import Document, UnreadableFile, load_file, shown

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


class _TooMany(Exception):
    """The outermost entry being made has made more layers than the limit allows: stop making it."""


def _fewest(item: Any, scope, parsed: dict) -> int:
    """The fewest layers an entry asks for by its form alone, before any is made: as many as its
    copies (`repeat:`, a flat repeat's `times:`), each at least one, or a dense block's layers."""
    entry = _entry(item)
    if entry is None or not isinstance(entry[1], dict):
        return 1
    kind, fields = entry
    count = fields.get("times") if kind == "repeat" else fields.get("repeat", 1)
    try:
        copies = evaluate(count, scope, parsed) if isinstance(count, str) else count
    except ExpressionError:  # reported when the entry is made
        copies = None
    return (copies if type(copies) is int and copies > 0 else 1) * (1 + _counted_in_advance(kind, fields))


def _counted_in_advance(kind: str, fields: dict) -> int:
    """The layers besides itself that a layer of `kind` counts before it is expanded (a dense block's)."""
    entry = registry.KINDS.get(kind)
    return entry.count(fields) if isinstance(entry, registry.BlockKind) and entry.count else 0


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
        # The layer count (limit layers): layers are counted as they are made. An outermost entry (of
        # the spec's layers, or of an override's) that makes more than the limit by itself stops
        # being made there (_TooMany), so the work stays within the limit whatever the spec.
        limits = current_limits()
        self.max_layers, self.max_depth = limits.layers, limits.depth
        self.bound = magnitude_bounds()[0]  # 10**digits: every number is below it in magnitude
        self.count = 0  # layers made so far (an empty copy of a repeat counts as one)
        self.entry_start: int | None = None  # the count where the outermost entry being made began
        self.parsed: dict = {}  # the texts parsed so far (expressions.parse): a spec repeats its texts
        self.wasted = 0  # layers made by entries then refused: past the limit, every entry after is refused

    def standin(self, own: dict) -> dict:
        """An identity in place of a layer already reported wrong, so the other layers are still checked;
        the shape stage treats its output as unknown."""
        layer = {"kind": STANDIN, **own}
        self.standin_ids.add(id(layer))
        self.counts(1)
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
        origin = Origin(doc, ("extends",))
        if not isinstance(target, str) or not target:
            self.error("extends takes the path of a base spec, relative to this file", BAD_EXTENDS, origin)
            return None
        written = os.path.normpath(Path(doc.path).parent / target)  # as a person would write it
        path, here = _real_path(written), _real_path(doc.path)
        if path in chain + [here]:
            cycle = " -> ".join(Path(p).name for p in chain + [here, path])
            self.error(f"extends makes a cycle: {cycle}", BAD_EXTENDS, origin)
            return None
        traced = Origin(doc, ("extends",), tuple(reversed(trace)))  # a base's extends: name who extended it
        if len(chain) + 2 > current_limits().depth:  # the specs above this one, this one and its base
            longer = f"more than {current_limits().depth:,} specs long ({how_to_raise('depth')})"
            self.error(f"extends: the chain of bases is {longer}", BAD_EXTENDS, traced)
            return None
        try:
            return load_file(written)
        except UnreadableFile as exc:  # missing, a directory, a FIFO, a name the system refuses...
            message = f"extends: no such file {shown(written)}" if exc.missing else f"extends: {exc}"
            self.error(message, BAD_EXTENDS, traced)
        except SpecError as exc:  # a file, but no spec: too large, not UTF-8 text, not YAML
            note = (doc.locate(("extends",)), f"in {shown(written)}, extended here")
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
            return iter(dict.fromkeys(used for used in names_in(raw[name], self.parsed) if used in var_parts))

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
                        values[name] = Failed(name)
                    done.add(name)
        return {name: values[name] for name in var_parts}

    def values(self, value: Any, origin: Origin, rest: tuple, scope) -> Any:
        """`value` with every expression string in it evaluated; every number in it bounded."""
        if isinstance(value, str):
            try:
                return evaluate(value, scope, self.parsed)
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
                residual.update(own)
                return residual
            self.origins[path + (RESIDUAL,)] = Origin(
                item_origin.doc, item_origin.ypath + (RESIDUAL,), item_origin.trace
            )
            self.block_uses[path] = kind
            self.block_args[path] = tuple((name, body_scope[name]) for name in params)
            return {**residual, **own}
        layers = self.layer_list(
            definition.value["layers"], path + (GROUP, "layers"), layers_origin, body_scope, level + 1
        )
        self.using.pop()
        self.origins[path + (GROUP,)] = arg_origin
        self.block_uses[path] = kind
        self.block_args[path] = tuple((name, body_scope[name]) for name in params)
        self.counts(1)
        return {"kind": GROUP, **own, "layers": layers}

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
            if self.entry_start is None:  # an outermost entry: counted, and refused past the limit
                made = self.counted_entry(item, item_origin, path, len(out), scope, level)
            else:
                made = self.layer(item, item_origin, path, len(out), scope, level)
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
        return out

    def counts(self, layers: int) -> None:
        """Count `layers` more made: past the limit, the outermost entry making them stops (_TooMany),
        so no spec makes many more layers than the limit, whatever its repeats and blocks multiply."""
        self.count += layers
        if self.entry_start is not None and self.count - self.entry_start > self.max_layers:
            raise _TooMany

    def counted_entry(self, item: Any, origin: Origin, path: tuple, index: int, scope, level: int) -> list:
        """The layers of an outermost entry; a stand-in (reported) where they take the spec past the
        limit."""
        if self.wasted > self.max_layers:
            return [(self.standin({}), origin, None)]
        start = self.entry_start = self.count
        try:
            made = self.layer(item, origin, path, index, scope, level)
        except _TooMany:
            made = None
        finally:
            self.entry_start = None
        total = None if made is None else self.count - start
        if total is not None and start + total <= self.max_layers:
            return made
        self.wasted += self.count - start
        self.count = start
        where, what = _site(item, origin, self.blocks)
        if total is None or total > self.max_layers:
            message = f"{what} makes more than {self.max_layers:,} layers"
        else:
            plural = "s" if total != 1 else ""
            more = f"which with the {start:,} before it are more than {self.max_layers:,}"
            message = f"{what} makes {total:,} layer{plural}, {more}"
        self.error(f"{message}; {how_to_raise('layers')}", LIMIT, where)
        return [(self.standin({}), origin, None)]

    def layer(self, item: Any, origin: Origin, path: tuple, index: int, scope, level: int):
        """The layers one entry expands to: (tagged data, origin, kind key as written). An entry whose
        form alone asks for more layers than the limit leaves (`repeat: 1000000000`) stops at once."""
        if self.entry_start is not None:
            if self.count - self.entry_start + _fewest(item, scope, self.parsed) > self.max_layers:
                raise _TooMany
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
                self.counts(1)
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
        # a dense block's layers are made by the shape stage, and count as well
        self.counts(1 + _counted_in_advance(kind, out))
        return out

    def name_of(self, name: Any, origin: Origin, scope) -> Any:
        """A layer name with its `{expression}` parts filled in (`block{s + 1}-{i}` in a repeat gives
        block1-0, block1-1, ...). Each part is evaluated like a field and must give an integer >= 0,
        so a name holds only what validation then checks: letters, digits, _ and -."""
        if not _is_template(name):
            return name

        def filled(part: re.Match) -> str:
            text = part.group(1).strip()
            value = evaluate(text, scope, self.parsed)
            if isinstance(value, str):  # what evaluate hands back as text: a number, or a bare unknown name
                if not (text.isascii() and text.isdecimal()):
                    known = show_names(sorted(scope)) or "none"
                    raise ExpressionError(
                        f'no var named "{shorten(text)}" in the name {show_value(name, 80)} (known: {known})'
                    )
                value = int(text)
            if type(value) is not int or value < 0:
                raise ExpressionError(f"a name's {{{text}}} must give an integer >= 0, got {show_value(value)}")
            return str(value)

        try:
            return _NAME_PART.sub(filled, name)
        except ExpressionError as exc:
            self.error(str(exc), exc.code, origin, ("name",))
            return None  # a stand-in with no name: the layer is still checked

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
    """A scope of names: local values over an enclosing scope."""

    def __init__(self, outer, local: dict):
        super().__init__(outer if isinstance(outer, dict) else outer.items())
        self.update(local)


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


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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
    if len(layers) != 1 or not isinstance(layers[0], dict) or set(layers[0]) != {RESIDUAL}:
        return False
    fields = layers[0][RESIDUAL]
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
            child_prefix = f"{qualified}.{layer.get('shortcut_name', SHORTCUT)}" if key == SHORTCUT else qualified
            yield from _named_layers(layer.get(key), at + (kind, key), child_prefix)
