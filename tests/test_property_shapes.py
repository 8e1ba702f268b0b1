"""Property tests: archspec's static shapes agree with PyTorch on random stacks of spatial layers.

Each example is a stack of 1 to 6 conv / conv_transpose / maxpool / avgpool / upsample /
adaptive_avgpool layers on a random (channels, *spatial) input with 1 to 3 spatial dims. The
stack, written as spec data, goes through `archspec.analyze`; the same stack is also built here
from torch.nn layers (independently of archspec's torch_builder) and run on a zero tensor. Both
must agree on whether the stack is valid, on which layer first fails, and on every shape.

ARCHSPEC_HYPOTHESIS_EXAMPLES sets the number of examples per property (default 300, about 15 s
in all on two cores when every example passes; shrinking a failure takes longer).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

import archspec
from archspec.core import ir

EXAMPLES = int(os.environ.get("ARCHSPEC_HYPOTHESIS_EXAMPLES", "300"))
PROPERTY_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

MAX_LAYERS = 6
MAX_CHANNELS = 6
MAX_INPUT_SIZE = {1: 20, 2: 12, 3: 6}  # per spatial dim, by number of spatial dims
MAX_ELEMENTS = 40_000  # examples whose tensors grow past this are discarded, to keep runs fast
SHAPE_ERROR_CODES = {"output-size", "bad-arg", "rank", "channel-mismatch"}

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths:UserWarning")


# ---------------------------------------------------------------- spec strategies
# A layer's fields are drawn as spec data; None marks a field left out, so archspec's and
# torch's defaults (which agree) are exercised too.


def per_dim(values: st.SearchStrategy, dims: int) -> st.SearchStrategy:
    """One value for every spatial dim, or a list of one value per dim."""
    return st.one_of(values, st.lists(values, min_size=dims, max_size=dims))


def optional(values: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.none(), values)


def without_unset(fields: dict) -> dict:
    return {name: value for name, value in fields.items() if value is not None}


def common_divisors(a: int, b: int) -> list[int]:
    return [g for g in range(1, min(a, b) + 1) if a % g == 0 and b % g == 0]


def groups(channels_in: int, channels_out: int) -> st.SearchStrategy:
    """Mostly groups dividing both channel counts; sometimes any small number, to test the check."""
    return st.one_of(st.sampled_from(common_divisors(channels_in, channels_out)), st.integers(1, 4))


channel_counts = st.integers(1, MAX_CHANNELS)
strides = st.integers(1, 3)
dilations = st.integers(1, 3)
booleans = st.booleans()


@st.composite
def conv_fields(draw, channels: int, dims: int) -> dict:
    out = draw(channel_counts)
    padding = st.one_of(per_dim(st.integers(0, 3), dims), st.sampled_from(["same", "valid"]))
    return without_unset(dict(
        out=out,
        kernel=draw(per_dim(st.integers(1, 5), dims)),
        stride=draw(optional(per_dim(strides, dims))),
        padding=draw(optional(padding)),
        dilation=draw(optional(per_dim(dilations, dims))),
        groups=draw(optional(groups(channels, out))),
        bias=draw(optional(booleans)),
    ))  # fmt: skip


@st.composite
def conv_transpose_fields(draw, channels: int, dims: int) -> dict:
    out = draw(channel_counts)
    return without_unset(dict(
        out=out,
        kernel=draw(per_dim(st.integers(1, 4), dims)),
        stride=draw(optional(per_dim(strides, dims))),
        padding=draw(optional(per_dim(st.integers(0, 3), dims))),
        output_padding=draw(optional(per_dim(st.integers(0, 2), dims))),
        dilation=draw(optional(per_dim(st.integers(1, 2), dims))),
        groups=draw(optional(groups(channels, out))),
    ))  # fmt: skip


def pool_padding(kernel: int | list[int], dims: int) -> st.SearchStrategy:
    """Mostly padding torch accepts (at most half the kernel); sometimes more, to test that check."""
    at_most_half = min(kernel) // 2 if isinstance(kernel, list) else kernel // 2
    return st.one_of(per_dim(st.integers(0, at_most_half), dims), per_dim(st.integers(0, 2), dims))


@st.composite
def maxpool_fields(draw, channels: int, dims: int) -> dict:
    kernel = draw(per_dim(st.integers(1, 4), dims))
    return without_unset(dict(
        kernel=kernel,
        stride=draw(optional(per_dim(strides, dims))),
        padding=draw(optional(pool_padding(kernel, dims))),
        dilation=draw(optional(per_dim(dilations, dims))),
        ceil_mode=draw(optional(booleans)),
    ))  # fmt: skip


@st.composite
def avgpool_fields(draw, channels: int, dims: int) -> dict:
    kernel = draw(per_dim(st.integers(1, 4), dims))
    return without_unset(dict(
        kernel=kernel,
        stride=draw(optional(per_dim(strides, dims))),
        padding=draw(optional(pool_padding(kernel, dims))),
        ceil_mode=draw(optional(booleans)),
        count_include_pad=draw(optional(booleans)),
    ))  # fmt: skip


@st.composite
def upsample_fields(draw, channels: int, dims: int) -> dict:
    float_scales = st.floats(min_value=0.2, max_value=3.0, allow_nan=False, allow_infinity=False)
    by_scale = st.builds(dict, scale=st.one_of(per_dim(st.integers(1, 3), dims), float_scales))
    by_size = st.builds(dict, size=per_dim(st.integers(1, 12), dims))
    return draw(st.one_of(by_scale, by_size))


@st.composite
def adaptive_avgpool_fields(draw, channels: int, dims: int) -> dict:
    return {"size": draw(per_dim(st.integers(1, 8), dims))}


FIELD_STRATEGIES = {
    "conv": conv_fields,
    "conv_transpose": conv_transpose_fields,
    "maxpool": maxpool_fields,
    "avgpool": avgpool_fields,
    "upsample": upsample_fields,
    "adaptive_avgpool": adaptive_avgpool_fields,
}


@st.composite
def specs(draw) -> dict:
    """A spec dict: a random input shape and a stack of spatial layers."""
    dims = draw(st.integers(1, 3))
    spatial = draw(st.lists(st.integers(1, MAX_INPUT_SIZE[dims]), min_size=dims, max_size=dims))
    input_shape = [draw(channel_counts), *spatial]
    channels, layers = input_shape[0], []
    for _ in range(draw(st.integers(1, MAX_LAYERS))):
        kind = draw(st.sampled_from(sorted(FIELD_STRATEGIES)))
        fields = draw(FIELD_STRATEGIES[kind](channels, dims))
        layers.append({kind: fields})
        channels = fields.get("out", channels)
    return {"archspec": 1, "name": "prop", "input": input_shape, "layers": layers}


def layer_kind_and_fields(layer: dict) -> tuple[str, dict]:
    ((kind, fields),) = layer.items()
    return kind, fields


# ---------------------------------------------------------------- the torch oracle

TORCH_FAMILIES = {
    "conv": "Conv",
    "conv_transpose": "ConvTranspose",
    "maxpool": "MaxPool",
    "avgpool": "AvgPool",
    "adaptive_avgpool": "AdaptiveAvgPool",
}
TORCH_ARG_NAMES = {"out": "out_channels", "kernel": "kernel_size", "scale": "scale_factor"}


def torch_arg(value):
    return tuple(value) if isinstance(value, list) else value


def torch_layer(kind: str, fields: dict, in_channels: int, dims: int) -> nn.Module:
    """The torch.nn layer for one spec layer, written from torch's documented signatures."""
    kwargs = {TORCH_ARG_NAMES.get(name, name): torch_arg(value) for name, value in fields.items()}
    if kind == "upsample":
        return nn.Upsample(mode="nearest", **kwargs)
    if kind == "adaptive_avgpool":
        kwargs["output_size"] = kwargs.pop("size")
    if kind in ("conv", "conv_transpose"):
        kwargs["in_channels"] = in_channels
    return getattr(nn, f"{TORCH_FAMILIES[kind]}{dims}d")(**kwargs)


