"""The field types every layer kind's model is built from, and the base model of a layer.

Plain validators give every field one clear message instead of pydantic's per-union-member list.
Kinds (archspec/kinds/) declare their fields with these types; schema.py assembles the spec model.
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

from pydantic_core import PydanticCustomError

from . import registry
from .errors import show_value
from .limits import current as current_limits

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
# Hyphens too: torchvision names RegNet's blocks `block1-0`. Emitted code reaches such a module by
# getattr and add_module, never as an identifier.
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


# ---------------------------------------------------------------- pydantic's words, without pydantic
# A `check` of a valid spec validates with pydantic-core alone (record_schema below): importing the
# pydantic package itself would cost more than the rest of archspec's start-up. The declarations
# therefore say what pydantic's PlainValidator and model_validator say with these two, which pydantic
# reads the same way when it makes the models (model_of).


class Plain(NamedTuple):
    """`Annotated[int, Plain(check)]`: `check(value)` validates the field, as pydantic's PlainValidator."""

    func: Callable[[Any], Any]

    def __get_pydantic_core_schema__(self, source_type: Any, handler: Any) -> Any:
        from pydantic import PlainValidator

        return PlainValidator(self.func).__get_pydantic_core_schema__(source_type, handler)


def after(method: Callable) -> Callable:
    """A declaration's method that checks the validated fields together (pydantic's
    `@model_validator(mode="after")`): it returns self or raises PydanticCustomError."""
    method.__archspec_after__ = True
    return method


def is_model(cls: Any) -> bool:
    """Whether `cls` is a pydantic model class (asked without importing pydantic: a model exists
    only once pydantic is imported)."""
    main = sys.modules.get("pydantic.main")
    return main is not None and isinstance(cls, type) and issubclass(cls, main.BaseModel)


# ---------------------------------------------------------------- field types


def _fail(message: str, value: Any):
    raise PydanticCustomError("bad_value", "{message}, got {got}", {"message": message, "got": _show(value)})


def _show(value: Any) -> str:
    """A value in a message: at most 40 characters, whatever it is (errors.show_value)."""
    return show_value(value)


# ---------------------------------------------------------------- magnitudes

_BOUNDS: list = [None, 0, 0.0]  # (digits, 10**digits, the same as a float) of the limits in force


def magnitude_bounds() -> tuple[int, float]:
    """(int bound, float bound): every number a spec holds or computes is below them in magnitude
    (limit digits: 10**60 by default, far beyond any tensor)."""
    digits = current_limits().digits
    if _BOUNDS[0] != digits:
        _BOUNDS[:] = [digits, 10**digits, float(10**digits) if digits <= 308 else math.inf]
    return _BOUNDS[1], _BOUNDS[2]


def too_big(value: Any) -> bool:
    """Whether a number is at or beyond the bound of limit digits (or not finite)."""
    if type(value) is int:
        bound = magnitude_bounds()[0]
        return not -bound < value < bound
    if type(value) is float:
        return not math.isfinite(value) or abs(value) >= magnitude_bounds()[1]
    return False


def _digits_message() -> str:
    return f"beyond the limit on the size of numbers ({current_limits().digits} digits)"


def _is_int(value: Any) -> bool:
    return type(value) is int  # bool is an int subclass and is never a size


def _name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise PydanticCustomError(
            "bad_name",
            "a name must be ASCII letters, digits, _ and - starting with a letter, got {got}",
            {"got": _show(value)},
        )
    if keyword.iskeyword(value):
        raise PydanticCustomError("bad_name", "{got} is a Python keyword and cannot be a name", {"got": _show(value)})
    if value in RESERVED_NAMES:
        raise PydanticCustomError(
            "bad_name", "{got} is an attribute of torch.nn.Module and cannot be a name", {"got": _show(value)}
        )
    return value


def _int_at_least(low: int):
    def check(value: Any) -> int:
        if not _is_int(value) or value < low:
            _fail(f"expected an integer >= {low}", value)
        if too_big(value):
            _fail(f"expected an integer >= {low}, {_digits_message()}", value)
        return value

    return check


