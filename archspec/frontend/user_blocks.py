"""A spec's own blocks (`blocks:`): their definitions, their parameters, and the scope the body of
each use is expanded in (the spec's vars, then the block's parameters with the use's arguments)."""

from __future__ import annotations

from typing import Any

from .. import registry
from ..core.errors import BAD_ARGUMENT, BAD_BLOCK, did_you_mean, show_names, show_value
from ..kinds.structures import RESIDUAL
from .scope import Evaluator, Origin, Part, Scope, is_identifier, key_shown

PARAM_TYPES = {"int": int, "float": float, "bool": bool}
REQUIRED = object()  # a parameter's default when it has none
Params = dict[str, tuple[type | None, Any, Origin]]  # name -> (type, default or REQUIRED, where it is declared)


def definitions(ev: Evaluator, value: Any, origin: Origin, blocks: dict[str, Part]) -> None:
    """Add the well-formed blocks of a `blocks:` mapping to `blocks`; report the others."""
    if not isinstance(value, dict):
        ev.error("blocks is a mapping of block names to {params, layers}", BAD_BLOCK, origin)
        return
    for name, definition in value.items():
        where = origin.at(name)
        if not is_identifier(name):
            message = f"a block name must be an ASCII identifier and not a Python keyword, not {show_value(name)}"
            ev.error(message, BAD_BLOCK, where, key=True)
        elif name in registry.KINDS:
            ev.error(f'"{name}" is a built-in layer kind; give the block another name', BAD_BLOCK, where, key=True)
        elif not (isinstance(definition, dict) and isinstance(definition.get("layers"), list) and definition["layers"]):
            ev.error(f"block {name} needs a non-empty list of layers", BAD_BLOCK, where)
        elif set(definition) - {"params", "layers", "description"}:
            extra = key_shown(sorted(set(definition) - {"params", "layers", "description"}, key=key_shown)[0])
            message = f'unknown field "{extra}" in block {name}; a block has params and layers'
            ev.error(message, BAD_BLOCK, where, (extra,), key=True)
        else:
            blocks[name] = Part(definition, where)


def params(ev: Evaluator, block: str, definition: Part) -> Params:
    declared = definition.value.get("params") or {}
    result: Params = {}
    if not isinstance(declared, dict):
        message = f"params of block {block} is a mapping of names to a type or a default"
        ev.error(message, BAD_BLOCK, definition.origin, ("params",))
        return result
    for name, spec in declared.items():
        where = definition.origin.at("params", name)
        if not is_identifier(name):
            message = f"a parameter name must be an ASCII identifier and not a Python keyword, not {show_value(name)}"
            ev.error(message, BAD_BLOCK, where, key=True)
        elif spec is None:  # `params: {out}`: YAML reads a bare key as null
            message = f'parameter "{name}" of block {block} needs a type ({", ".join(PARAM_TYPES)}) or a default value'
            ev.error(message, BAD_BLOCK, where, key=True)
            result[name] = (None, REQUIRED, where)  # so its uses are not blamed as well
        elif isinstance(spec, str) and spec in PARAM_TYPES:
            result[name] = (PARAM_TYPES[spec], REQUIRED, where)
        elif isinstance(spec, dict) and spec.get("type") in PARAM_TYPES and set(spec) <= {"type", "default"}:
            result[name] = (PARAM_TYPES[spec["type"]], spec.get("default", REQUIRED), where)
        else:
            result[name] = (None, spec, where)  # a default; its type is the default's
    return result


def use_scope(ev: Evaluator, kind: str, definition: Part, fields: dict, origin: Origin, scope):
    """(parameters, own fields, the scope of the body) of a use of block `kind`: the spec's vars,
    then the block's parameters. The scope is None when the use is wrong (reported: the body
    would only repeat the argument errors)."""
    declared = params(ev, kind, definition)
    arg_origin = origin.at(kind)
    own = {k: fields.pop(k) for k in ("name", "from", "merge") if k in fields}
    if "name" in own:
        own["name"] = ev.name_of(own["name"], arg_origin, scope)
    errors_before = len(ev.errors)
    for unknown in [k for k in fields if k not in declared]:
        message = (
            f'block {kind} has no parameter "{key_shown(unknown)}"{did_you_mean(unknown, declared)}'
            f" (parameters: {show_names(declared) or 'none'})"
        )
        ev.error(message, BAD_ARGUMENT, arg_origin, (unknown,), key=True)
    body_scope = Scope(scope, {})
    for name, (kind_type, default, where) in declared.items():
        if name in fields:
            value = ev.values(fields[name], arg_origin, (name,), scope)
            value_origin, rest = arg_origin, (name,)
        elif default is REQUIRED:
            ev.error(f'block {kind} needs the argument "{name}"', BAD_ARGUMENT, arg_origin)
            value, value_origin, rest = 1, arg_origin, ()
        else:
            value = ev.values(default, where, (), body_scope)
            value_origin, rest = where, ()
        if kind_type is not None and not _has_type(value, kind_type):
            message = f'argument "{name}" of block {kind} must be {kind_type.__name__}, got {show_value(value)}'
            ev.error(message, BAD_ARGUMENT, value_origin, rest)
        body_scope[name] = value
    return declared, own, None if len(ev.errors) > errors_before else body_scope


def fewest_layers(blocks: dict[str, Part], kind: str, depth: int, known: dict) -> int:
    """The fewest layers a right use of block `kind` makes, `depth` levels of nesting left, from the
    form of its layers alone: literal counts only (an expression counts none), a use of a block with
    parameters as one layer. Blocks that use one another twice over (2**60 layers in 60 lines) are
    refused before any layer is made. `known`, this expansion's, holds what is counted; a block being
    counted (a cycle, which expansion reports) counts none."""
    if depth <= 0:
        return 0
    if (kind, depth) not in known:
        known[kind, depth] = 0
        layers = blocks[kind].value["layers"]
        inner = sum(_fewest_of(blocks, item, depth - 1, known) for item in layers)
        known[kind, depth] = inner + (0 if one_residual(layers) else 1)  # the group around them
    return known[kind, depth]


def _fewest_of(blocks: dict[str, Part], item: Any, depth: int, known: dict) -> int:
    if isinstance(item, str):
        item = {item: None}
    if not (isinstance(item, dict) and len(item) == 1 and isinstance(next(iter(item)), str)):
        return 1  # a stand-in for it
    kind, value = next(iter(item.items()))
    if kind == "repeat" and kind not in registry.KINDS and kind not in blocks:
        times, items = (value.get("times"), value.get("layers")) if isinstance(value, dict) else (None, None)
        if type(times) is not int or times < 0 or not isinstance(items, list):
            return 0
        return times * max(1, sum(_fewest_of(blocks, inner, depth, known) for inner in items))
    copies = value.get("repeat", 1) if isinstance(value, dict) else 1
    if type(copies) is not int or copies < 0:
        return 0
    plain_use = kind in blocks and kind not in registry.KINDS and value is None and not blocks[kind].value.get("params")
    return copies * (fewest_layers(blocks, kind, depth, known) if plain_use else 1)


def one_residual(layers: list) -> bool:
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
    return isinstance(value, (int, float)) and not isinstance(value, bool)