@dataclass
class TorchRun:
    shapes: list[tuple[int, ...]] = field(default_factory=list)  # per-sample output of each layer run
    failed_at: int | None = None  # the index of the layer torch rejected
    error: str = ""
    too_large: bool = False  # stopped early: a tensor grew past MAX_ELEMENTS


@torch.no_grad()
def run_in_torch(spec: dict) -> TorchRun:
    """Build and run the stack layer by layer on zeros of batch 1; a torch error marks it invalid."""
    dims = len(spec["input"]) - 1
    x = torch.zeros(1, *spec["input"])
    run = TorchRun()
    for index, layer in enumerate(spec["layers"]):
        if x.numel() > MAX_ELEMENTS:
            run.too_large = True
            return run
        kind, fields = layer_kind_and_fields(layer)
        try:
            x = torch_layer(kind, fields, x.shape[1], dims)(x)
        except (RuntimeError, ValueError) as exc:
            run.failed_at, run.error = index, str(exc).splitlines()[0]
            return run
        if x.numel() == 0:
            # ConvTranspose2d/3d return an empty tensor for an output size of exactly 0 where every
            # other layer raises; a network with an empty activation is as broken, so count it invalid.
            run.failed_at, run.error = index, f"torch returned an empty output of shape {tuple(x.shape)}"
            return run
        run.shapes.append(tuple(x.shape[1:]))
    return run


