"""The field types kinds declare their fields with, and the pydantic-core schema of a declaration.

A field type is `Annotated[python type, Check(...)]`: the check validates a value with one clear
message (not pydantic's list of what each member of a union wanted), and beside it stand the words
and the JSON Schema fragment that `archspec schema` gives editors for the same type.

The built-in kinds declare their fields on `Fields`: a plain class written like a pydantic model,
whose pydantic-core schema `core_schema` writes (pydantic_core.core_schema), so a spec validates
straight into its instances. A plugin's kind may declare its fields as a pydantic model subclassing
`Layer` instead, whose core schema is pydantic's own. The spec's one validator (schema.py) holds
either kind alike, and its errors read alike.
"""

from __future__ import annotations

import keyword
import math
import re
import sys
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal, NamedTuple, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model
from pydantic_core import PydanticCustomError
from pydantic_core import core_schema as cs

from ..core.errors import show_value
from ..core.limits import current as current_limits
from ..core.limits import too_big
from . import tables

# Attribute names of torch.nn.Module, Sequential and ModuleDict, plus our own: a layer with one
# of these names would shadow a method of the module that holds it.
RESERVED_NAMES = frozenset(
    """T_destination add_module append apply bfloat16 buffers call_super_init children clear compile
    cpu cuda double dump_patches eval extend extra_repr float forward get_buffer get_extra_state
    get_parameter get_submodule half input_shape insert ipu items keys load_state_dict modules mtia
    named_buffers named_children named_modules named_parameters parameters pop register_backward_hook
    register_buffer register_forward_hook register_forward_pre_hook register_full_backward_hook
    register_full_backward_pre_hook register_load_state_dict_post_hook register_load_state_dict_pre_hook
    register_module register_parameter register_state_dict_post_hook register_state_dict_pre_hook
    requires_grad_ set_extra_state set_submodule share_memory state_dict to to_empty train training
    type update values weights_report xpu zero_grad""".split()
)
# Hyphens too: torchvision names RegNet's blocks `block1-0`; and digit strings, a ModuleList's keys
# (`convs.0`, `inner_blocks.3`). Emitted code reaches such a module by getattr and add_module, never
# as an identifier.
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*|0|[1-9][0-9]*")
MAX_NAME = 128  # characters of a layer's name: torchvision's longest is 20


class Check(NamedTuple):
    """`Annotated[int, Check(...)]`: `func(value)` validates the field (pydantic's PlainValidator
    does the same in a pydantic model). `key`, `doc` and `json` describe the field type to editors:
    `json(expression)` is the JSON Schema of its values, given the schema of an expression where
    expressions may stand (`modal`: that depends on whether the spec has vars)."""

    func: Callable[[Any], Any]
    key: str = ""
    doc: str = ""
    json: Callable[[dict], dict] | None = None
    modal: bool = True

    def __get_pydantic_core_schema__(self, source_type: Any, handler: Any) -> cs.CoreSchema:
        return cs.no_info_plain_validator_function(self.func)


def after(method: Callable) -> Callable:
    """A declaration's method that checks the validated fields together (pydantic's
    `@model_validator(mode="after")`): it returns self or raises PydanticCustomError."""
    method.__archspec_after__ = True
    return method


# ---------------------------------------------------------------- JSON Schema fragments
# ECMAScript and Python regexes alike: yaml-language-server compiles them in JavaScript, the tests
# with Python's `re` (the jsonschema package). A value is judged by its YAML type first (`typed`):
# a string must be an expression (or one of the field's words), anything else the number or list,
# so an editor reports the mistake made ("not an expression" for `out: 6 apples`, "above the
# maximum" for `p: 1.5`) rather than what another alternative wanted.

