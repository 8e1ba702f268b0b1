"""A JSON Schema (draft 2020-12) of the spec format, for editors: completion and red squiggles.

`archspec schema -o archspec/spec.schema.json` writes `render()`; VS Code's YAML extension
(yaml-language-server) reads it through a `# yaml-language-server: $schema=...` first line or its
`yaml.schemas` setting (docs/editor.md). It is generated from the declarations that validate specs:
every registered kind (archspec/kinds/, and plugins registered before the call) with its `doc`, and
its declared fields (type, default, description, required, the `primary` field that `kind: value`
sets); the activations and merges from their tables; the evaluator's functions from expressions.py. Each
field type's JSON schema is the fragment its `fields.Check` carries; a plugin's own field types get
pydantic's JSON schema of them.

What a JSON schema cannot know, and how this one copes:
- Expressions. Any numeric field (and `input`, and the items of size lists) may be a string that
  expressions.py evaluates over vars (`base * 2`, `"blocks[0]"`, `min(a, 8)`). The schema accepts
  strings shaped like such arithmetic (names, numbers, `+ - * / // %`, parentheses, brackets,
  commas, two operands never side by side), but not a quoted bare number, which archspec keeps as
  a string. It cannot know which names are vars, so `out: six` passes where vars can exist.
- Which names exist depends on the spec, and a schema cannot compare a value with a key elsewhere
  in the file. The root therefore picks one of three modes from the keys the spec has:
  `plain` (no vars, blocks or extends): an expression may name only `i` (a repeat's index) and the
  evaluator's functions, and a layer must be a built-in kind, so `out: six` and `- convv: ...` are
  errors (inside a flat repeat with an `index:`, that name is allowed too: vars mode there);
  `vars` (vars, no blocks or extends): any name in expressions, still only built-in kinds;
  `blocks` (blocks or extends, whose base may define blocks): a layer may also be a use of a user
  block, which the schema cannot tell from a misspelt kind, so there any identifier that is not a
  built-in kind is accepted as a block name (`- double_conv: {out: 64}`, `- double_conv: 64`,
  `- double_conv`) and its arguments are not checked; `archspec check` reports unknown ones.
  Specs use blocks with their own names, so keeping the other two modes strict catches typos in
  most specs at no cost to those that use blocks.
- Enum fields (`mode: bilinear`, `padding: same`, `shortcut: auto`, `activation`) take their
  values only: a var or block parameter holding such a string is not recognised (the format
  documents vars as numbers and lists). A user block named `repeat` (which would shadow the flat
  repeat) is flagged at its definition.
- A layer with `repeat: 0` is never validated by archspec; the schema checks it all the same.
- Cross-field rules (exactly one of `scale`/`size`, `groups` dividing the channels), resolved
  values and shapes are `archspec check`'s.

Editors (yaml-language-server) report, when every alternative of an anyOf fails alike, the first
one's mistake; so alternatives are ordered, and values are judged by their YAML type first
(`fields.typed`), for messages that name the mistake made. Imports no torch.
"""

from __future__ import annotations

import json
import keyword
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import TypeAdapter

from .. import registry
from ..frontend import expressions
from ..frontend import validate as schema
from ..registry import fields
from ..registry.fields import Declared, except_words, integer, typed

DRAFT = "https://json-schema.org/draft/2020-12/schema"

# ---------------------------------------------------------------- patterns

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_NUMBER = (
    r"(?:0[xX][0-9A-Fa-f_]+|0[oO][0-7_]+|0[bB][01_]+"
    r"|(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9_]+)?)"
)
_OPERATOR = r"[-+*/%(),:\[\]]"  # ":" in slices: depths[:s]
_APART = r"(?!\s*[A-Za-z0-9_.])"  # an operand is never followed by another: `6 apples`, `3x32` are no expressions


_LITERAL = rf"\s*(?:{_NUMBER}|True|False|None)\s*"  # what expressions.evaluate leaves a string: "6", True, None
LITERAL_PATTERN = rf"^{_LITERAL}$"


