"""The spec validator (schema.validator) against pydantic's own generation from the same declarations.

archspec writes the pydantic-core schema of each kind's Fields declaration itself (fields.core_schema)
and validates specs straight into instances of the declarations. Here pydantic makes models of the
same declarations (create_model, model_validator), joined in a discriminated union as a spec model:
the written schemas must be the ones pydantic generates, and both must accept, refuse and report
alike on every spec, every kind's cases and generated specs.
"""

from __future__ import annotations

import functools
import types
import typing
from pathlib import Path
from typing import Annotated, Literal, Union

import pydantic
import pytest
from conftest import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator
from pydantic_core import ValidationError
from test_layer_kinds import CASES

from archspec import registry
from archspec.frontend import validate as schema
from archspec.registry import fields
from archspec.frontend.expand import expand
from archspec.analyses.analyze import read

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
# pydantic before 2.6 cannot rebuild the reference's recursive models made by create_model (it
# raises AttributeError: __pydantic_parent_namespace__); archspec's own validator runs on 2.0 too.
REFERENCE = pytest.mark.skipif(
    tuple(int(part) for part in pydantic.VERSION.split(".")[:2]) < (2, 6),
    reason="pydantic < 2.6 cannot build the reference spec model",
)


# ---------------------------------------------------------------- the reference: pydantic's models


def _substitute(tp, layer):
    """`tp` with the AnyLayer marker replaced by `layer` (the union of the kinds' models)."""
    if tp is fields.AnyLayer:
        return layer
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        return Annotated[(_substitute(args[0], layer), *tp.__metadata__)]
    if origin in (Union, types.UnionType):
        return Union[tuple(_substitute(arg, layer) for arg in args)]  # noqa: UP007
    if origin is list:
        return list[_substitute(args[0], layer)]
    return tp


def pydantic_model(declared: type, tags: tuple[str, ...] = (), layer=None) -> type[BaseModel]:
    """The pydantic model of a Fields declaration, made by pydantic from the same fields and validators."""
    found = {}
    for f in fields.declared_fields(declared):
        default = {} if f.required else {"default": f.default}
        info = Field(**default, alias=f.alias, min_length=f.min_length)
        found[f.name] = (_substitute(f.annotation, layer), info)
    if tags and "kind" not in found:
        found["kind"] = (Literal[tags], ...)
    validators = {
        name: model_validator(mode="after")(value)
        for cls in reversed(declared.__mro__)
        for name, value in vars(cls).items()
        if getattr(value, "__archspec_after__", False)
    }
    config = ConfigDict(extra="forbid", frozen=True, title=declared.__name__)
    return create_model(declared.__name__, __config__=config, __validators__=validators, __module__=__name__, **found)


def spec_model(named: frozenset[str] | None = None) -> type[BaseModel]:
    """The spec as one pydantic model: a discriminated union of the kinds' models among `named`."""
    chosen = set(registry.KINDS) if named is None else (set(registry.KINDS) & named) | {"identity"}
    families: dict = {}
    for name, kind in registry.KINDS.items():
        families.setdefault(kind.fields, []).append(name)
    forward = typing.ForwardRef("AnyLayer")  # resolved in this module, once the union is made
    globals().pop("AnyLayer", None)  # (not to another spec model's union, made before)
    models = [
        pydantic_model(declared or fields.Fields, tuple(names), forward)
        for declared, names in families.items()
        if chosen.intersection(names)
    ]
    global AnyLayer
    AnyLayer = Annotated[Union[tuple(models)], Field(discriminator="kind")]  # noqa: UP007
    for model in models:
        model.model_rebuild(force=True)
    return pydantic_model(schema.Spec, layer=AnyLayer)


def plain(value):
    """A validated value as plain data: a declaration's or a model's fields by name, recursively, each
    scalar with its type (1, 1.0 and True are equal in Python, not as a layer's fields)."""
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [plain(v) for v in value])
    if isinstance(value, (BaseModel, fields.Declaration)):
        names = {f.name for f in fields.declared_fields(type(value))} | {n for n in ("kind",) if hasattr(value, n)}
        if isinstance(value, BaseModel):
            names = set(type(value).model_fields)
        return {name: plain(getattr(value, name)) for name in sorted(names)}
    return (type(value).__name__, value)


