"""The quick path of validation (schema.record_validator) against the spec model (pydantic).

A valid spec is validated by pydantic-core into instances of the kinds' declarations, with a schema
written from them (fields.record_schema), so that `check` makes no pydantic model at all; a spec the
quick validator refuses is validated again by the spec model, whose errors are reported. So the
quick path must accept what the spec model accepts, with the same values, and refuse what it
refuses: these tests compare the two on every spec, every kind's cases and generated specs.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

import pytest
from conftest import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic_core import ValidationError
from test_layer_kinds import CASES

from archspec import fields, registry, schema
from archspec.expand import expand
from archspec.pipeline import read

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


def plain(value):
    """A validated value as plain data: a record's or a model's fields by name, recursively, each
    scalar with its type (1, 1.0 and True are equal in Python, not as a layer's fields)."""
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [plain(v) for v in value])
    if isinstance(value, (BaseModel, fields.Declaration)):
        names = set(fields.field_names(type(value))) | {n for n in ("kind", "layers") if hasattr(value, n)}
        return {name: plain(getattr(value, name)) for name in sorted(names)}
    return (type(value).__name__, value)


def outcome(validate, data):
    try:
        return "valid", plain(validate(data))
    except ValidationError as exc:
        # a union's members are labelled by their schemas in an error's place, which name the models
        # (`list[tagged-union[Conv,...]]`) or not: the labels alone may differ
        return "invalid", sorted(
            (tuple(str(p) for p in e["loc"] if "[" not in str(p)), e["type"]) for e in exc.errors()
        )


def both(data, named=None):
    """(quick path's outcome, spec model's outcome) of validating `data`."""
    quick = schema.record_validator(named)
    assert quick is not None, "the quick path was not taken"
    return outcome(quick.validate_python, data), outcome(schema.spec_model(named).model_validate, data)


# ---------------------------------------------------------------- the schemas and fields


def _declared(structures: bool) -> list[str]:
    return sorted(
        name
        for name, kind in registry.KINDS.items()
        if isinstance(kind.fields, type)
        and issubclass(kind.fields, fields.Fields)
        and (structures or not isinstance(kind, registry.Structure))
    )


def _comparable(schema_: dict) -> dict:
    """A model's core schema without what names the class it makes (a declaration, or its model),
    and what only serialization and JSON Schema read."""
    if isinstance(schema_, dict):
        drop = ("cls", "ref", "metadata", "serialization", "json_schema_input_schema")
        return {key: _comparable(value) for key, value in schema_.items() if key not in drop}
    if isinstance(schema_, list):
        return [_comparable(value) for value in schema_]
    return schema_


@pytest.mark.parametrize("name", _declared(structures=False))
def test_each_kinds_record_schema_is_the_one_pydantic_generates_for_its_model(name):
    """The schema the quick path validates a layer with is the one pydantic generates for its model,
    but for the class it makes; the fields in the model's order."""
    declared = registry.kind(name).fields
    tags = tuple(n for n, k in registry.KINDS.items() if k.fields is declared)
    model = fields.model_of(declared)
    # a declaration without `kind` (InPlace, shared by the activations) is tagged by the spec model
    record = fields.record_schema(declared, tags if "kind" in model.model_fields else ())
    model.model_rebuild()
    assert record is not None
    assert _comparable(record) == _comparable(model.__pydantic_core_schema__)
    inner = record
    while inner["type"] != "model":
        inner = inner["schema"]
    assert inner["cls"] is declared
    assert list(inner["schema"]["fields"]) == list(model.model_fields)


@pytest.mark.parametrize("name", _declared(structures=True))
def test_each_kinds_field_names_and_defaults_are_its_models(name):
    declared = registry.kind(name).fields
    model = fields.model_of(declared)
    assert fields.field_names(declared) == tuple(model.model_fields)
    expected = {
        field: info.default
        for field, info in model.model_fields.items()
        if not info.is_required() and field not in ("kind", *fields.LAYER_FIELDS)
    }
    assert fields.defaults_of(declared) == expected == fields.defaults_of(model)


# ---------------------------------------------------------------- the same values on every spec and case


@pytest.mark.parametrize("source", [pytest.param(p, id=p.stem) for p in SPECS] + CASES)
def test_every_spec_and_case_validates_to_the_same_values(source):
    expanded = expand(read(source))
    quick, model = both(expanded.data, schema._kinds_named(expanded.data))
    assert quick[0] == "valid" and quick == model
    spec, errors, _ = schema.validate_partially(expanded)
    assert type(spec) is schema.SpecFields and not errors


def test_a_plugins_pydantic_model_takes_the_spec_model_path(tmp_path):
    from pydantic import model_validator

    from archspec.kinds.layers import same_shape

    class Clip(fields.Layer):
        kind: Literal["clip_model"]
        low: int = 0

        @model_validator(mode="after")
        def _fine(self):
            return self

    registry.register(registry.LayerKind("clip_model", "a test kind", Clip, same_shape, lambda op: None))
    try:
        assert schema.record_validator(frozenset({"clip_model"})) is None
        assert schema.record_validator(frozenset({"conv"})) is not None
        data = {"archspec": 1, "name": "n", "input": [3, 4], "layers": [{"clip_model": {"low": 2}}]}
        spec, errors, _ = schema.validate_partially(expand(read(data)))
        assert isinstance(spec, BaseModel) and spec.layers[0].low == 2 and not errors
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


@settings(
    max_examples=examples(500), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)  # 50 in the quick loop
@given(specs())
def test_generated_specs_are_valid_and_invalid_alike_with_the_same_values_and_errors(data):
    """Whatever a spec holds, the quick path accepts it exactly when the spec model does, with the
    same values; and it refuses it with the same errors (which the spec model then reports)."""
    quick, model = both(data)
    assert quick == model


def test_a_spec_model_takes_its_own_union_whenever_the_structures_models_were_made():
    """A structure's fields name the union of a spec model's kinds: its model, made in between two
    spec models (reading a field list for a message does), must not hand the first one's kinds to the
    second one's nested layers."""
    relu = {"archspec": 1, "name": "a", "input": [3, 8, 8], "layers": [{"kind": "relu"}]}
    nested = {"archspec": 1, "name": "b", "input": [3, 8, 8], "layers": [{"kind": "residual", "body": [
        {"kind": "group", "layers": [{"kind": "conv", "out": 3, "kernel": 1}]}]}]}  # fmt: skip
    schema.spec_model(schema._kinds_named(relu)).model_validate(relu)
    for name in ("group", "residual"):
        assert registry.kind(name).model is not None  # made while the first spec model's union is bound
    quick, model = both(nested, schema._kinds_named(nested))
    assert quick[0] == "valid" and quick == model