def _ints_at_least(low: int):
    """An int, or a list of 1 to 3 ints (one per spatial dim); kept as int or tuple."""

    def check(value: Any):
        if _is_int(value) and value >= low and not too_big(value):
            return value
        if isinstance(value, list) and 1 <= len(value) <= 3 and all(_is_int(v) and v >= low for v in value):
            if not any(too_big(v) for v in value):
                return tuple(value)
        big = too_big(value) or (isinstance(value, list) and any(too_big(v) for v in value))
        _fail(
            f"expected an integer >= {low} or a list of 1 to 3 of them{', ' + _digits_message() if big else ''}", value
        )

    return check


def _padding(value: Any):
    if value in ("same", "valid"):
        return value
    try:
        return _ints_at_least(0)(value)
    except PydanticCustomError:
        _fail("expected an integer >= 0, a list of them, 'same' or 'valid'", value)


def _number(*, low: float | None = None, high: float | None = None, low_open: bool = False):
    def check(value: Any) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok and too_big(value):
            _fail(f"expected a number {_digits_message()}", value)
        ok = ok and (low is None or (value > low if low_open else value >= low)) and (high is None or value <= high)
        if not ok:
            bounds = []
            if low is not None:
                bounds.append(f"{'>' if low_open else '>='} {low:g}")
            if high is not None:
                bounds.append(f"<= {high:g}")
            _fail("expected a number" + (" " + " and ".join(bounds) if bounds else ""), value)
        return float(value)

    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        _fail("expected true or false", value)
    return value


def _numbers(*, positive: bool):
    def check(value: Any) -> tuple[float, ...]:
        each = _number(low=0.0, low_open=True) if positive else _number()
        if not isinstance(value, list) or not value:
            _fail("expected a non-empty list of numbers", value)
        return tuple(each(v) for v in value)

    return check


def _permutation(value: Any) -> tuple[int, ...]:
    """The order of a batched tensor's dims, as torch.permute takes it: the batch (0) stays first."""
    if not (isinstance(value, list) and 2 <= len(value) <= 5 and all(_is_int(v) for v in value)):
        _fail("expected a list of 2 to 5 dim indices (the batched tensor's dims in their new order)", value)
    if sorted(value) != list(range(len(value))) or value[0] != 0:
        _fail(f"expected 0 first, then 1 to {len(value) - 1} in any order (the batch stays first)", value)
    return tuple(value)


def _input_shape(value: Any) -> tuple[int, ...]:
    if not (isinstance(value, list) and 2 <= len(value) <= 4 and all(_is_int(v) and v >= 1 for v in value)):
        _fail("expected [channels, then 1 to 3 spatial sizes], all integers >= 1", value)
    if any(too_big(v) for v in value):
        _fail(f"expected [channels, then 1 to 3 spatial sizes], {_digits_message()}", value)
    return tuple(value)


Name = Annotated[str, Plain(_name)]
PosInt = Annotated[int, Plain(_int_at_least(1))]
Int = Annotated[
    int,
    Plain(
        lambda v: (
            v
            if _is_int(v) and not too_big(v)
            else _fail("expected an integer" + (f", {_digits_message()}" if _is_int(v) else ""), v)
        )
    ),
]
Sizes = Annotated[Any, Plain(_ints_at_least(1))]
NonNegSizes = Annotated[Any, Plain(_ints_at_least(0))]
Padding = Annotated[Any, Plain(_padding)]
Bool = Annotated[bool, Plain(_bool)]
PosFloat = Annotated[float, Plain(_number(low=0.0, low_open=True))]
Eps = PosFloat
Momentum = Annotated[float, Plain(_number(low=0.0, high=1.0))]
Probability = Annotated[float, Plain(_number(low=0.0, high=1.0))]
Fraction = Annotated[float, Plain(_number(low=0.0, high=1.0, low_open=True))]
Float = Annotated[float, Plain(_number())]
PosFloatOrSizes = Annotated[
    Any,
    Plain(
        lambda v: (
            v
            if isinstance(v, (list, int)) and not isinstance(v, bool) and _ints_at_least(1)(v)
            else _number(low=0.0, low_open=True)(v)
        )
    ),
]
Permutation = Annotated[tuple, Plain(_permutation)]
Means = Annotated[tuple, Plain(_numbers(positive=False))]
Stds = Annotated[tuple, Plain(_numbers(positive=True))]