def outcome(validate, data):
    try:
        return "valid", plain(validate(data))
    except ValidationError as exc:
        # a union's members are labelled by their schemas in an error's place, which name the models
        # (`list[tagged-union[Conv,...]]`) or not: the labels alone may differ
        return "invalid", sorted(
            (tuple(str(p) for p in e["loc"] if "[" not in str(p)), e["type"], e["msg"]) for e in exc.errors()
        )


def both(data, named=None):
    """(archspec's validator's outcome, the pydantic spec model's outcome) of validating `data`."""
    written = schema.validator(named)
    return outcome(written.validate_python, data), outcome(spec_model(named).model_validate, data)


# ---------------------------------------------------------------- the schemas and fields


def _declared(structures: bool) -> list[str]:
    return sorted(
        name
        for name, kind in registry.KINDS.items()
        if isinstance(kind.fields, type)
        and issubclass(kind.fields, fields.Fields)
        and (structures or not isinstance(kind, registry.Structure))
    )


_IMPLIED = {"custom_init": False, "root_model": False, "computed_fields": []}  # pydantic-core's defaults


def _comparable(schema_: dict, definitions: dict | None = None) -> dict:
    """A model's core schema without what names the class it makes (a declaration, or its model),
    what only serialization and JSON Schema read, and what pydantic-core takes as read when absent;
    definitions inlined (older pydantic wraps a model's schema in them)."""
    if isinstance(schema_, dict) and schema_.get("type") == "definitions":
        known = {d["ref"]: d for d in schema_["definitions"]}
        return _comparable(known.get(schema_["schema"].get("schema_ref"), schema_["schema"]))
    if isinstance(schema_, dict):
        drop = ("cls", "ref", "metadata", "serialization", "json_schema_input_schema")
        return {
            key: _comparable(value)
            for key, value in schema_.items()
            if key not in drop and not (key in _IMPLIED and value == _IMPLIED[key])
        }
    if isinstance(schema_, list):
        return [_comparable(value) for value in schema_]
    return schema_


@pytest.mark.parametrize("name", _declared(structures=False))
def test_each_kinds_written_schema_is_the_one_pydantic_generates_for_its_fields(name):
    """The schema a layer is validated with is the one pydantic generates for a model of the same
    fields, but for the class it makes; the fields in the declaration's order."""
    declared = registry.kind(name).fields
    tags = tuple(n for n, k in registry.KINDS.items() if k.fields is declared)
    written = fields.core_schema(declared, tags)
    model = pydantic_model(declared, tags)
    assert _comparable(written) == _comparable(model.__pydantic_core_schema__)
    inner = written
    while inner["type"] != "model":
        inner = inner["schema"]
    assert inner["cls"] is declared
    assert list(inner["schema"]["fields"]) == list(model.model_fields)


@pytest.mark.parametrize("name", _declared(structures=True))
def test_each_kinds_defaults_are_its_models(name):
    declared = registry.kind(name).fields
    model = pydantic_model(declared, layer=typing.Any)
    expected = {
        field: info.default
        for field, info in model.model_fields.items()
        if not info.is_required() and field not in ("kind", *fields.LAYER_FIELDS)
    }
    assert fields.defaults_of(declared) == expected == fields.defaults_of(model)


# ---------------------------------------------------------------- the same values on every spec and case


@REFERENCE
@pytest.mark.parametrize("source", [pytest.param(p, id=p.stem) for p in SPECS] + CASES)
def test_every_spec_and_case_validates_to_the_same_values(source):
    expanded = expand(read(source))
    written, model = both(expanded.data, schema.kinds_named(expanded.data))
    assert written[0] == "valid" and written == model
    spec, errors, _ = schema.validate_partially(expanded)
    assert type(spec) is schema.Spec and not errors