_WORD = r"(?:[A-Za-z][A-Za-z0-9_-]*|0|[1-9][0-9]*)"  # _NAME
_PART = r"(?:[A-Za-z0-9_-]|\{[^{}]+\})"  # a character of a name, or an {expression} part expand fills
LAYER_NAME_PATTERN = rf"^(?:(?:[A-Za-z]|\{{[^{{}}]+\}}){_PART}*|0|[1-9][0-9]*)$"  # _NAME with {expression} parts
REFERENCE_PATTERN = rf"^{_WORD}(?:\.{_WORD})*$"  # _reference
# PyYAML (YAML 1.1) reads these as booleans; yaml-language-server (YAML 1.2) as strings.
YAML11_BOOLEANS = [w for word in ("yes", "no", "on", "off") for w in (word, word.capitalize(), word.upper())]


def typed(other: dict | None, *strings: dict) -> dict:
    """A schema of strings `strings` (any of) and non-strings `other`."""
    words = strings[0] if len(strings) == 1 else {"anyOf": list(strings)}
    if other is None:
        return words
    return {"if": {"type": "string"}, "then": words, "else": other}


def integer(low: int | None) -> dict:
    return {"type": "integer"} if low is None else {"type": "integer", "minimum": low}


def except_words(words, pattern: str) -> str:
    """`pattern` (^...$) but not any of `words`: in the pattern, so an editor shows its message."""
    return f"^(?!(?:{'|'.join(re.escape(w) for w in sorted(words))})$){pattern[1:]}"


def _per_dim(low: int, expr: dict) -> dict:
    return {"type": "array", "minItems": 1, "maxItems": 3, "items": typed(integer(low), expr)}


def _sizes_json(low: int, *words: dict) -> Callable[[dict], dict]:
    return lambda expr: typed({"anyOf": [integer(low), _per_dim(low, expr)]}, *words, expr)


def _number_json(**bounds) -> Callable[[dict], dict]:
    return lambda expr: typed({"type": "number", **bounds}, expr)


def _numbers_json(**bounds) -> Callable[[dict], dict]:
    return lambda expr: typed(
        {"type": "array", "minItems": 1, "items": typed({"type": "number", **bounds}, expr)}, expr
    )


def _enum_json(table: str, docs: Callable[[str], str | None]) -> Callable[[dict], dict]:
    def build(expr: dict) -> dict:
        names = sorted(getattr(tables, table))
        return {"enum": names, "enumDescriptions": [docs(name) or name for name in names]}

    return build


def _reference_json() -> dict:
    return {"type": "string", "pattern": REFERENCE_PATTERN}


# ---------------------------------------------------------------- checks


def fail(message: str, value: Any):
    raise PydanticCustomError("bad_value", "{message}, got {got}", {"message": message, "got": show_value(value)})


def _digits_message() -> str:
    return f"beyond the limit on the size of numbers ({current_limits().digits} digits)"


def _is_int(value: Any) -> bool:
    return type(value) is int  # bool is an int subclass and is never a size


def check_name(value: Any) -> str:
    if _is_int(value) and value >= 0:  # YAML reads `name: 0` as a number
        raise PydanticCustomError(
            "bad_name", 'a name is text: write the number in quotes, name: "{got}"', {"got": str(value)}
        )
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise PydanticCustomError(
            "bad_name",
            "a name must be ASCII letters, digits, _ and - starting with a letter, or a number (0, 1, ...), got {got}",
            {"got": show_value(value)},
        )
    if keyword.iskeyword(value):
        raise PydanticCustomError(
            "bad_name", "{got} is a Python keyword and cannot be a name", {"got": show_value(value)}
        )
    if len(value) > MAX_NAME:  # every row of a report repeats it, in every path below it
        raise PydanticCustomError(
            "bad_name",
            "a name is at most {most} characters, got one of {n}",
            {"most": MAX_NAME, "n": f"{len(value):,}"},
        )
    if value in RESERVED_NAMES:
        raise PydanticCustomError(
            "bad_name", "{got} is an attribute of torch.nn.Module and cannot be a name", {"got": show_value(value)}
        )
    return value


def _int_at_least(low: int):
    def check(value: Any) -> int:
        if not _is_int(value) or value < low:
            fail(f"expected an integer >= {low}", value)
        if too_big(value):
            fail(f"expected an integer >= {low}, {_digits_message()}", value)
        return value

    return check