def _registered(table: str, what: str):
    """A name that must be in one of the registry's tables, looked up when a spec is validated."""

    def check(value: Any) -> str:
        names = getattr(registry, table)
        if not isinstance(value, str) or value not in names:
            _fail(f"expected {what}: {', '.join(sorted(names))}", value)
        return value

    return check


Activation = Annotated[str, Plain(_registered("ACTIVATIONS", "an activation"))]
MergeName = Annotated[str, Plain(_registered("MERGES", "a merge"))]


# ---------------------------------------------------------------- layers


def _reference(value: str) -> str:
    """A layer name, or a qualified one (`encoder.enc4`) reaching into an earlier group."""
    for part in value.split("."):
        _name(part)
    return value


def _sources(value: Any):
    if isinstance(value, str):
        return (_reference(value),)
    if isinstance(value, list) and len(value) >= 2 and all(isinstance(v, str) for v in value):
        return tuple(_reference(v) for v in value)
    _fail("expected the name of an earlier layer, or a list of two or more names", value)


LAYER_FIELDS = ("name", "sources", "merge")  # every kind has them; they are not arguments of the layer
REQUIRED = ...  # field()'s default when a field has none


class Spelt(NamedTuple):
    """What `field()` says of a field (pydantic's Field does, but importing pydantic.fields costs a
    `check` more than the rest of archspec's imports)."""

    default: Any = REQUIRED
    alias: str | None = None
    min_length: int | None = None


def field(default: Any = REQUIRED, *, alias: str | None = None, min_length: int | None = None) -> Any:
    """A declared field's default with more said of it: the name a spec spells it by (`from`), the
    fewest items of a list."""
    return Spelt(default, alias, min_length)


class Declaration:
    """The root of fields declared as a plain class. `model_of` makes a declaration the pydantic
    model it describes when that model is asked for; the quick path of validation (`record_of`)
    validates a spec with pydantic-core into instances of the declaration itself and makes no
    model at all. A pydantic model costs ~0.7 ms to define even with defer_build, and the first
    one imports pydantic.fields (another ~25 ms): more than the rest of a `check`'s start-up.
    Write it like a pydantic model, at a module's top level: annotations resolve in the declaring
    module."""


class Fields(Declaration):
    """The fields every layer kind has, and the base of a kind's own: its model is `Layer`, the base
    of every kind's model. A kind declares `kind: Literal["conv"]`, the tag the spec model's union
    picks it by; a plugin's may leave it out (schema.py then adds it)."""

    primary: ClassVar[str | None] = None  # the field `kind: value` sets
    name: Name | None = None
    sources: Annotated[tuple, Plain(_sources)] | None = field(None, alias="from")
    merge: MergeName | None = None


def __getattr__(name: str):
    if name == "Layer":  # the pydantic model of Fields, made when first asked for (plugins subclass it)
        return model_of(Fields)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_MODELS: dict[type, type] = {}  # declaration -> its pydantic model
_MODEL_CONFIG = {"extra": "forbid", "frozen": True, "defer_build": True}  # built when a spec uses it


