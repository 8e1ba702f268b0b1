"""Stage 2: validate plain spec data with pydantic v2 into schema objects.

A layer is written `relu`, `linear: 10` (the kind's primary field) or `conv: {out: 6, kernel: 5}`.
expand.py rewrites those forms into `{"kind": ..., **fields}` so the validator can pick the kind by
its tag; `Expanded.locate` maps an error's `loc` back to a line and column.

One validator: pydantic-core, with a tagged union of the layer kinds a spec names, each by the
schema of its fields (fields.core_schema: written from a Fields declaration, or a plugin's pydantic
model's own). A spec validates into instances of the declarations, and its errors are translated
into located diagnostics here; a layer in error stands in as an identity, so that the shape stage
still checks every layer that does not depend on it.
"""

from __future__ import annotations

import difflib
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pydantic_core import PydanticCustomError, SchemaValidator, ValidationError
from pydantic_core import core_schema as cs

from .. import (
    kinds,  # noqa: F401  (registers the built-in kinds)
    registry,
)
from ..core.errors import (
    BAD_ARGUMENT,
    BAD_EXPRESSION,
    BAD_INPUT,
    BAD_NAME,
    BAD_VALUE,
    BLOCK_RECURSION,
    LAYER_FORM,
    LIMIT,
    MISSING_FIELD,
    UNKNOWN_FIELD,
    UNKNOWN_KIND,
    Diagnostic,
    SpecError,
    did_you_mean,
    in_file_order,
    show_value,
)
from ..core.errors import FORMAT_VERSION as FORMAT_VERSION_CODE
from ..kinds.layers import STANDIN
from ..kinds.structures import CONTAINER_FIELDS
from ..registry import fields
from ..registry.fields import (
    LAYER_REF,
    AnyLayer,
    Declaration,
    FormatVersion,
    InputShape,
    Name,
    Outputs,
    after,
    check_name,
    declared_fields,
    field,
)

if TYPE_CHECKING:
    from .expand import Expanded

FORMAT_VERSION = 1
_CONTAINERS = frozenset(CONTAINER_FIELDS)


class Spec(Declaration):
    """A validated spec: its own fields and its layers, each an instance of its kind's fields."""

    archspec: FormatVersion
    name: Name
    description: str | None = None
    input: InputShape
    layers: list[AnyLayer] = field(min_length=1)
    outputs: Outputs | None = None

    @after
    def _checks(self):
        if self.archspec != FORMAT_VERSION:
            raise PydanticCustomError(
                "format_version",
                "unsupported format version {v}; this archspec reads version {ok}",
                {"v": self.archspec, "ok": FORMAT_VERSION},
            )
        return self


def is_spec(value) -> bool:
    """Whether `value` is a validated spec."""
    return isinstance(value, Spec)


def validator(named: frozenset[str] | None = None) -> SchemaValidator:
    """The validator of specs whose layers are of the registered kinds among `named` (all of them
    when None; a kind it names that is not registered fails as "unknown layer kind" either way).
    Made for the kinds a spec uses: a union of every kind costs a check more than the spec's own."""
    chosen = set(registry.KINDS) if named is None else (set(registry.KINDS) & named) | {STANDIN}
    definitions, choices = [], {}
    for declared, names in _families().items():
        if chosen.isdisjoint(names):
            continue
        schema = fields.core_schema(declared, tuple(names))
        if schema["type"] != "definitions":  # (a plugin's model's may be: it holds refs of its own)
            definitions.append({**schema, "ref": f"archspec-kind-{len(definitions)}"})
            schema = cs.definition_reference_schema(definitions[-1]["ref"])
        choices.update({name: schema for name in names if name in chosen})
    union = {**cs.tagged_union_schema(choices, "kind"), "ref": LAYER_REF}
    return SchemaValidator(cs.definitions_schema(fields.declaration_schema(Spec), [union, *definitions]))


def _families() -> dict[type | None, list[str]]:
    """The registered kinds by their fields: kinds that share a declaration share one schema."""
    families: dict[type | None, list[str]] = {}
    for name, kind in registry.KINDS.items():
        families.setdefault(kind.fields, []).append(name)
    return families