def _int(value: Any) -> int:
    if _is_int(value) and not too_big(value):
        return value
    fail("expected an integer" + (f", {_digits_message()}" if _is_int(value) else ""), value)


def _ints_at_least(low: int):
    """An int, or a list of 1 to 3 ints (one per spatial dim); kept as int or tuple."""

    def check(value: Any):
        if _is_int(value) and value >= low and not too_big(value):
            return value
        if isinstance(value, list) and 1 <= len(value) <= 3 and all(_is_int(v) and v >= low for v in value):
            if not any(too_big(v) for v in value):
                return tuple(value)
        big = too_big(value) or (isinstance(value, list) and any(too_big(v) for v in value))
        fail(
            f"expected an integer >= {low} or a list of 1 to 3 of them{', ' + _digits_message() if big else ''}", value
        )

    return check


def _padding(value: Any):
    if value in ("same", "valid"):
        return value
    try:
        return _ints_at_least(0)(value)
    except PydanticCustomError:
        fail("expected an integer >= 0, a list of them, 'same' or 'valid'", value)


def _number(*, low: float | None = None, high: float | None = None, low_open: bool = False):
    def check(value: Any) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok and too_big(value):
            fail(f"expected a number {_digits_message()}", value)
        ok = ok and (low is None or (value > low if low_open else value >= low)) and (high is None or value <= high)
        if not ok:
            bounds = []
            if low is not None:
                bounds.append(f"{'>' if low_open else '>='} {low:g}")
            if high is not None:
                bounds.append(f"<= {high:g}")
            fail("expected a number" + (" " + " and ".join(bounds) if bounds else ""), value)
        return float(value)

    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        fail("expected true or false", value)
    return value


def _numbers(*, positive: bool):
    def check(value: Any) -> tuple[float, ...]:
        each = _number(low=0.0, low_open=True) if positive else _number()
        if not isinstance(value, list) or not value:
            fail("expected a non-empty list of numbers", value)
        return tuple(each(v) for v in value)

    return check


def _scale(value: Any):
    if isinstance(value, (list, int)) and not isinstance(value, bool) and _ints_at_least(1)(value):
        return value
    return _number(low=0.0, low_open=True)(value)


def _permutation(value: Any) -> tuple[int, ...]:
    """The order of a batched tensor's dims, as torch.permute takes it: the batch (0) stays first."""
    if not (isinstance(value, list) and 2 <= len(value) <= 5 and all(_is_int(v) for v in value)):
        fail("expected a list of 2 to 5 dim indices (the batched tensor's dims in their new order)", value)
    if sorted(value) != list(range(len(value))) or value[0] != 0:
        fail(f"expected 0 first, then 1 to {len(value) - 1} in any order (the batch stays first)", value)
    return tuple(value)


def check_input_shape(value: Any) -> tuple[int, ...]:
    if not (isinstance(value, list) and 2 <= len(value) <= 4 and all(_is_int(v) and v >= 1 for v in value)):
        fail("expected [channels, then 1 to 3 spatial sizes], all integers >= 1", value)
    if any(too_big(v) for v in value):
        fail(f"expected [channels, then 1 to 3 spatial sizes], {_digits_message()}", value)
    return tuple(value)


def _registered(table: str, what: str):
    """A name that must be in one of the registry's tables, looked up when a spec is validated."""

    def check(value: Any) -> str:
        names = getattr(tables, table)
        if not isinstance(value, str) or value not in names:
            fail(f"expected {what}: {', '.join(sorted(names))}", value)
        return value

    return check


def _reference(value: str) -> str:
    """A layer name, or a qualified one (`encoder.enc4`) reaching into an earlier group."""
    for part in value.split("."):
        check_name(part)
    return value