def model_of(declared: type | None, name: str | None = None, fresh: bool = False) -> type | None:
    """The pydantic model of a kind's fields: `declared` itself when it is one (a plugin's Layer
    subclass), else the model with the body of the Declaration (named `name`), made once; `fresh`:
    made anew and not kept (a structure's, whose fields name the union of the kinds a spec model has)."""
    if declared is None or is_model(declared):
        return declared
    made = None if fresh else _MODELS.get(declared)
    if made is None:
        from pydantic import BaseModel, ConfigDict, Field, model_validator

        body = {key: value for key, value in vars(declared).items() if key not in ("__dict__", "__weakref__")}
        for key, value in body.items():
            if isinstance(value, Spelt):
                default = {} if value.default is REQUIRED else {"default": value.default}
                body[key] = Field(**default, alias=value.alias, min_length=value.min_length)
            elif getattr(value, "__archspec_after__", False):
                body[key] = model_validator(mode="after")(value)
        bases = tuple(BaseModel if base is Declaration else model_of(base) for base in declared.__bases__)
        if Declaration in declared.__bases__:
            body["model_config"] = ConfigDict(**_MODEL_CONFIG)
        name = name or ("Layer" if declared is Fields else declared.__name__)
        body["__qualname__"] = name
        # As pydantic's create_model does: annotations resolve in the declaring module, not in this frame.
        made = type(BaseModel)(name, bases, body, __pydantic_reset_parent_namespace__=False)
        if not fresh:
            _MODELS[declared] = made
    return made


def _value_schema(annotation: Any, metadata: tuple) -> dict | None:
    if metadata:
        if len(metadata) != 1 or not _plain(metadata[0]) or _arity(metadata[0].func) != 1:
            return None
        return {"type": "function-plain", "function": {"type": "no-info", "function": metadata[0].func}}
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return _value_schema(args[0], annotation.__metadata__)
    if origin is Literal:
        return {"type": "literal", "expected": list(args)}
    if origin in (Union, types.UnionType) and len(args) == 2 and type(None) in args:
        inner = _value_schema(next(a for a in args if a is not type(None)), ())
        return None if inner is None else {"type": "nullable", "schema": inner}
    if origin in (Union, types.UnionType):
        choices = [_value_schema(arg, ()) for arg in args]
        return None if None in choices else {"type": "union", "choices": choices}
    if origin is list and args == (AnyLayer,):  # only a declaration's record names it (record_of)
        return {"type": "list", "items_schema": {"type": "definition-ref", "schema_ref": LAYER_REF}}
    if annotation is str:
        return {"type": "str"}
    return None


def _plain(metadata: Any) -> bool:
    """Whether an Annotated type's metadata is a plain validator: ours, or pydantic's (a plugin's)."""
    validators = sys.modules.get("pydantic.functional_validators")
    return isinstance(metadata, Plain) or (validators is not None and isinstance(metadata, validators.PlainValidator))


def _arity(function) -> int:
    """How many positional parameters `function` takes (a validator with an info argument takes two)."""
    code = getattr(function, "__code__", None)
    return code.co_argcount if code is not None else -1


def declares_fields(declared: object) -> bool:
    """Whether `declared` can be a kind's fields: a Layer model or a Fields declaration."""
    if not isinstance(declared, type):
        return False
    return issubclass(declared, Fields) or (is_model(declared) and issubclass(declared, model_of(Fields)))


# ---------------------------------------------------------------- records: validation without models


class AnyLayer:
    """What `AnyLayer` (schema.py's union of every kind's model) stands for when `record_of` reads
    a declaration: a layer of the spec, validated by the union at LAYER_REF."""


LAYER_REF = "archspec-layer"


class Record(NamedTuple):
    """How pydantic-core validates a declaration's fields: what model_of's model would generate."""

    fields: dict  # name -> its model-field schema, in the model's order
    defaults: dict  # name -> its default, for the fields that have one
    validators: tuple  # the after-model validators, base classes' first


_RECORDS: dict[type, Record | None] = {}


def record_of(declared: type) -> Record | None:
    """The Record of a Declaration, read from it directly, or None where it says something this does
    not write (another field form, a pydantic Field, a model_config, another kind of validator)."""
    if declared not in _RECORDS:
        _RECORDS[declared] = _read_record(declared)
    return _RECORDS[declared]