def kinds_named(data: dict) -> frozenset[str]:
    """Every kind the layers of `data` name (expand.py's tagged layers): layers are found only in
    the spec's `layers` and in the CONTAINER_FIELDS of layers, where the validator looks for them."""
    found, lists = set(), [data.get("layers")]
    while lists:
        layers = lists.pop()
        if not isinstance(layers, list):
            continue
        for layer in layers:
            if isinstance(layer, dict):
                kind = layer.get("kind")
                if isinstance(kind, str):
                    found.add(kind)
                if not _CONTAINERS.isdisjoint(layer):
                    lists += [layer[name] for name in CONTAINER_FIELDS if name in layer]
    return frozenset(found)


def fields_of(kind: str) -> list[str]:
    """The fields a kind takes, as a user writes them."""
    return [f.written for f in declared_fields(registry.kind(kind).fields) if f.name != "kind"]


# ---------------------------------------------------------------- validation


def validate(expanded: Expanded) -> Spec:
    """The validated spec; `expanded` is the tagged data of expand.expand, which locates its nodes."""
    spec, errors, _ = validate_partially(expanded)
    if errors:
        raise SpecError(in_file_order(errors))
    return spec


# Expansion errors whose layer was replaced by a stand-in, or whose value fails validation below;
# after any other (a missing base, a bad override, a bad repeat) the spec's structure is unsure.
_STANDIN_CODES = {BAD_EXPRESSION, LAYER_FORM, BAD_ARGUMENT, BLOCK_RECURSION, LIMIT}


def validate_partially(expanded: Expanded) -> tuple[Any, list[Diagnostic], frozenset]:
    """(spec, errors, stand-ins): when layers are wrong, the spec has an identity in place of each,
    and stand-ins holds their paths, so the shape stage still checks every layer that does not
    depend on them. The spec is None when what is wrong leaves nothing to check (the input, say)."""
    errors = list(expanded.errors)
    if not isinstance(expanded.data, dict):
        return None, errors, frozenset()
    standins = set(expanded.standins)
    unsure = any(d.code not in _STANDIN_CODES for d in expanded.errors)
    check = validator(kinds_named(expanded.data))
    try:
        spec = check.validate_python(expanded.data)
        return (None if unsure else spec), errors, frozenset(standins)
    except ValidationError as exc:
        seen = {d.loc for d in errors}  # an expression already reported is not reported again as a bad value
        found = _misspelt_required(exc.errors(include_url=False))
        errors += [d for d in (_diagnostic(e, expanded) for e in found) if d.loc not in seen]
        data = _without_wrong_layers(expanded.data, found, standins)
    if data is None or unsure:
        return None, errors, frozenset()
    try:
        return check.validate_python(data), errors, frozenset(standins)
    except ValidationError:
        return None, errors, frozenset()


def _without_wrong_layers(data: dict, found: list[dict], standins: set) -> dict | None:
    """A copy of `data` with an identity in place of each layer an error is in (paths added to
    `standins`), or None when an error lies outside the layers in a way that matters to shapes."""
    patched = dict(data)
    for err in found:
        loc = tuple(err["loc"])
        if loc[:1] in (("name",), ("description",), ("outputs",)) or (
            len(loc) == 1 and err["type"] == "extra_forbidden"
        ):
            patched.pop(loc[0], None)
            patched.setdefault("name", "model")
            continue
        at = _innermost_layer(data, loc)
        if at is None:
            return None
        path, data_path = at
        parent = patched
        try:
            for key in data_path[:-1]:
                parent[key] = child = list(parent[key]) if isinstance(parent[key], list) else dict(parent[key])
                parent = child
            parent[data_path[-1]]
        except (KeyError, IndexError, TypeError):
            continue  # inside a layer an earlier error already stood in for
        wrong = parent[data_path[-1]]
        entry = registry.KINDS.get(wrong.get("kind"))
        if not (isinstance(entry, registry.LayerKind) and entry.keeps_shape):  # else its output shape is known
            standins.add(path)
        name = wrong.get("name")
        parent[data_path[-1]] = {"kind": STANDIN, **({"name": name} if _is_name(name) else {})}
    return patched