def _expression_pattern(names: str) -> str:
    return rf"^(?!{_LITERAL}$)\s*(?:(?:(?:{names}|{_NUMBER}){_APART}|{_OPERATOR})\s*)+$"


EXPRESSION_PATTERN = _expression_pattern(_NAME)  # over any names: vars, block parameters, i
# In a spec without vars, blocks or extends: a repeat's index i and the evaluator's functions only.
PLAIN_NAMES = ["i", *sorted(expressions.FUNCTIONS)]
PLAIN_EXPRESSION_PATTERN = _expression_pattern("|".join(sorted(PLAIN_NAMES, key=len, reverse=True)))
IDENTIFIER_PATTERN = rf"^{_NAME}$"  # var, block and parameter names (frontend.scope.is_identifier)
OVERRIDE_PATTERN = r"^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$"  # qualified names, unnamed layers by index


@dataclass(frozen=True)
class _Mode:
    """What names a spec can refer to; see the module docstring."""

    key: str
    any_names: bool  # expressions may name vars and block parameters
    blocks: bool  # a layer may be a use of a user block


PLAIN = _Mode("plain", any_names=False, blocks=False)
VARS = _Mode("vars", any_names=True, blocks=False)
BLOCKS = _Mode("blocks", any_names=True, blocks=True)


def _ref(name: str) -> dict:
    return {"$ref": f"#/$defs/{name}"}


# ---------------------------------------------------------------- the builder

LAYER_DOCS = {
    "name": "the layer's name: its module name and state_dict key, unique in its scope; an unnamed "
    "layer is named by its index",
    "from": "take the input from earlier named layers of this sequence instead of the layer before: "
    "one name, or a list of two or more combined by `merge`",
    "merge": "how the `from` inputs combine (default concat)",
    "repeat": "make this many copies in place; the var i is the copy's index (0, 1, ...)",
    "first": "fields that change the first copy of a repeated layer",
}