def _read_record(declared: type) -> Record | None:
    classes = [cls for cls in reversed(declared.__mro__) if cls is not object]
    if not all(issubclass(cls, Declaration) for cls in classes):
        return None
    hints: dict[str, Any] = {}  # as pydantic collects them: base classes first, an override in place
    validators: dict[str, Any] = {}
    for cls in classes:
        module = sys.modules.get(cls.__module__)
        if module is None:
            return None
        namespace = {**vars(module), "AnyLayer": AnyLayer}
        for name, annotation in vars(cls).get("__annotations__", {}).items():
            try:
                hints[name] = eval(annotation, namespace) if isinstance(annotation, str) else annotation
            except Exception:
                return None
        for name, value in vars(cls).items():
            if name == "model_config":
                return None
            if getattr(value, "__archspec_after__", False):
                validators[name] = value
            elif type(value).__module__.startswith("pydantic"):  # pydantic's own decorators (a plugin's)
                return None  # the spec model validates it
    fields, defaults = {}, {}
    for name, annotation in hints.items():
        if annotation is ClassVar or typing.get_origin(annotation) is ClassVar:
            continue
        default = next((vars(cls)[name] for cls in declared.__mro__ if name in vars(cls)), REQUIRED)
        spelt = default if isinstance(default, Spelt) else Spelt(default)
        schema = _value_schema(annotation, ())
        if schema is None or type(spelt.default).__module__.startswith("pydantic"):  # a pydantic Field, say
            return None
        if spelt.min_length is not None:
            if schema["type"] != "list":
                return None
            schema = {**schema, "min_length": spelt.min_length}
        if spelt.default is not REQUIRED:
            schema = {"type": "default", "schema": schema, "default": spelt.default}
            defaults[name] = spelt.default
        fields[name] = {"type": "model-field", "schema": schema, "metadata": {}}
        if spelt.alias is not None:
            fields[name].update(validation_alias=spelt.alias, serialization_alias=spelt.alias)
    return Record(fields, defaults, tuple(validators.values()))


def record_schema(declared: type, tags: tuple[str, ...] = (), more: dict | None = None) -> dict | None:
    """The core schema that validates data into an instance of `declared` (no pydantic model is made)
    with the fields `more` besides its own, and `kind` one of `tags` where it declares none; None
    where record_of cannot read it."""
    record = record_of(declared)
    if record is None:
        return None
    fields = {**record.fields, **(more or {})}
    if tags and "kind" not in fields:
        fields["kind"] = {"type": "model-field", "schema": {"type": "literal", "expected": list(tags)}, "metadata": {}}
    elif tags and fields["kind"]["schema"] != {"type": "literal", "expected": list(tags)}:
        return None  # the model path says what is wrong (schema._tagged)
    schema = {
        "type": "model",
        "cls": declared,
        "schema": {"type": "model-fields", "fields": fields, "model_name": declared.__name__, "computed_fields": []},
        "config": {"title": declared.__name__, "extra_fields_behavior": "forbid"},
        "custom_init": False,
        "root_model": False,
    }
    for validator in record.validators:
        schema = {"type": "function-after", "function": {"type": "no-info", "function": validator}, "schema": schema}
    return schema


def field_names(cls: type) -> tuple[str, ...]:
    """The fields of a kind's model, or of its declaration (whose instances the quick path makes)."""
    if is_model(cls):
        return tuple(cls.model_fields)
    record = record_of(cls)
    return tuple(record.fields) if record is not None else tuple(model_of(cls).model_fields)


def defaults_of(declared: type | None) -> dict[str, Any]:
    """A kind's own fields' defaults (not kind, name, from or merge), as its fields declare them."""
    record = record_of(declared) if declared is not None and issubclass(declared, Declaration) else None
    if record is not None:
        found = record.defaults
    else:
        items = model_of(declared).model_fields.items() if declared is not None else ()
        found = {name: info.default for name, info in items if not info.is_required()}
    return {name: value for name, value in found.items() if name not in ("kind", *LAYER_FIELDS)}
