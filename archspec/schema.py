"""Stage 2: validate plain spec data with pydantic v2 into schema objects.

A layer is written `relu`, `linear: 10` (the kind's primary field) or `conv: {out: 6, kernel: 5}`.
expand.py rewrites those forms into `{"kind": ..., **fields}` so pydantic can pick the model by
its discriminator; `Expanded.locate` maps pydantic's error `loc` back to a line and column.

Two validators, one declaration of the fields (archspec/kinds/ declares each kind's on a plain
`fields.Fields` class). The quick one, `record_validator`, is pydantic-core with a schema written
from the declarations (fields.record_schema): a valid spec becomes instances of them, and no pydantic
model is made. The spec model, `spec_model`, is the pydantic models of the same declarations in one
discriminated union, tagged with the kinds that share each; it validates what the quick one refuses,
and its errors are the ones reported. Both are assembled from the registry for the kinds a spec
names, on first use and again after a plugin registers a kind.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union, get_args

from pydantic_core import PydanticCustomError, SchemaValidator, ValidationError

from . import (
    fields,
    kinds,  # noqa: F401  (registers the built-in kinds)
    registry,
)
from .errors import (
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
from .errors import (
    FORMAT_VERSION as FORMAT_VERSION_CODE,
)
from .fields import (
    LAYER_REF,
    Activation,
    Bool,
    Declaration,
    Fields,
    Name,
    Plain,
    _input_shape,
    _int_at_least,
    _name,
    _show,
    after,
    field,
    model_of,
    record_schema,
)

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .expand import Expanded

    Spec = BaseModel

FORMAT_VERSION = 1
CONTAINER_FIELDS = ("layers", "body", "shortcut")  # fields that hold lists of layers
_CONTAINERS = frozenset(CONTAINER_FIELDS)
# `AnyLayer`, the union of every registered kind's model, is a module global set by _assemble; the
# container fields below name it before it exists, so pydantic resolves it at assembly.


class Group(Fields):
    primary: ClassVar = "layers"
    kind: Literal["group"]
    layers: list[AnyLayer] = field(min_length=1)


class Residual(Fields):
    kind: Literal["residual"]
    body: list[AnyLayer] = field(min_length=1)
    shortcut: Literal["auto", "identity"] | list[AnyLayer] = "auto"
    shortcut_name: Name = "shortcut"
    activation: Activation | None = "relu"
    shortcut_first: Bool = False  # register the shortcut before the body: its keys come first (RegNet's proj, f)


registry.register(registry.Structure("group", "a named sequence: its name prefixes its layers' names", Group))
registry.register(
    registry.Structure(
        "residual",
        "activation(body(x) + shortcut(x)); the shortcut is auto (identity or a 1x1 projection), "
        "identity, or a list of layers",
        Residual,
    )
)


class SpecFields(Declaration):
    """A spec's own fields; `Spec` is their pydantic model, and the spec model adds `layers` from
    the registry (_assemble)."""

    archspec: Annotated[int, Plain(_int_at_least(1))]
    name: Name
    description: str | None = None
    input: Annotated[tuple, Plain(_input_shape)]

    @after
    def _checks(self):
        if self.archspec != FORMAT_VERSION:
            raise PydanticCustomError(
                "format_version",
                "unsupported format version {v}; this archspec reads version {ok}",
                {"v": self.archspec, "ok": FORMAT_VERSION},
            )
        return self


def __getattr__(name: str):
    if name == "Spec":  # the base of every spec model: made when first asked for, as the kinds' models
        return model_of(SpecFields, "Spec")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_spec(value) -> bool:
    """Whether `value` is a validated spec model's instance (without making the model to ask)."""
    made = fields._MODELS.get(SpecFields)
    return made is not None and isinstance(value, made)


def _for_kinds(made: dict, named: frozenset[str] | None, make):
    """`make(kinds)`, once per registry state, for the registered kinds among `named` (all of them
    when None). Building a kind's schema is most of what validation costs a short-lived `check`, so
    a spec is validated by a validator of the kinds it uses: a kind it names that is not registered
    fails the same way either way ("unknown layer kind")."""
    registered = frozenset(registry.KINDS)
    chosen = registered if named is None else (registered & named) | {"identity"}  # identity: stand-ins
    key = (registry.version(), chosen)
    if key not in made:
        if len(made) > 16:
            made.clear()
        made[key] = make(chosen)
    return made[key]