def _innermost_layer(data, loc: tuple) -> tuple[tuple, tuple] | None:
    """(its path as ir.resolve writes it, with kinds, and its path in `data`) of the innermost layer
    `loc` (pydantic's, with union tags) lies in; None if it lies in no layer."""
    node, path, data_path, found = data, (), (), None
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str) and part in node:
            if isinstance(node.get("kind"), str) and path and isinstance(path[-1], int):
                path += (node["kind"],)
            node, path, data_path = node[part], path + (part,), data_path + (part,)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node, path, data_path = node[part], path + (part,), data_path + (part,)
            if isinstance(node, dict):
                found = (path, data_path)
        # anything else is a kind or union tag of pydantic's
    return found


def _is_name(value) -> bool:
    try:
        check_name(value)
    except PydanticCustomError:
        return False
    return True


def _diagnostic(err: dict, doc: Expanded) -> Diagnostic:
    diagnostic = _describe_error(err, doc)
    return replace(diagnostic, notes=doc.notes(tuple(err["loc"])))


def _misspelt_required(errors: list[dict]) -> list[dict]:
    """Drop "needs the field kernel" where the same layer has the unknown field "kernal": one mistake."""
    missing = {(tuple(e["loc"][:-1]), e["loc"][-1]) for e in errors if e["type"] == "missing"}
    explained = set()
    for e in errors:
        if e["type"] == "extra_forbidden":
            layer = tuple(e["loc"][:-1])
            candidates = [field for at, field in missing if at == layer]
            match = difflib.get_close_matches(str(e["loc"][-1]), candidates, n=1, cutoff=0.6)
            explained |= {(layer, match[0])} if match else set()
    return [e for e in errors if not (e["type"] == "missing" and (tuple(e["loc"][:-1]), e["loc"][-1]) in explained)]


def _describe_error(err: dict, doc: Expanded) -> Diagnostic:
    loc, kind, ctx = tuple(err["loc"]), err["type"], err.get("ctx") or {}
    owner = _owner(loc)
    if kind == "union_tag_invalid":
        tag = ctx.get("tag")
        where = doc.locate(loc + (tag,), key=True)
        return Diagnostic(f"unknown layer kind {_quote(tag)}{did_you_mean(tag, registry.KINDS)}", UNKNOWN_KIND, where)
    if kind == "union_tag_not_found":
        return Diagnostic("a layer needs a kind", LAYER_FORM, doc.locate(loc))
    if kind == "extra_forbidden":
        field = loc[-1]
        fields = fields_of(owner) if owner else [f.written for f in declared_fields(Spec)]
        what = owner or "a spec"
        message = f"unknown field {_quote(field)} for {what}{did_you_mean(field, fields)}"
        return Diagnostic(message, UNKNOWN_FIELD, doc.locate(loc, key=True))
    if kind == "missing":
        return Diagnostic(
            f"{owner or 'the spec'} needs the field {_quote(loc[-1])}", MISSING_FIELD, doc.locate(loc[:-1])
        )
    if kind == "bad_name":
        return Diagnostic(f"invalid name: {err['msg']}", BAD_NAME, doc.locate(loc))
    if loc == ("input",) and kind == "bad_value":
        return Diagnostic(f"input: {err['msg']}", BAD_INPUT, doc.locate(loc))
    if kind == "format_version":
        return Diagnostic(err["msg"], FORMAT_VERSION_CODE, doc.locate(("archspec",)))
    field = loc[-1] if loc and isinstance(loc[-1], str) and loc[-1] not in registry.KINDS else None
    prefix = f"{owner}: " if owner else ""
    prefix += f"{field}: " if field else ""
    message = (
        err["msg"]
        if kind == "bad_value"
        else f"{err['msg'][0].lower()}{err['msg'][1:]}, got {show_value(err.get('input'))}"
    )
    return Diagnostic(prefix + message, BAD_VALUE, doc.locate(loc))


def _quote(value) -> str:
    if not isinstance(value, str):  # a key of a dict given as such: a number of any size, say
        return show_value(value)
    return '"' + value.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'


def _owner(loc: tuple) -> str | None:
    """The layer kind a pydantic `loc` is inside: the last tag in it."""
    for part in reversed(loc[:-1] if len(loc) > 1 else loc):
        if isinstance(part, str) and part in registry.KINDS:
            return part
    return loc[-1] if loc and loc[-1] in registry.KINDS else None