def _outputs(value: Any) -> tuple[tuple[str, str], ...]:
    """The model's named outputs: (name, reference) pairs, in the order written."""
    if not isinstance(value, dict) or not value:
        fail("expected a mapping of output names to layers (out: head, aux: aux_head)", value)
    pairs = []
    for key, reference in value.items():
        key = str(key) if _is_int(key) and key >= 0 else key  # `0: fpn.layer_blocks.0`
        if not isinstance(key, str) or not _NAME.fullmatch(key) or len(key) > MAX_NAME:
            fail("an output's name is ASCII letters, digits, _ and - starting with a letter, or a number", key)
        if not isinstance(reference, str):
            fail(f"expected the layer output {key} returns", reference)
        pairs.append((key, _reference(reference)))
    return tuple(pairs)


def _sources(value: Any):
    if isinstance(value, str):
        return (_reference(value),)
    if isinstance(value, list) and len(value) >= 2 and all(isinstance(v, str) for v in value):
        return tuple(_reference(v) for v in value)
    fail("expected the name of an earlier layer, or a list of two or more names", value)


def _activation_doc(name: str) -> str | None:
    found = tables.KINDS.get(name) or tables.ACTIVATIONS.get(name)
    return found.doc


# ---------------------------------------------------------------- the field types

_AT_LEAST_1, _AT_LEAST_0 = "an integer >= 1", "an integer >= 0"
_PER_DIM = "for every spatial dim, or a list of one per spatial dim (1 to 3)"
_0_TO_1 = "a number from 0 to 1"