_assembled: dict[tuple, type[Spec]] = {}
_validators: dict[tuple, SchemaValidator | None] = {}


def spec_model(named: frozenset[str] | None = None) -> type[Spec]:
    """The spec model (pydantic) for the registered kinds among `named` (all of them when None)."""
    return _for_kinds(_assembled, named, _assemble)


def record_validator(named: frozenset[str] | None = None) -> SchemaValidator | None:
    """The quick path's validator for the registered kinds among `named`: the spec model's schema,
    written from the declarations (fields.record_schema), validating into instances of them; no
    pydantic model is made. None where a kind's fields are a pydantic model or say what
    record_schema does not write: the spec model validates those specs."""
    return _for_kinds(_validators, named, _record_validator)


def _record_validator(chosen: frozenset[str]) -> SchemaValidator | None:
    definitions, choices = [], {}
    for declared, names in _families().items():
        if not chosen.intersection(names):
            continue
        if declared is not None and not issubclass(declared, Declaration):
            return None  # a plugin's pydantic model
        schema = record_schema(declared or Fields, tuple(names))
        if schema is None:
            return None
        ref = f"archspec-kind-{len(definitions)}"
        definitions.append({**schema, "ref": ref})
        choices.update({name: {"type": "definition-ref", "schema_ref": ref} for name in names})
    layers = {"type": "list", "items_schema": {"type": "definition-ref", "schema_ref": LAYER_REF}, "min_length": 1}
    spec = record_schema(SpecFields, more={"layers": {"type": "model-field", "schema": layers, "metadata": {}}})
    union = {"type": "tagged-union", "choices": choices, "discriminator": "kind", "ref": LAYER_REF}
    try:
        return SchemaValidator({"type": "definitions", "schema": spec, "definitions": [union, *definitions]})
    except Exception:  # a pydantic-core of another version may want another form: the spec model then
        return None


def _families() -> dict[type | None, list[str]]:
    """The registered kinds by their fields: kinds that share a declaration share one model."""
    families: dict[type | None, list[str]] = {}
    for name, kind in registry.KINDS.items():
        families.setdefault(kind.fields, []).append(name)
    return families


def _kinds_named(data: dict) -> frozenset[str]:
    """Every kind the layers of `data` name (expand.py's tagged layers): layers are found only in
    the spec's `layers` and in the CONTAINER_FIELDS of layers, where the spec model looks for them."""
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


def _assemble(chosen: frozenset[str]) -> type[Spec]:
    global AnyLayer
    from pydantic import Field, create_model

    # The union's members are the kinds' own models, built (once) at first use; group and residual,
    # whose fields hold layers, cannot be built before the union exists, so the spec model builds
    # them inline. Kinds without fields share one model.
    globals().pop("AnyLayer", None)
    models = [_tagged(declared, names) for declared, names in _families().items() if chosen.intersection(names)]
    AnyLayer = Annotated[Union[tuple(models)], Field(discriminator="kind")]  # noqa: UP007
    return create_model(
        "Spec",
        __base__=model_of(SpecFields, "Spec"),
        __module__=__name__,
        layers=(list[AnyLayer], Field(min_length=1)),
        __config__=None,
    )


def _tagged(declared: type | None, names: list[str]) -> type:
    """The model of the kinds `names`: their fields' model if it declares `kind: Literal[...]`
    naming them (every built-in does), else that model (or no fields) made to."""
    from pydantic import create_model

    # A structure's model resolves `AnyLayer` when it is made: made here, with none bound, it takes
    # this spec model's union; one made earlier (kind.model) may hold another spec model's.
    structure = any(isinstance(registry.KINDS[name], registry.Structure) for name in names)
    fields = model_of(declared, fresh=structure)
    declared = fields.model_fields.get("kind") if fields is not None else None
    if declared is not None:
        if set(get_args(declared.annotation)) != set(names):
            raise TypeError(f"{fields.__name__}.kind names {get_args(declared.annotation)}, registered as {names}")
        return fields
    return create_model(
        fields.__name__ if fields else "No",
        __base__=fields or model_of(Fields),
        __module__=__name__,
        kind=(Literal[tuple(names)], ...),
    )