# ---------------------------------------------------------------- archspec's static answer


@dataclass
class StaticResult:
    shapes: list[tuple[int, ...]]  # out_shape of every op, in forward order; empty if rejected
    diagnostics: list[archspec.Diagnostic]
    output_shape: tuple[int, ...] | None = None


def analyze_statically(spec: dict) -> StaticResult:
    try:
        model = archspec.analyze(spec)
    except archspec.SpecError as exc:
        return StaticResult([], exc.diagnostics)
    ops = [node for node in ir.walk(model.body) if isinstance(node, ir.Op)]
    return StaticResult([op.out_shape for op in ops], [], model.body.out_shape)


def names_layer(diagnostic: archspec.Diagnostic, index: int, kind: str) -> bool:
    """Whether the diagnostic is about top-level layer `index` (an unnamed layer is named by its index).

    A diagnostic from a dict spec has no useful line, so the layer is read from the message,
    which names it as "<index> (<kind>)".
    """
    return re.search(rf"(^|\s){index} \({re.escape(kind)}\)", diagnostic.message) is not None


# ---------------------------------------------------------------- properties


@PROPERTY_SETTINGS
@given(spec=specs())
def test_static_shapes_agree_with_torch(spec):
    torch_run = run_in_torch(spec)
    assume(not torch_run.too_large)
    static = analyze_statically(spec)
    report = "\n".join(d.format() for d in static.diagnostics)

    if torch_run.failed_at is None:
        assert not static.diagnostics, f"torch runs the stack to {torch_run.shapes}, archspec rejects it:\n{report}"
        assert static.shapes == torch_run.shapes
        return

    kind, _ = layer_kind_and_fields(spec["layers"][torch_run.failed_at])
    assert static.diagnostics, (
        f"torch rejects layer {torch_run.failed_at} ({kind}): {torch_run.error}\n"
        f"but archspec accepts the stack, with shapes {static.shapes}"
    )
    # The first error is torch's; later ones only follow an error whose output is still known (groups,
    # a pooling padding PyTorch refuses).
    diagnostic = static.diagnostics[0]
    assert len(static.diagnostics) == 1 or diagnostic.code in ("channel-mismatch", "bad-arg"), report
    assert diagnostic.code in SHAPE_ERROR_CODES, report
    assert names_layer(diagnostic, torch_run.failed_at, kind), (
        f"torch rejects layer {torch_run.failed_at} ({kind}): {torch_run.error}\nbut archspec says:\n{report}"
    )


@PROPERTY_SETTINGS
@given(spec=specs())
def test_compiled_module_output_matches_static_shape(spec):
    static = analyze_statically(spec)
    assume(not static.diagnostics)
    assume(all(torch.Size(shape).numel() <= MAX_ELEMENTS for shape in static.shapes))

    module = archspec.compile_spec(spec)
    with torch.no_grad():
        output = module(torch.zeros(1, *spec["input"]))

    assert tuple(output.shape[1:]) == static.output_shape


def test_both_sides_on_a_stack_worked_out_by_hand():
    """A check of the harness itself: a stack in the generated format, with shapes computed by hand."""
    spec = {
        "archspec": 1,
        "name": "prop",
        "input": [4, 9, 7],
        "layers": [
            {"conv": {"out": 6, "kernel": [3, 2], "padding": "same", "groups": 2}},
            {"maxpool": {"kernel": 2, "ceil_mode": True}},
            {"upsample": {"scale": 1.5}},
            {"adaptive_avgpool": {"size": [2, 3]}},
        ],
    }
    assert analyze_statically(spec).shapes == run_in_torch(spec).shapes == [(6, 9, 7), (6, 5, 4), (6, 7, 6), (6, 2, 3)]