class _Builder:
    def __init__(self) -> None:
        self.defs: dict[str, dict] = {}
        self.unknown: list[str] = []  # "kind.field: annotation" of fields no schema above describes
        self._fields: dict[str, list] = {}

    # ---- defs

    def define(self, name: str, build: Callable[[], dict]) -> dict:
        if name not in self.defs:
            self.defs[name] = {}  # a placeholder: recursive definitions refer to it while it is built
            self.defs[name] = build()
        return _ref(name)

    def expression(self, mode: _Mode) -> dict:
        functions = ", ".join(sorted(expressions.FUNCTIONS))
        if mode.any_names:
            return self.define(
                "expression.vars",
                lambda: {
                    "title": "expression",
                    "type": "string",
                    "description": "an expression over vars: numbers, + - * / // %, parentheses, var and block "
                    f"parameter names, list[index], and {functions} (i, or a repeat's index, counts its copies)",
                    "pattern": EXPRESSION_PATTERN,
                    "patternErrorMessage": "not an expression: numbers, + - * / // %, ( ), var names, list[index], "
                    f"{functions}",
                },
            )
        return self.define(
            "expression.plain",
            lambda: {
                "title": "expression",
                "type": "string",
                "description": f"an expression: numbers, + - * / // %, parentheses, {functions}, and i (a "
                "repeat's index); this spec has no vars, blocks or extends, so it names nothing else",
                "pattern": PLAIN_EXPRESSION_PATTERN,
                "patternErrorMessage": f"not an expression: numbers, + - * / // %, ( ), {functions}, i "
                "(without vars, blocks or extends, a spec names nothing else)",
            },
        )

    def field_type(self, check: fields.Check, mode: _Mode) -> dict:
        expr = self.expression(mode)
        name = f"{check.key}.{'vars' if mode.any_names else 'plain'}" if check.modal else check.key
        return self.define(name, lambda: {"description": check.doc, **check.json(expr)})

    # ---- a type annotation

    def annotation(self, tp: Any, mode: _Mode, where: str) -> dict:
        origin = get_origin(tp)
        if tp is fields.AnyLayer:
            return self.layer(mode)
        if origin is Annotated:
            check = fields.check_of(tp)
            if check is not None and check.json is not None:
                return self.field_type(check, mode)
            validator = next((m for m in tp.__metadata__ if callable(getattr(m, "func", None))), None)
            if validator is not None:  # a plugin's own: pydantic's PlainValidator, say
                return self.fallback(tp, validator, mode, where)
            return self.annotation(get_args(tp)[0], mode, where)
        if origin in (Union, types.UnionType):
            members = [self.annotation(arg, mode, where) for arg in get_args(tp)]
            return {"anyOf": members}
        if origin is Literal:
            return {"enum": list(get_args(tp))}
        if origin is list and get_args(tp) and _is_layer(get_args(tp)[0]):
            return {"type": "array", "items": self.layer(mode)}
        if tp is type(None):
            return {"type": "null"}
        return self.fallback(tp, None, mode, where)

    def fallback(self, tp: Any, validator: Any, mode: _Mode, where: str) -> dict:
        """A field type without a Check's fragment (a plugin's): pydantic's schema of it, or of the
        validator's declared input type, with expressions where it is a number; anything if neither says."""
        self.unknown.append(f"{where}: {tp!r}")
        target = getattr(validator, "json_schema_input_type", Any) if validator is not None else tp
        try:
            found = TypeAdapter(target).json_schema() if target is not Any else {}
        except Exception:  # pydantic cannot describe it: accept anything, archspec check judges
            found = {}
        if found.get("type") in ("integer", "number"):
            return typed(found, self.expression(mode))
        return found

    # ---- kinds

    def kind_fields(self, name: str) -> list[Declared]:
        """Every field of kind `name`, but its tag."""
        if name not in self._fields:
            declared = registry.KINDS[name].fields or fields.Fields
            self._fields[name] = [f for f in fields.declared_fields(declared) if f.name != "kind"]
        return self._fields[name]

    def holds_layers(self, name: str) -> bool:
        return any(_mentions_layers(f.annotation) for f in self.kind_fields(name))

    def kind(self, name: str, mode: _Mode) -> dict:
        """The def of the mapping form of kind `name`: `conv: {out: 6, kernel: 5}`."""
        if not self.holds_layers(name):  # the same with or without blocks: one def for both
            mode = VARS if mode.any_names else PLAIN
        return self.define(f"kind.{name}.{mode.key}", lambda: self._kind(name, mode))

    def _kind(self, name: str, mode: _Mode) -> dict:
        properties, required = {}, []
        shared = {f.name: f for f in fields.declared_fields(fields.Fields)}
        for f in self.kind_fields(name):
            if f == shared.get(f.name):  # name, from, merge: one def for every kind
                properties[f.written] = self.define(
                    f"field.{f.written}", lambda f=f: self.shared(f.written, f.annotation)
                )
                continue
            prop = dict(self.annotation(f.annotation, mode, f"{name}.{f.written}"))
            if f.min_length and prop.get("type") == "array":
                prop["minItems"] = f.min_length
            if f.description:
                prop["description"] = f.description
            if f.required:
                required.append(f.written)
            elif _default(f) is not None:
                prop["default"] = _default(f)
            properties[f.written] = prop
        written_fields = sorted(properties)
        properties["repeat"] = self.define(
            f"field.repeat.{'vars' if mode.any_names else 'plain'}",
            lambda: {"description": LAYER_DOCS["repeat"], **typed(integer(0), self.expression(mode)), "default": 1},
        )
        properties["first"] = {
            "description": LAYER_DOCS["first"],
            "type": ["object", "null"],
            "propertyNames": {"enum": written_fields},
        }
        found = {
            "title": f"{name} fields",
            "type": "object",
            "properties": properties,
            "additionalProperties": False,
        }
        if required:
            found["required"] = sorted(required)
        return found

    def shared(self, written: str, tp: Any) -> dict:
        """The schema of a field every kind has (name, from, merge)."""
        return {**self.annotation(tp, PLAIN, f"layer.{written}"), "description": LAYER_DOCS[written]}

    def kind_description(self, name: str) -> str:
        entry = registry.KINDS[name]
        parts = []
        for f in self.kind_fields(name):
            if f.written in LAYER_DOCS:
                continue
            if f.required:
                parts.append(f"{f.written} (required)")
            else:
                default = _default(f)
                parts.append(f"{f.written} ({json.dumps(default)})" if default is not None else f.written)
        primary = getattr(entry.fields, "primary", None)
        text = entry.doc
        text += f"\nFields: {', '.join(parts)}." if parts else "\nNo fields of its own."
        if primary:
            text += f"\n`{name}: VALUE` sets {primary}."
        return text

    def kind_value(self, name: str, mode: _Mode) -> dict:
        """What may follow `kind:` in a layer: null, the mapping of fields, or the primary field's value."""
        if not self.holds_layers(name):
            mode = VARS if mode.any_names else PLAIN
        return self.define(f"value.{name}.{mode.key}", lambda: self._kind_value(name, mode))

    def _kind_value(self, name: str, mode: _Mode) -> dict:
        # Ordered for editors, which report the first alternative's mistake when all fail alike:
        # the primary field's value (`dropout: 1.5` is above the maximum), then the mapping.
        options = []
        written = self.kind_fields(name)
        primary = getattr(registry.KINDS[name].fields, "primary", None)
        if primary:
            tp = next(f.annotation for f in written if f.written == primary)
            options.append(self.annotation(_without_none(tp), mode, f"{name}.{primary}"))
        options.append(self.kind(name, mode))
        if not any(f.required for f in written):
            options.append({"type": "null"})
        return {"title": name, "description": self.kind_description(name), "anyOf": options}

    # ---- layers

    def layer(self, mode: _Mode) -> dict:
        return self.define(f"layer.{mode.key}", lambda: self._layer(mode))

    def _layer(self, mode: _Mode) -> dict:
        names = sorted(registry.KINDS)
        bare = [n for n in names if not any(f.required for f in self.kind_fields(n))]
        by_name = {
            "enum": bare,
            "enumDescriptions": [registry.KINDS[n].doc for n in bare],
            "description": "a kind whose fields all have defaults",
            # An editor reports this for an unknown kind in any form (`- convv: {...}` too): its
            # own message would list only the kinds that can stand alone.
            "errorMessage": "not a layer: a layer is `kind`, `kind: value` or `kind: {fields}` with a known kind "
            "(`archspec kinds` lists them); a kind with required fields needs them",
        }
        mapping: dict[str, Any] = {
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "properties": {n: self.kind_value(n, mode) for n in names},
        }
        if "repeat" not in registry.KINDS:
            mapping["properties"]["repeat"] = self.flat_repeat(mode)
        if mode.blocks:
            # A use of a user block (`blocks:` here or in a base): its name cannot be checked here,
            # so any identifier that is not a built-in kind is taken for one; archspec check knows.
            block_use = {
                "description": "a use of a block from `blocks:`: its arguments as a mapping, or the "
                "value of its first parameter",
                "anyOf": [
                    {
                        "type": "object",
                        "properties": {
                            **{f: _ref(f"field.{f}") for f in ("name", "from", "merge")},
                            "repeat": _ref(f"field.repeat.{'vars' if mode.any_names else 'plain'}"),
                            "first": {"description": LAYER_DOCS["first"], "type": ["object", "null"]},
                        },
                    },
                    {"not": {"type": "object"}},
                ],
            }
            mapping["propertyNames"] = {"pattern": IDENTIFIER_PATTERN}
            mapping["additionalProperties"] = block_use
            by_block = {"type": "string", "pattern": except_words({*names, "repeat"}, IDENTIFIER_PATTERN)}
            by_name = {"anyOf": [by_name, by_block]}
        else:
            mapping["additionalProperties"] = False
        return {
            "description": "a layer: `kind`, `kind: value` (its primary field) or `kind: {fields}`",
            "anyOf": [by_name, mapping],
        }

    def layers(self, mode: _Mode, min_items: int = 1) -> dict:
        return {"type": "array", "minItems": min_items, "items": self.layer(mode)}

    def flat_repeat(self, mode: _Mode) -> dict:
        """`- repeat: {times: n, index: s, layers: [...]}`: layers spliced n times into the list."""

        def build() -> dict:
            found = {
                "title": "repeat: {times, layers}",
                "type": "object",
                "description": "the layers, `times` times over, spliced into this list and numbered on with their "
                "neighbours; the var i (or `index`) is the copy's index",
                "properties": {
                    "times": {"description": "how many copies", **typed(integer(0), self.expression(mode))},
                    "index": {
                        "description": "the name of the var holding the copy's index (default i), so repeats nest",
                        **_identifier(),
                        "type": "string",
                    },
                    "layers": self.layers(mode, 0),
                },
                "required": ["layers", "times"],
                "additionalProperties": False,
            }
            if not mode.any_names:  # a named index is a name the layers may use: vars mode inside
                found["properties"]["layers"] = {"type": "array"}
                found["if"] = {"required": ["index"]}
                found["then"] = {"properties": {"layers": self.layers(VARS, 0)}}
                found["else"] = {"properties": {"layers": self.layers(mode, 0)}}
            return found

        return self.define(f"flat_repeat.{mode.key}", build)


