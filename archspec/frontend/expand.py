"""Stage 1b: expand a loaded spec into plain tagged data, before validation.

This is where reuse happens, on plain data:
- `extends:` merges a base spec (chains allowed, cycles reported): bases.py,
- `vars:` (plus overrides) are evaluated by a tiny safe evaluator, never Python's eval: scope.py,
- `repeat:` copies a layer, with `first:` overrides and the repeat index `i`,
- user-defined `blocks:` are expanded at their use (their parameters: user_blocks.py),
- `override:` patches named parts of the layer tree.

Every produced node remembers where it came from (file, YAML path, and the chain of block uses
that led to it), so every later error still points at the right line of the right file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import registry
from ..core.errors import (
    BAD_OVERRIDE,
    BAD_VALUE,
    BLOCK_RECURSION,
    LAYER_FORM,
    LIMIT,
    UNKNOWN_FIELD,
    Diagnostic,
    Location,
    SpecError,
    did_you_mean,
    shorten,
    show_names,
    show_value,
)
from ..core.limits import current as current_limits
from ..core.limits import ensure_stack, how_to_raise
from ..kinds.layers import STANDIN
from ..kinds.structures import CONTAINER_FIELDS, GROUP, RESIDUAL, SHORTCUT
from . import bases, user_blocks
from .expressions import ExpressionError, evaluate
from .load import Document, check_plain_data
from .scope import Evaluator, Note, Origin, Part, Scope, is_identifier, is_template, key_shown


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
    files: tuple[str, ...] = ()  # the files read: the spec's and its bases'

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


class _Expander:
    def __init__(self, doc: Document, errors: list[Diagnostic]):
        self.root = doc
        self.ev = Evaluator(errors)
        self.origins: dict[tuple, Origin] = {(): Origin(doc, ())}
        self.blocks: dict[str, Part] = {}
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
        self.count = 0  # layers made so far (an empty copy of a repeat counts as one)
        self.entry_start: int | None = None  # the count where the outermost entry being made began
        self.wasted = 0  # layers made by entries then refused: past the limit, every entry after is refused
        self.fewest_known: dict = {}  # user_blocks.fewest_layers's counts

    def standin(self, own: dict) -> dict:
        """An identity in place of a layer already reported wrong, so the other layers are still checked;
        the shape stage treats its output as unknown."""
        layer = {"kind": STANDIN, **own}
        self.standin_ids.add(id(layer))
        self.counts(1)
        return layer

    def run(self, overrides: dict[str, Any]) -> Expanded:
        found = bases.merged(self.ev, self.root, self.blocks, [])
        if found is None:
            return Expanded(self.root.path, None, self.origins)
        scope = Scope(self.ev.variables(found.vars, overrides), {})
        data: dict[str, Any] = {}
        for key, part in found.parts.items():
            self.origins[(key,)] = part.origin
            if key == "layers" and isinstance(part.value, list):
                data[key] = self.layer_list(part.value, ("layers",), part.origin, scope)
            elif key == "input":
                data[key] = self.ev.values(part.value, part.origin, (), scope)
            else:
                data[key] = part.value
        for patch in found.patches:
            self.apply_patch(data, patch, scope)
        return Expanded(
            self.root.path,
            data,
            self.origins,
            block_uses=self.block_uses,
            block_args=self.block_args,
            standins=self.standins,
            vars=dict(scope),
            files=tuple(found.files),
        )

    def use_block(self, kind: str, fields: dict, path: tuple, origin: Origin, scope, level: int) -> dict:
        definition = self.blocks[kind]
        if kind in self.using:
            cycle = " -> ".join(self.using[self.using.index(kind) :] + [kind])
            self.ev.error(f"block {kind} uses itself ({cycle})", BLOCK_RECURSION, origin)
            return self.standin({})
        params, own, body_scope = user_blocks.use_scope(self.ev, kind, definition, fields, origin, scope)
        if body_scope is None:
            return self.standin(own)
        one_residual = user_blocks.one_residual(definition.value["layers"])  # then no group around it
        if not one_residual and level >= self.max_depth:
            self.too_deep(origin)
            return self.standin(own)
        if self.entry_start is not None:
            least = user_blocks.fewest_layers(self.blocks, kind, self.max_depth - level, self.fewest_known)
            if self.count - self.entry_start + least > self.max_layers:
                raise _TooMany
        arg_origin = origin.at(kind)
        use = (origin.doc.locate(origin.ypath), f"in block {kind}, used here")
        layers_origin = Origin(definition.origin.doc, definition.origin.ypath + ("layers",), origin.trace + (use,))
        self.using.append(kind)
        if one_residual:
            item_origin = layers_origin.at(0)
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
        self.ev.error(
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
        for j, item in enumerate(items):
            item_origin = origin.at(j)
            if self.entry_start is None:  # an outermost entry: counted, and refused past the limit
                made = self.counted_entry(item, item_origin, path, len(out), scope, level)
            else:
                made = self.layer(item, item_origin, path, len(out), scope, level)
            for layer, layer_origin, kind_written in made:
                at = path + (len(out),)
                self.origins[at] = layer_origin
                if kind_written is not None and layer.get("kind") != kind_written:  # a block's use, made a group
                    # (where the kind is as written, the layer's origin locates its fields as well)
                    kind_origin = layer_origin.at(kind_written)
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
        self.ev.error(f"{message}; {how_to_raise('layers')}", LIMIT, where)
        return [(self.standin({}), origin, None)]

    def layer(self, item: Any, origin: Origin, path: tuple, index: int, scope, level: int):
        """The layers one entry expands to: (tagged data, origin, kind key as written). An entry whose
        form alone asks for more layers than the limit leaves (`repeat: 1000000000`) stops at once."""
        if self.entry_start is not None:
            if self.count - self.entry_start + _fewest(item, scope, self.ev.parsed) > self.max_layers:
                raise _TooMany
        entry = _entry(item)
        if entry is None:
            message = "a layer is written `kind`, `kind: value` or `kind: {fields}`"
            if isinstance(item, dict) and len(item) > 1:
                keys = show_names(map(key_shown, item))
                message += f"; this entry has {len(item)} keys ({keys}): indent the fields under the kind"
            self.ev.error(message, LAYER_FORM, origin)
            return [(self.standin({}), origin, None)]
        kind, value = entry
        if kind == "repeat" and kind not in registry.KINDS and kind not in self.blocks:
            return self.flat_repeat(value, origin, path, index, scope, level)
        if not (isinstance(value, dict) and ("repeat" in value or "first" in value)):  # one copy, as written
            fields = _fields(self.ev, self.blocks, kind, value, origin)
            return [(self.one_layer(kind, fields, path + (index,), origin, scope, level), origin, kind)]
        fields, repeat, first = self.repeat_of(kind, value, origin, scope)
        repeated = isinstance(value, dict) and "repeat" in value
        results = []
        for copy in range(repeat):
            copy_fields = {**fields, **(first if copy == 0 and first else {})}
            copy_scope = Scope(scope, {"i": copy}) if repeated else scope
            numbered = repeat > 1 and "name" in fields and not is_template(fields["name"])  # a template names each
            if numbered and copy_fields.get("name") == fields["name"]:
                copy_fields["name"] = f"{fields['name']}{copy + 1}"
            at = path + (index + copy,)
            results.append((self.one_layer(kind, copy_fields, at, origin, copy_scope, level), origin, kind))
        return results

    def repeat_of(self, kind: str, value: Any, origin: Origin, scope):
        """(fields, copies, fields of the first copy) of a layer entry."""
        fields = _fields(self.ev, self.blocks, kind, value, origin)
        fields_origin = origin.at(kind)
        repeat = self.ev.count(fields.pop("repeat", 1), fields_origin, "repeat", scope, "repeat")
        first = fields.pop("first", None)
        if first is not None and not isinstance(first, dict):
            self.ev.error("first is a mapping of fields for the first copy", BAD_VALUE, fields_origin, ("first",))
            first = None
        return fields, repeat, first

    def flat_repeat(self, value: Any, origin: Origin, path: tuple, index: int, scope, level: int):
        """`- repeat: {times: n, layers: [...]}`: the layers n times over, spliced into the list they
        are in, so they are numbered on with their neighbours (VGG's features.0, features.1, ...).
        The var `index` (default i) is the copy's index; repeats nest, each with its own index."""
        form = _flat_form(self.ev, value, origin, scope)
        if form is None:
            return [(self.standin({}), origin, None)]
        times, name, items_origin = form
        results = []
        for copy in range(times):
            copy_scope = Scope(scope, {name: copy})
            before = len(results)
            for j, item in enumerate(value["layers"]):
                results += self.layer(item, items_origin.at(j), path, index + len(results), copy_scope, level)
            if len(results) == before:  # an empty copy counts as one layer: n of them take time too
                self.counts(1)
        return results

    def one_layer(self, kind: str, fields: dict, path: tuple, origin: Origin, scope, level: int) -> dict:
        if kind in self.blocks and kind not in registry.KINDS:
            return self.use_block(kind, fields, path, origin, scope, level)
        if level >= self.max_depth and any(k in CONTAINER_FIELDS and isinstance(v, list) for k, v in fields.items()):
            self.too_deep(origin)
            return self.standin({k: v for k, v in fields.items() if k == "name"})
        out = {"kind": kind}
        bound, fields_origin = self.ev.bound, None
        for key, value in fields.items():
            if type(value) is int and -bound < value < bound:  # what values() gives it, most fields
                out[key] = value
                continue
            if fields_origin is None:  # made only where a field needs it
                fields_origin = origin.at(kind)
            if key in CONTAINER_FIELDS and isinstance(value, list):
                child_origin = fields_origin.at(key)
                out[key] = self.layer_list(value, path + (kind, key), child_origin, scope, level + 1)
            elif key == "name":
                out[key] = self.ev.name_of(value, fields_origin, scope)
            elif key in ("from", "merge"):
                out[key] = value
            else:
                out[key] = self.ev.values(value, fields_origin, (key,), scope)
        # a dense block's layers are made by the shape stage, and count as well
        self.counts(1 + _counted_in_advance(kind, out))
        return out

    def apply_patch(self, data: dict, patch: Part, scope) -> None:
        if not isinstance(patch.value, dict):
            self.ev.error("override is a mapping of layer names to the fields to change", BAD_OVERRIDE, patch.origin)
            return
        named = dict(_named_layers(data.get("layers", []), ("layers",), ""))
        for target, changes in patch.value.items():
            where = Origin(patch.origin.doc, patch.origin.ypath + (target,))
            if target not in named:
                message = f'override: no layer named "{key_shown(target)}"{did_you_mean(target, named)}'
                self.ev.error(message, BAD_OVERRIDE, where, key=True)
                continue
            if not isinstance(changes, dict):
                self.ev.error(f"override of {target} is a mapping of fields to change", BAD_OVERRIDE, where)
                continue
            layer, path = named[target]
            if path in self.block_uses:  # its fields are the block's layers now, not the arguments written
                inner = [name for name in named if name.startswith(f"{target}.")][:3]
                self.ev.error(
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
                    layer[key] = self.ev.values(value, where, (key,), scope)

    def forget(self, prefix: tuple) -> None:
        """Drop what was recorded of the layers under `prefix`, which an override replaces."""
        for table in (self.origins, self.block_uses, self.block_args):
            for path in [p for p in table if p[: len(prefix)] == prefix]:
                del table[path]
        self.standins -= {p for p in self.standins if p[: len(prefix)] == prefix}


def _fields(ev: Evaluator, blocks: dict[str, Part], kind: str, value: Any, origin: Origin) -> dict:
    """The fields of an entry `kind: value`: a mapping as written, or a single value for the kind's
    primary field (a user block's first parameter)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return dict(value)
    known = registry.KINDS.get(kind)
    model = known.fields if known is not None else None
    if model is not None and model.primary is not None:
        return {model.primary: value}
    if kind in blocks:
        declared = blocks[kind].value.get("params") or {}
        if isinstance(declared, dict) and declared:
            return {next(iter(declared)): value}
    if known is not None or kind in blocks:  # an unknown kind is reported once, by validation
        message = f"{kind} takes no single value; give its fields as a mapping"
        ev.error(message, LAYER_FORM, origin.at(kind))
    return {}


def _flat_form(ev: Evaluator, value: Any, origin: Origin, scope):
    """(times, index name, where its layers are) of a flat repeat; None if it is malformed (reported)."""
    where = origin.at("repeat")
    form = "repeat takes {times: n, layers: [...]} (and index: a var name for the copy's index, default i)"
    if not isinstance(value, dict) or not isinstance(value.get("layers"), list) or "times" not in value:
        ev.error(form, LAYER_FORM, where)
        return None
    for extra in sorted(set(value) - {"times", "layers", "index"}, key=key_shown):
        ev.error(f'unknown field "{key_shown(extra)}" of repeat; {form}', UNKNOWN_FIELD, where, (extra,), key=True)
    times = ev.count(value["times"], where, "times", scope, "repeat's times")
    name = value.get("index", "i")
    if not is_identifier(name):
        ev.error(f"repeat's index must be a var name, got {show_value(name)}", BAD_VALUE, where, ("index",))
        name = "i"
    return times, name, where.at("layers")


def _site(item: Any, origin: Origin, blocks: dict) -> tuple[Origin, str]:
    """Where an entry that makes too many layers is shown, and what to call it: at its repeat count
    if it is repeated."""
    if isinstance(item, str):
        item = {item: None}
    if not (isinstance(item, dict) and len(item) == 1 and isinstance(next(iter(item)), str)):
        return origin, "this entry"
    kind, value = next(iter(item.items()))
    at = origin.at(kind)
    if kind == "repeat" and kind not in registry.KINDS and kind not in blocks:
        return at.at("times"), "this repeat"
    if isinstance(value, dict) and "repeat" in value:
        return at.at("repeat"), f"this {shorten(kind)}, repeated,"
    if kind in blocks and kind not in registry.KINDS:
        return origin, f"this use of block {shorten(kind)}"
    return origin, f"this {shorten(kind)}"


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