Name = Annotated[
    str,
    Check(
        check_name,
        "name",
        "a name: ASCII letters, digits, _ and - starting with a letter, or a number (a ModuleList's key: 0, 1, "
        "...), not a Python keyword nor an attribute of torch.nn.Module, at most 128 characters; it becomes the "
        "module's name and state_dict prefix. "
        "{expression} parts are filled in: block{s + 1}-{i}",
        lambda expr: {
            "type": "string",
            "pattern": except_words({*keyword.kwlist, *RESERVED_NAMES}, LAYER_NAME_PATTERN),
            "patternErrorMessage": "a name is ASCII letters, digits, _ and - starting with a letter, or a number, "
            "not a Python keyword nor an attribute of torch.nn.Module (forward, train, ...)",
            "maxLength": MAX_NAME,
        },
        modal=False,
    ),
]
PosInt = Annotated[int, Check(_int_at_least(1), "int_at_least_1", _AT_LEAST_1, lambda e: typed(integer(1), e))]
Int = Annotated[int, Check(_int, "int", "an integer", lambda e: typed(integer(None), e))]
Sizes = Annotated[Any, Check(_ints_at_least(1), "sizes", f"{_AT_LEAST_1} {_PER_DIM}", _sizes_json(1))]
NonNegSizes = Annotated[Any, Check(_ints_at_least(0), "sizes_at_least_0", f"{_AT_LEAST_0} {_PER_DIM}", _sizes_json(0))]
Padding = Annotated[
    Any,
    Check(
        _padding, "padding", f"{_AT_LEAST_0} {_PER_DIM}, or same or valid", _sizes_json(0, {"enum": ["same", "valid"]})
    ),
]
# YAML 1.1 words: PyYAML, and so archspec, reads `bias: no` as false; YAML 1.2 editors as a string
Bool = Annotated[
    bool, Check(_bool, "bool", "true or false", lambda e: typed({"type": "boolean"}, {"enum": YAML11_BOOLEANS}, e))
]
PosFloat = Annotated[
    float, Check(_number(low=0.0, low_open=True), "number_above_0", "a number > 0", _number_json(exclusiveMinimum=0))
]
Eps = PosFloat
Momentum = Annotated[
    float, Check(_number(low=0.0, high=1.0), "number_0_to_1", _0_TO_1, _number_json(minimum=0, maximum=1))
]
Probability = Momentum
Fraction = Annotated[
    float,
    Check(
        _number(low=0.0, high=1.0, low_open=True),
        "fraction",
        "a number > 0 and <= 1",
        _number_json(exclusiveMinimum=0, maximum=1),
    ),
]
Float = Annotated[float, Check(_number(), "number", "a number", _number_json())]
PosFloatOrSizes = Annotated[
    Any,
    Check(
        _scale,
        "scale",
        "a number > 0, or a list of integers >= 1, one per spatial dim",
        lambda e: typed({"anyOf": [{"type": "number", "exclusiveMinimum": 0}, _per_dim(1, e)]}, e),
    ),
]
Permutation = Annotated[
    tuple,
    Check(
        _permutation,
        "permutation",
        "the batched tensor's dims in their new order: 0 (the batch) first, then the others",
        lambda e: typed(
            {"type": "array", "minItems": 2, "maxItems": 5, "prefixItems": [{"const": 0}], "items": integer(0)}, e
        ),
    ),
]
Means = Annotated[
    tuple, Check(_numbers(positive=False), "means", "a list of numbers, one per channel", _numbers_json())
]
Stds = Annotated[
    tuple,
    Check(_numbers(positive=True), "stds", "a list of numbers > 0, one per channel", _numbers_json(exclusiveMinimum=0)),
]
Activation = Annotated[
    str,
    Check(
        _registered("ACTIVATIONS", "an activation"),
        "activation",
        "an activation kind",
        _enum_json("ACTIVATIONS", _activation_doc),
        modal=False,
    ),
]
MergeName = Annotated[
    str,
    Check(
        _registered("MERGES", "a merge"),
        "merge",
        "how several inputs combine",
        _enum_json("MERGES", lambda name: tables.MERGES[name].doc),
        modal=False,
    ),
]
Sources = Annotated[
    tuple,
    Check(
        _sources,
        "sources",
        "the name of an earlier layer of this sequence (group.layer reaches into an earlier group), "
        "or a list of two or more, merged by `merge`",
        lambda e: typed({"type": "array", "minItems": 2, "items": _reference_json()}, _reference_json()),
        modal=False,
    ),
]
Reference = Annotated[
    str,
    Check(
        lambda value: _reference(value) if isinstance(value, str) else fail("expected a layer's name", value),
        "reference",
        "an earlier layer: its name, group.layer inside one, a layer of a sequence around this one, or input",
        lambda e: _reference_json(),
        modal=False,
    ),
]
Outputs = Annotated[
    tuple,
    Check(
        _outputs,
        "outputs",
        "what the model returns: a mapping of names to layers anywhere in it (out: classifier, aux: "
        "aux_classifier), returned as an ordered dict; without it, the last layer's output",
        lambda e: {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": f"^{_WORD}$", "maxLength": MAX_NAME},
            "additionalProperties": _reference_json(),
        },
        modal=False,
    ),
]
InputShape = Annotated[
    tuple,
    Check(
        check_input_shape,
        "input",
        "one sample's shape: channels, then 1 to 3 spatial sizes (the batch is implicit)",
        lambda e: typed({"type": "array", "minItems": 2, "maxItems": 4, "items": typed(integer(1), e)}, e),
    ),
]
FormatVersion = Annotated[int, Check(_int_at_least(1))]


# ---------------------------------------------------------------- declarations

LAYER_FIELDS = ("name", "sources", "merge")  # every kind has them; they are not arguments of the layer
REQUIRED = ...  # field()'s default when a field has none


class Spelt(NamedTuple):
    """What `field()` says of a field, as pydantic's Field would."""

    default: Any = REQUIRED
    alias: str | None = None
    min_length: int | None = None


def field(default: Any = REQUIRED, *, alias: str | None = None, min_length: int | None = None) -> Any:
    """A declared field's default with more said of it: the name a spec spells it by (`from`), the
    fewest items of a list."""
    return Spelt(default, alias, min_length)


class Declaration:
    """The root of fields declared as a plain class, written like a pydantic model at a module's top
    level (annotations resolve in the declaring module): `core_schema` validates into its instances."""