def _spec(builder: _Builder) -> dict:
    spec_fields = [f for f in fields.declared_fields(schema.Spec) if f.name != "layers"]
    top = _top_level(builder, spec_fields)

    def parts(mode: _Mode) -> dict:
        return {
            "properties": {
                "input": builder.field_type(fields.check_of(fields.InputShape), mode),
                "layers": builder.layers(mode),
            }
        }

    by_mode = {
        "if": {"anyOf": [{"required": ["blocks"]}, {"required": ["extends"]}]},
        "then": parts(BLOCKS),
        "else": {"if": {"required": ["vars"]}, "then": parts(VARS), "else": parts(PLAIN)},
    }
    needed = sorted(f.name for f in spec_fields if f.required) + ["layers"]
    return {
        "$schema": DRAFT,
        "title": "archspec spec",
        "description": "A neural-network spec for archspec (docs/spec-format.md). `archspec check` also "
        "checks what a schema cannot: vars' values, block uses and every shape.",
        "type": "object",
        "properties": top,
        "additionalProperties": False,
        "allOf": [
            {"if": {"required": ["extends"]}, "else": {"required": sorted(needed)}},
            by_mode,
        ],
        "$defs": builder.defs,
    }


def _top_level(builder: _Builder, spec_fields: list[Declared]) -> dict:
    """The spec's top-level keys; `input` and `layers` depend on the mode, given by _spec."""
    top = {}
    for f in spec_fields:
        if f.name == "archspec":
            top[f.name] = {"const": schema.FORMAT_VERSION, "description": "the spec format version"}
        elif f.name == "input":  # its type depends on the mode, below
            top[f.name] = {"description": fields.check_of(fields.InputShape).doc}
        elif f.name == "description":
            top[f.name] = {"description": "optional text", "anyOf": [{"type": "string"}, {"type": "null"}]}
        else:
            top[f.name] = dict(builder.annotation(f.annotation, PLAIN, f"spec.{f.name}"))
            top[f.name]["description"] = f.description or "the model's name, a Python identifier"
    top["layers"] = {"description": "the layers, applied in order", "type": "array"}
    top["vars"] = {
        "description": "vars: names for numbers, lists or expressions over other vars, usable in any "
        "numeric field (overridden with --set name=value)",
        "type": "object",
        "propertyNames": _identifier(),
    }
    top["blocks"] = {
        "description": "user-defined blocks, used like a built-in kind: `- name: {param: value}`",
        "type": "object",
        # "repeat": a block of that name would take the place of the flat repeat; the schema keeps the latter
        "propertyNames": {
            "pattern": except_words({*keyword.kwlist, *registry.KINDS, "repeat"}, IDENTIFIER_PATTERN),
            "patternErrorMessage": "a block name is an ASCII identifier, not a Python keyword nor a built-in kind",
        },
        "additionalProperties": _user_block(builder),
    }
    top["extends"] = {
        "description": "a base spec (path relative to this file) this one starts from: name, input, "
        "description and layers replace the base's; vars and blocks merge over its",
        "type": "string",
        "minLength": 1,
    }
    top["override"] = {
        "description": "fields to change in named layers of the base: {qualified.layer.name: {field: value}}",
        "type": "object",
        "propertyNames": {"pattern": OVERRIDE_PATTERN},
        "additionalProperties": {"type": "object"},
    }
    return top


