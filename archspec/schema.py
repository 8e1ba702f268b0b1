"""Stage 2: validate plain spec data with pydantic v2 into schema objects.

A layer is written `relu`, `linear: 10` (the kind's primary field) or `conv: {out: 6, kernel: 5}`.
expand.py rewrites those forms into `{"kind": ..., **fields}` so pydantic can pick the model by
its discriminator; `Expanded.locate` maps pydantic's error `loc` back to a line and column.
"""

from __future__ import annotations

import keyword
import math
import re
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from .errors import Diagnostic, SpecError, did_you_mean, in_file_order

if TYPE_CHECKING:
    from .expand import Expanded

FORMAT_VERSION = 1

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
    type update values xpu zero_grad""".split()
)
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


# ---------------------------------------------------------------- field types
# Plain validators give every field one clear message instead of pydantic's per-union-member list.


def _fail(message: str, value: Any):
    raise PydanticCustomError("bad_value", "{message}, got {got}", {"message": message, "got": _show(value)})


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_int(value: Any) -> bool:
    return type(value) is int  # bool is an int subclass and is never a size


def _name(value: Any) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise PydanticCustomError(
            "bad_name",
            "a name must be a Python identifier of ASCII letters, digits and _ starting with a letter, got {got}",
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
        return value

    return check


def _ints_at_least(low: int):
    """An int, or a list of 1 to 3 ints (one per spatial dim); kept as int or tuple."""

    def check(value: Any):
        if _is_int(value) and value >= low:
            return value
        if isinstance(value, list) and 1 <= len(value) <= 3 and all(_is_int(v) and v >= low for v in value):
            return tuple(value)
        _fail(f"expected an integer >= {low} or a list of 1 to 3 of them", value)

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


def _input_shape(value: Any) -> tuple[int, ...]:
    if not (isinstance(value, list) and 2 <= len(value) <= 4 and all(_is_int(v) and v >= 1 for v in value)):
        _fail("expected [channels, then 1 to 3 spatial sizes], all integers >= 1", value)
    return tuple(value)


Name = Annotated[str, PlainValidator(_name)]
PosInt = Annotated[int, PlainValidator(_int_at_least(1))]
Int = Annotated[int, PlainValidator(lambda v: v if _is_int(v) else _fail("expected an integer", v))]
Sizes = Annotated[Any, PlainValidator(_ints_at_least(1))]
NonNegSizes = Annotated[Any, PlainValidator(_ints_at_least(0))]
Padding = Annotated[Any, PlainValidator(_padding)]
Bool = Annotated[bool, PlainValidator(_bool)]
Eps = Annotated[float, PlainValidator(_number(low=0.0, low_open=True))]
Momentum = Annotated[float, PlainValidator(_number(low=0.0, high=1.0))]
Probability = Annotated[float, PlainValidator(_number(low=0.0, high=1.0))]
Fraction = Annotated[float, PlainValidator(_number(low=0.0, high=1.0, low_open=True))]
Float = Annotated[float, PlainValidator(_number())]
PosFloatOrSizes = Annotated[Any, PlainValidator(lambda v: v if isinstance(v, (list, int)) and not isinstance(v, bool) and _ints_at_least(1)(v) else _number(low=0.0, low_open=True)(v))]
Means = Annotated[tuple, PlainValidator(_numbers(positive=False))]
Stds = Annotated[tuple, PlainValidator(_numbers(positive=True))]
Activation = Literal["relu", "leaky_relu", "sigmoid", "tanh", "gelu", "silu", "identity"]


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


class Layer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    primary: ClassVar[str | None] = None  # the field `kind: value` sets
    name: Name | None = None
    sources: Annotated[tuple, PlainValidator(_sources)] | None = Field(None, alias="from")
    merge: Literal["concat", "add"] | None = None


class Conv(Layer):
    primary: ClassVar = "out"
    kind: Literal["conv"]
    out: PosInt
    kernel: Sizes
    stride: Sizes = 1
    padding: Padding = 0
    dilation: Sizes = 1
    groups: PosInt = 1
    bias: Bool = True


class ConvTranspose(Layer):
    primary: ClassVar = "out"
    kind: Literal["conv_transpose"]
    out: PosInt
    kernel: Sizes
    stride: Sizes = 1
    padding: NonNegSizes = 0
    output_padding: NonNegSizes = 0
    dilation: Sizes = 1
    groups: PosInt = 1
    bias: Bool = True


class BatchNorm(Layer):
    kind: Literal["batchnorm"]
    eps: Eps = 1e-5
    momentum: Momentum | None = 0.1
    affine: Bool = True
    track_running_stats: Bool = True


class LayerNorm(Layer):
    primary: ClassVar = "dims"
    kind: Literal["layernorm"]
    dims: PosInt | None = None  # how many trailing per-sample dims to normalise; all by default
    eps: Eps = 1e-5
    affine: Bool = True
    bias: Bool = True


class GroupNorm(Layer):
    primary: ClassVar = "groups"
    kind: Literal["groupnorm"]
    groups: PosInt
    eps: Eps = 1e-5
    affine: Bool = True



class Parameterless(Layer):
    """Layers without fields; one model for all keeps the import (model building) fast."""

    kind: Literal["relu", "sigmoid", "tanh", "silu", "identity", "flatten", "global_avgpool"]


class LeakyReLU(Layer):
    primary: ClassVar = "slope"
    kind: Literal["leaky_relu"]
    slope: Float = 0.01




class GELU(Layer):
    kind: Literal["gelu"]
    approximate: Literal["none", "tanh"] = "none"



class Softmax(Layer):
    primary: ClassVar = "dim"
    kind: Literal["softmax"]
    dim: Int = 1  # of the batched tensor: 1 is the channel or feature axis


class MaxPool(Layer):
    primary: ClassVar = "kernel"
    kind: Literal["maxpool"]
    kernel: Sizes
    stride: Sizes | None = None  # defaults to kernel, as in PyTorch
    padding: NonNegSizes = 0
    dilation: Sizes = 1
    ceil_mode: Bool = False


class AvgPool(Layer):
    primary: ClassVar = "kernel"
    kind: Literal["avgpool"]
    kernel: Sizes
    stride: Sizes | None = None
    padding: NonNegSizes = 0
    ceil_mode: Bool = False
    count_include_pad: Bool = True


class AdaptivePool(Layer):
    primary: ClassVar = "size"
    kind: Literal["adaptive_avgpool", "adaptive_maxpool"]
    size: Sizes



class Upsample(Layer):
    primary: ClassVar = "scale"
    kind: Literal["upsample"]
    scale: PosFloatOrSizes | None = None
    size: Sizes | None = None
    mode: Literal["nearest", "linear", "bilinear", "bicubic", "trilinear"] = "nearest"
    align_corners: Bool | None = None

    @model_validator(mode="after")
    def _scale_or_size(self):
        if (self.scale is None) == (self.size is None):
            raise PydanticCustomError("bad_value", "give exactly one of scale and size")
        if self.align_corners is not None and self.mode == "nearest":
            raise PydanticCustomError("bad_value", "align_corners only applies to the interpolating modes, not nearest")
        return self


class Dropout(Layer):
    primary: ClassVar = "p"
    kind: Literal["dropout"]
    p: Probability = 0.5



class Linear(Layer):
    primary: ClassVar = "out"
    kind: Literal["linear"]
    out: PosInt
    bias: Bool = True



class Normalize(Layer):
    kind: Literal["normalize"]
    mean: Means
    std: Stds

    @model_validator(mode="after")
    def _same_length(self):
        if len(self.mean) != len(self.std):
            raise PydanticCustomError(
                "bad_value", "mean has {m} values but std has {s}", {"m": len(self.mean), "s": len(self.std)}
            )
        return self


# ---------------------------------------------------------------- blocks


class Group(Layer):
    primary: ClassVar = "layers"
    kind: Literal["group"]
    layers: list[AnyLayer] = Field(min_length=1)


class Residual(Layer):
    kind: Literal["residual"]
    body: list[AnyLayer] = Field(min_length=1)
    shortcut: Literal["auto", "identity"] | list[AnyLayer] = "auto"
    shortcut_name: Name = "shortcut"
    activation: Activation | None = "relu"


class BasicBlock(Layer):
    primary: ClassVar = "out"
    kind: Literal["basic_block"]
    out: PosInt
    stride: PosInt = 1


class Bottleneck(Layer):
    primary: ClassVar = "width"
    kind: Literal["bottleneck"]
    width: PosInt
    out: PosInt | None = None  # 4 * width by default, as in ResNet-50
    stride: PosInt = 1
    groups: PosInt = 1


class DenseBlock(Layer):
    kind: Literal["dense_block"]
    num_layers: PosInt
    growth: PosInt
    bn_size: PosInt | None = None  # set: torchvision's BN-ReLU-Conv1x1-BN-ReLU-Conv3x3 layer
    dropout: Probability = 0.0
    bias: Bool = False


class Transition(Layer):
    primary: ClassVar = "out"
    kind: Literal["transition"]
    out: PosInt | None = None
    compression: Fraction | None = None
    bias: Bool = False

    @model_validator(mode="after")
    def _out_or_compression(self):
        if (self.out is None) == (self.compression is None):
            raise PydanticCustomError("bad_value", "give exactly one of out and compression")
        return self


LAYER_MODELS: tuple[type[Layer], ...] = (
    Conv, ConvTranspose, BatchNorm, LayerNorm, GroupNorm, Parameterless, LeakyReLU, GELU, Softmax, MaxPool,
    AvgPool, AdaptivePool, Upsample, Dropout, Linear, Normalize, Group, Residual, BasicBlock, Bottleneck,
    DenseBlock, Transition,
)  # fmt: skip
MODELS_BY_KIND: dict[str, type[Layer]] = {
    kind: model for model in LAYER_MODELS for kind in model.model_fields["kind"].annotation.__args__
}
AnyLayer = Annotated[Union[LAYER_MODELS], Field(discriminator="kind")]  # noqa: UP007
CONTAINER_FIELDS = ("layers", "body", "shortcut")  # fields that hold lists of layers
LAYER_FIELDS = ("name", "sources", "merge")  # every kind has them; they are not arguments of the layer


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    archspec: Annotated[int, PlainValidator(_int_at_least(1))]
    name: Name
    description: str | None = None
    input: Annotated[tuple, PlainValidator(_input_shape)]
    layers: list[AnyLayer] = Field(min_length=1)

    @model_validator(mode="after")
    def _checks(self):
        if self.archspec != FORMAT_VERSION:
            raise PydanticCustomError(
                "format_version",
                "unsupported format version {v}; this archspec reads version {ok}",
                {"v": self.archspec, "ok": FORMAT_VERSION},
            )
        return self


# No model_rebuild() of Group and Residual: Spec's schema completes them for validation, and
# rebuilding them on their own would cost every `archspec check` about 8 ms more.


# ---------------------------------------------------------------- validation


def validate(expanded: Expanded) -> Spec:
    """The validated spec; `expanded` is the tagged data of expand.expand, which locates its nodes."""
    errors = list(expanded.errors)
    if not isinstance(expanded.data, dict):
        raise SpecError(errors)
    try:
        spec = Spec.model_validate(expanded.data)
    except ValidationError as exc:
        seen = {d.loc for d in errors}  # an expression already reported is not reported again as a bad value
        errors += [d for d in (_diagnostic(e, expanded) for e in exc.errors(include_url=False)) if d.loc not in seen]
    if errors:
        raise SpecError(in_file_order(errors))
    return spec


def _diagnostic(err: dict, doc: Expanded) -> Diagnostic:
    diagnostic = _describe_error(err, doc)
    return replace(diagnostic, notes=doc.notes(tuple(err["loc"])))


def _describe_error(err: dict, doc: Expanded) -> Diagnostic:
    loc, kind, ctx = tuple(err["loc"]), err["type"], err.get("ctx") or {}
    owner = _owner(loc)
    if kind == "union_tag_invalid":
        tag = ctx.get("tag")
        where = doc.locate(loc + (tag,), key=True)
        return Diagnostic(f"unknown layer kind {_quote(tag)}{did_you_mean(tag, MODELS_BY_KIND)}", "unknown-kind", where)
    if kind == "union_tag_not_found":
        return Diagnostic("a layer needs a kind", "layer-form", doc.locate(loc))
    if kind == "extra_forbidden":
        field = loc[-1]
        model = MODELS_BY_KIND.get(owner, Spec)
        fields = [f for f in model.model_fields if f != "kind"]
        what = f"{owner}" if owner in MODELS_BY_KIND else "a spec"
        return Diagnostic(
            f"unknown field {_quote(field)} for {what}{did_you_mean(field, fields)}", "unknown-field", doc.locate(loc, key=True)
        )
    if kind == "missing":
        what = owner if owner in MODELS_BY_KIND else "the spec"
        return Diagnostic(f"{what} needs the field {_quote(loc[-1])}", "missing-field", doc.locate(loc[:-1]))
    if kind == "bad_name":
        return Diagnostic(f"invalid name: {err['msg']}", "bad-name", doc.locate(loc))
    if loc == ("input",) and kind == "bad_value":
        return Diagnostic(f"input: {err['msg']}", "bad-input", doc.locate(loc))
    if kind == "format_version":
        return Diagnostic(err["msg"], "format-version", doc.locate(("archspec",)))
    field = loc[-1] if loc and isinstance(loc[-1], str) and loc[-1] not in MODELS_BY_KIND else None
    prefix = f"{owner}: " if owner in MODELS_BY_KIND else ""
    prefix += f"{field}: " if field else ""
    message = err["msg"] if kind == "bad_value" else f"{err['msg'][0].lower()}{err['msg'][1:]}, got {_show(err.get('input'))}"
    return Diagnostic(prefix + message, "bad-value", doc.locate(loc))


def _quote(value) -> str:
    return '"' + str(value).encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'


def _owner(loc: tuple) -> str | None:
    """The layer kind a pydantic `loc` is inside: the last tag in it."""
    for part in reversed(loc[:-1] if len(loc) > 1 else loc):
        if isinstance(part, str) and part in MODELS_BY_KIND:
            return part
    return loc[-1] if loc and loc[-1] in MODELS_BY_KIND else None