def fields_of(kind: str) -> list[str]:
    """The fields a kind takes, as a user writes them."""
    model = registry.kind(kind).model
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items() if name != "kind"]


# ---------------------------------------------------------------- validation


def validate(expanded: Expanded) -> Spec:
    """The validated spec, a pydantic model; `expanded` is the tagged data of expand.expand, which
    locates its nodes."""
    spec, errors, _ = validate_partially(expanded, quick=False)
    if errors:
        raise SpecError(in_file_order(errors))
    return spec


# Expansion errors whose layer was replaced by a stand-in, or whose value fails validation below;
# after any other (a missing base, a bad override, a bad repeat) the spec's structure is unsure.
_STANDIN_CODES = {BAD_EXPRESSION, LAYER_FORM, BAD_ARGUMENT, BLOCK_RECURSION, LIMIT}


def validate_partially(expanded: Expanded, quick: bool = True) -> tuple[Any, list[Diagnostic], frozenset]:
    """(spec, errors, stand-ins): when layers are wrong, the spec has an identity in place of each,
    and stand-ins holds their paths, so the shape stage still checks every layer that does not
    depend on them. The spec is None when what is wrong leaves nothing to check (the input, say).

    `quick`: a spec that is valid is validated into instances of the declarations (record_validator),
    which the later stages read alike; anything else, by the spec model, whose errors are reported."""
    errors = list(expanded.errors)
    if not isinstance(expanded.data, dict):
        return None, errors, frozenset()
    standins = set(expanded.standins)
    unsure = any(d.code not in _STANDIN_CODES for d in expanded.errors)
    named = _kinds_named(expanded.data)
    validator = record_validator(named) if quick else None
    if validator is not None:
        try:
            spec = validator.validate_python(expanded.data)
        except ValidationError:
            pass  # the spec model says what is wrong, as it always has
        else:
            return (None if unsure else spec), errors, frozenset(standins)
    model = spec_model(named)
    try:
        spec = model.model_validate(expanded.data)
        return (None if unsure else spec), errors, frozenset(standins)
    except ValidationError as exc:
        seen = {d.loc for d in errors}  # an expression already reported is not reported again as a bad value
        found = _misspelt_required(exc.errors(include_url=False))
        errors += [d for d in (_diagnostic(e, expanded) for e in found) if d.loc not in seen]
        data = _without_wrong_layers(expanded.data, found, standins)
    if data is None or unsure:
        return None, errors, frozenset()
    try:
        return model.model_validate(data), errors, frozenset(standins)
    except ValidationError:
        return None, errors, frozenset()


def _without_wrong_layers(data: dict, found: list[dict], standins: set) -> dict | None:
    """A copy of `data` with an identity in place of each layer an error is in (paths added to
    `standins`), or None when an error lies outside the layers in a way that matters to shapes."""
    patched = dict(data)
    for err in found:
        loc = tuple(err["loc"])
        if loc[:1] in (("name",), ("description",)) or (len(loc) == 1 and err["type"] == "extra_forbidden"):
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
        standins.add(path)
        wrong = parent[data_path[-1]]
        name = wrong.get("name")
        parent[data_path[-1]] = {"kind": "identity", **({"name": name} if _is_name(name) else {})}
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
        _name(value)
    except PydanticCustomError:
        return False
    return True


def _diagnostic(err: dict, doc: Expanded) -> Diagnostic:
    diagnostic = _describe_error(err, doc)
    return replace(diagnostic, notes=doc.notes(tuple(err["loc"])))


def _misspelt_required(errors: list[dict]) -> list[dict]:
    """Drop "needs the field kernel" where the same layer has the unknown field "kernal": one mistake."""
    import difflib

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
        fields = fields_of(owner) if owner else [*model_of(SpecFields, "Spec").model_fields, "layers"]
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
        err["msg"] if kind == "bad_value" else f"{err['msg'][0].lower()}{err['msg'][1:]}, got {_show(err.get('input'))}"
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