def _identifier() -> dict:
    return {
        "pattern": except_words(keyword.kwlist, IDENTIFIER_PATTERN),
        "patternErrorMessage": "an ASCII identifier, not a Python keyword",
    }


def _user_block(builder: _Builder) -> dict:
    param = {
        "description": "a parameter: its type (int, float, bool; then it is required), {type, default}, "
        "or a default value",
        "anyOf": [
            {"enum": ["int", "float", "bool"]},
            {
                "type": "object",
                "properties": {"type": {"enum": ["int", "float", "bool"]}, "default": {}},
                "required": ["type"],
                "additionalProperties": False,
            },
            {"not": {"type": "null"}},
        ],
    }
    return builder.define(
        "block",
        lambda: {
            "type": "object",
            "description": "a block: its parameters and its layers, which may name the parameters in expressions",
            "properties": {
                "description": {"description": "optional text"},
                "params": {
                    "description": "parameter name -> type or default; `- block: value` sets the first",
                    "type": "object",
                    "propertyNames": _identifier(),
                    "additionalProperties": param,
                },
                "layers": builder.layers(BLOCKS),
            },
            "required": ["layers"],
            "additionalProperties": False,
        },
    )


def _default(f: Declared) -> Any:
    """A field's default as JSON data; None when it has none, or none JSON can hold."""
    try:
        json.dumps(f.default)
    except (TypeError, ValueError):
        return None
    return None if f.required else f.default