class Fields(Declaration):
    """The fields every layer kind has, and the base of a kind's own. A kind declares
    `kind: Literal["conv"]`, the tag the spec's union picks it by; a plugin's may leave it out."""

    primary: ClassVar[str | None] = None  # the field `kind: value` sets
    name: Name | None = None
    sources: Sources | None = field(None, alias="from")
    merge: MergeName | None = None


class Layer(BaseModel):
    """The base of a plugin kind's fields given as a pydantic model: `Fields`'s fields, as pydantic
    declares them (tests/test_plugins.py holds the two alike)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)  # built when a spec uses the kind

    primary: ClassVar[str | None] = None
    name: Name | None = None
    sources: Sources | None = Field(None, alias="from")
    merge: MergeName | None = None


class AnyLayer:
    """A layer of the spec, in a declaration's annotation (group's and residual's layers)."""


LAYER_REF = "archspec-layer"  # the definition the spec validator's union of layers is


class Declared(NamedTuple):
    """One field of a kind, from its declaration or its pydantic model."""

    name: str
    alias: str | None
    annotation: Any  # with its Annotated metadata
    default: Any  # REQUIRED: none
    min_length: int | None = None
    description: str | None = None  # a pydantic model's Field(description=...)

    @property
    def written(self) -> str:
        return self.alias or self.name

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def declared_fields(declared: type | None) -> tuple[Declared, ...]:
    """The fields of a declaration or a pydantic model (a plugin's), as declared, base classes' first."""
    if declared is None:
        return ()
    if issubclass(declared, BaseModel):
        return tuple(_model_field(name, info) for name, info in declared.model_fields.items())
    found = vars(declared).get("__archspec_fields__")
    if found is None:  # read once, and kept on the class, as pydantic keeps a model's model_fields
        found = declared.__archspec_fields__ = _read_declaration(declared)
    return found


def _read_declaration(declared: type) -> tuple[Declared, ...]:
    hints = typing.get_type_hints(declared, localns={"AnyLayer": AnyLayer}, include_extras=True)
    found = []
    for name, annotation in hints.items():
        if annotation is ClassVar or typing.get_origin(annotation) is ClassVar:
            continue
        default = next((vars(cls)[name] for cls in declared.__mro__ if name in vars(cls)), REQUIRED)
        spelt = default if isinstance(default, Spelt) else Spelt(default)
        found.append(Declared(name, spelt.alias, annotation, spelt.default, spelt.min_length))
    return tuple(found)


def _model_field(name: str, info) -> Declared:
    annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    min_length = next((m.min_length for m in info.metadata if hasattr(m, "min_length")), None)
    default = REQUIRED if info.is_required() else info.get_default(call_default_factory=True)
    return Declared(name, info.alias, annotation, default, min_length, info.description)


def declaration_problem(declared: object) -> str | None:
    """Why `declared` cannot be a kind's fields (a Fields declaration or a Layer model), or None."""
    if not (isinstance(declared, type) and (issubclass(declared, Fields) or issubclass(declared, Layer))):
        return f"its fields are {declared!r}, not a fields.Layer or fields.Fields class"
    if issubclass(declared, Layer):
        try:
            core_schema(declared, ("kind",))["type"]  # what a spec's validator asks (a mock schema is built then)
        except Exception as exc:  # pydantic's errors: an annotation it cannot resolve or describe
            where = f"{declared.__module__}.{declared.__qualname__}"
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            unloaded = declared.__module__ not in sys.modules
            hint = "; its module is not in sys.modules: load it with --plugin, or import it" if unloaded else ""
            return f"pydantic cannot build the schema of {where}: {first}{hint}"
        return None
    for cls in declared.__mro__:
        for name, value in vars(cls).items():
            if type(value).__module__.split(".")[0] == "pydantic":  # a model_validator, a Field, ...
                return (
                    f"{cls.__name__}.{name} is pydantic's; a Fields declaration checks its fields together "
                    "with archspec.fields.after, or declares them as a pydantic model (a fields.Layer)"
                )
    try:
        declaration_schema(declared)
    except (TypeError, NameError) as exc:
        return str(exc)
    return None