def test_a_plugins_pydantic_model_validates_in_the_same_validator():
    from archspec.kinds.layers import same_shape

    class Clip(fields.Layer):
        kind: Literal["clip_model"]
        low: int = 0

        @model_validator(mode="after")
        def _fine(self):
            return self

    registry.register(registry.LayerKind("clip_model", "a test kind", Clip, same_shape, lambda op: None))
    try:
        data = {"archspec": 1, "name": "n", "input": [3, 4], "layers": [{"clip_model": {"low": 2}}, "relu"]}
        spec, errors, _ = schema.validate_partially(expand(read(data)))
        assert isinstance(spec.layers[0], Clip) and spec.layers[0].low == 2 and not errors
        bad = {**data, "layers": [{"clip_model": {"low": "two", "hgh": 1}}]}
        with pytest.raises(Exception) as caught:
            schema.validate(expand(read(bad)))
        messages = [d.message for d in caught.value.diagnostics]
        assert 'unknown field "hgh" for clip_model' in messages[1]
        assert messages[0].startswith("clip_model: low: input should be a valid integer")
    finally:
        registry.unregister("clip_model")


# ---------------------------------------------------------------- generated layers

VALUES = [0, 1, 2, 3, -1, 0.5, 1.5, 1e-5, True, False, None, "same", "valid", "relu", "gelu", "nearest", "bilinear",
          "auto", "identity", "sum", "concat", "x", "a-1", "class", [1, 2], [2, 2, 2], [1, 2, 3, 4], [0, 2, 1], [],
          [0.5, 0.25], {"a": 1}, 10**70, float("inf")]  # fmt: skip
KINDS = sorted(registry.KINDS)


def _fields_of(kind: str) -> list[str]:
    return schema.fields_of(kind) + ["name", "from", "merge", "bogus"]


@st.composite
def layers(draw, depth: int = 0):
    kind = draw(st.sampled_from(KINDS + ["unknown"]))
    names = _fields_of(kind) if kind in registry.KINDS else ["x"]
    layer = {"kind": kind, **draw(st.dictionaries(st.sampled_from(names), st.sampled_from(VALUES), max_size=4))}
    for container in schema.CONTAINER_FIELDS:
        if container in names and depth < 2 and draw(st.booleans()):
            layer[container] = draw(st.lists(layers(depth + 1), max_size=3))
    if draw(st.integers(0, 9)) == 0:
        del layer["kind"]
    return layer


@functools.cache  # when the test draws, not when a worker collects
def written_layers() -> list[dict]:
    """Every layer of the specs and the kinds' cases, as expansion tags them: valid layers to mutate."""
    found, lists = [], [expand(read(source)).data["layers"] for source in SPECS[::4] + [c.values[0] for c in CASES]]
    while lists:
        for layer in lists.pop():
            found.append(layer)
            lists += [layer[c] for c in schema.CONTAINER_FIELDS if isinstance(layer.get(c), list)]
    return found


@st.composite
def mutated_layers(draw):
    """A layer written in a spec or case, with none, one or two of its fields changed or dropped."""
    layer = dict(draw(st.sampled_from(written_layers())))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        field = draw(st.sampled_from(_fields_of(layer["kind"])))
        if draw(st.booleans()):
            layer[field] = draw(st.sampled_from(VALUES))
        else:
            layer.pop(field, None)
    return layer


@st.composite
def specs(draw):
    layer = st.one_of(mutated_layers(), mutated_layers(), mutated_layers(), layers())
    some_layers = st.lists(layer, min_size=1, max_size=4)
    data = {"archspec": 1, "name": "n", "input": [3, 8, 8], "layers": draw(some_layers)}
    if draw(st.integers(0, 4)) == 0:
        data[draw(st.sampled_from(["archspec", "name", "description", "input", "layers", "extra"]))] = draw(
            st.sampled_from(VALUES)
        )
    return data


@REFERENCE
@settings(max_examples=examples(500), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_generated_specs_are_valid_and_invalid_alike_with_the_same_values_and_errors(data):
    """Whatever a spec holds, archspec's validator accepts it exactly when pydantic's spec model
    does, with the same values; and it refuses it with the same errors."""
    written, model = both(data)
    assert written == model