def _is_layer(tp: Any) -> bool:
    """`AnyLayer`: a layer of the spec."""
    if get_origin(tp) is Annotated:
        return _is_layer(get_args(tp)[0])
    return tp is fields.AnyLayer


def _mentions_layers(tp: Any) -> bool:
    return _is_layer(tp) or any(_mentions_layers(arg) for arg in get_args(tp) if not isinstance(arg, (str, int)))


def _without_none(tp: Any) -> Any:
    if get_origin(tp) in (Union, types.UnionType):
        kept = [arg for arg in get_args(tp) if arg is not type(None)]
        return kept[0] if len(kept) == 1 else Union[tuple(kept)]  # noqa: UP007
    return tp


# ---------------------------------------------------------------- the interface


def json_schema() -> dict:
    """The JSON Schema of a spec, for the kinds registered now (plugins included)."""
    return _spec(_Builder())


def unknown_field_types() -> list[str]:
    """The fields (`kind.field: type`) whose type `_types` does not describe, so the schema accepts
    pydantic's idea of them or anything: empty for the built-in kinds (tests/test_editor_schema.py)."""
    builder = _Builder()
    _spec(builder)
    return sorted(set(builder.unknown))


def render() -> str:
    """The schema as JSON text (what `archspec schema` writes): keys sorted, so it is deterministic."""
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