def defaults_of(declared: type | None) -> dict[str, Any]:
    """A kind's own fields' defaults (not kind, name, from or merge), as its fields declare them."""
    return {
        f.name: f.default for f in declared_fields(declared) if not f.required and f.name not in ("kind", *LAYER_FIELDS)
    }


def check_of(annotation: Any) -> Check | None:
    """The Check of a field type (`Annotated[int, Check(...)]`), if it has one."""
    if typing.get_origin(annotation) is Annotated:
        return next((m for m in annotation.__metadata__ if isinstance(m, Check)), None)
    return None


# ---------------------------------------------------------------- core schemas


def core_schema(declared: type | None, tags: tuple[str, ...]) -> cs.CoreSchema:
    """The pydantic-core schema that validates a layer of the kinds `tags` (which share these fields)."""
    if declared is not None and issubclass(declared, BaseModel):
        if "kind" not in declared.model_fields:  # a plugin's model may leave its tag to us
            declared = create_model(declared.__name__, __base__=declared, kind=(Literal[tags], ...))
        return TypeAdapter(declared).core_schema
    declared = declared or Fields
    schema = declaration_schema(declared)
    if "kind" not in {f.name for f in declared_fields(declared)}:
        inner = _inner_model(schema)
        inner["schema"]["fields"]["kind"] = cs.model_field(cs.literal_schema(list(tags)))
    return schema


def declaration_schema(declared: type) -> cs.CoreSchema:
    """The schema validating data into an instance of the declaration `declared`."""
    fields = {}
    for f in declared_fields(declared):
        schema = _value_schema(f.annotation, f"{declared.__name__}.{f.name}")
        if f.min_length is not None:
            schema = {**schema, "min_length": f.min_length}
        if not f.required:
            schema = cs.with_default_schema(schema, default=f.default)
        fields[f.name] = cs.model_field(schema, validation_alias=f.alias, serialization_alias=f.alias)
    schema = cs.model_schema(
        declared,
        cs.model_fields_schema(fields, model_name=declared.__name__),
        config=cs.CoreConfig(title=declared.__name__, extra_fields_behavior="forbid"),
    )
    after = [v for cls in reversed(declared.__mro__) for v in vars(cls).values() if getattr(v, "__archspec_after__", 0)]
    for validator in after:
        schema = cs.no_info_after_validator_function(validator, schema)
    return schema


def _inner_model(schema: dict) -> dict:
    while schema["type"] != "model":
        schema = schema["schema"]
    return schema


def _value_schema(annotation: Any, where: str) -> cs.CoreSchema:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        check = next((m for m in annotation.__metadata__ if callable(getattr(m, "func", None))), None)
        return cs.no_info_plain_validator_function(check.func) if check else _value_schema(args[0], where)
    if origin is Literal:
        return cs.literal_schema(list(args))
    if origin in (Union, types.UnionType) and len(args) == 2 and type(None) in args:
        return cs.nullable_schema(_value_schema(next(a for a in args if a is not type(None)), where))
    if origin in (Union, types.UnionType):
        return cs.union_schema([_value_schema(arg, where) for arg in args])
    if origin is list and args == (AnyLayer,):
        return cs.list_schema(cs.definition_reference_schema(LAYER_REF))
    if annotation is str:
        return cs.str_schema()
    raise TypeError(
        f"{where}: a Fields declaration takes the field types of archspec.fields, literals, optional ones and str, "
        f"not {annotation!r}; declare the kind's fields as a pydantic model (a fields.Layer) for anything else"
    )


def dump(value: Any) -> Any:
    """A validated spec (or layer) as the plain data it was validated from."""
    if isinstance(value, (Declaration, BaseModel)):
        fields = declared_fields(type(value))
        data = {f.written: dump(getattr(value, f.name)) for f in fields if getattr(value, f.name) != f.default}
        return {"kind": value.kind, **data} if hasattr(value, "kind") else data
    if isinstance(value, (list, tuple)):
        return [dump(item) for item in value]
    return value
