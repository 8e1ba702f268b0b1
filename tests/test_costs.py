"""The static cost model against independent numbers: torchinfo's mult-adds, and receptive fields
measured with gradients through the compiled module."""

from __future__ import annotations

import copy
import json
import math
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from test_differential import random_specs
from torch import nn

from archspec import SpecError, analyze, compile_spec, measure
from archspec.analyses.costs import Field
from archspec.core.ir import Block, walk

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))

# torchinfo 1.8's "Total mult-adds" for one 3x224x224 image (../shared/reference and the issue)
MULT_ADDS = {
    "resnet18": 1_814_083_944,
    "resnet50": 4_089_238_376,
    "densenet121": 2_834_246_312,
    "densenet169": 3_360_002_728,
}


@pytest.mark.parametrize("name", sorted(MULT_ADDS))
def test_macs_equal_torchinfos_published_totals(name):
    model = analyze(ROOT / "specs" / f"{name}.yaml")
    assert model.body.macs == MULT_ADDS[name]
    costs = measure(model)
    assert costs.macs == MULT_ADDS[name] and costs.flops == 2 * MULT_ADDS[name]


TORCHINFO = json.loads((Path(__file__).parent / "data" / "torchinfo-reference.json").read_text())["models"]


@pytest.mark.parametrize("name", sorted(TORCHINFO), ids=str)
def test_macs_and_params_equal_torchinfo_layer_by_layer(name):
    """torchinfo's summary of torchvision's model, or of the compiled spec (tests/data, recorded by
    tests/data/make_torchinfo_reference.py): the totals, and each layer's count by its path."""
    reference = TORCHINFO[name]
    spec = ROOT / "specs" / f"{name.removeprefix('spec:')}.yaml"
    model = analyze(spec, input_shape=tuple(reference["input"][1:]))
    ours = {node.path: node for node in walk(model.body) if not isinstance(node, Block)}
    beyond = 0  # what archspec counts and torchinfo does not: a linear's positions after the first
    for path, _, _, _, macs, repeated in reference["layers"]:
        if path in ours and not repeated:  # torchvision's ResNets run one ReLU module several times
            positions = _linear_positions(ours[path])
            assert ours[path].macs == macs * positions, path
            beyond += macs * (positions - 1)
    assert model.body.params == reference["total_params"]
    assert model.body.macs == reference["total_mult_adds"] + beyond


def _linear_positions(node) -> int:
    """torchinfo counts a linear once per sample whatever its input (its probe linear_3d in tests/data);
    archspec counts it at every position of a (..., features) input, as the mult-adds rule says:
    ConvNeXt's MLPs, which torchinfo undercounts by H x W."""
    return math.prod(node.out_shape[:-1]) if node.kind == "linear" else 1


def test_macs_scale_with_the_batch_only_in_the_totals():
    costs = measure(analyze(ROOT / "specs" / "resnet18.yaml"), batch=8)
    assert costs.macs == MULT_ADDS["resnet18"]  # per sample
    assert costs.peak_training_bytes > measure(analyze(ROOT / "specs" / "resnet18.yaml")).peak_training_bytes


# ---------------------------------------------------------------- receptive fields


def _measurable(module: nn.Module) -> nn.Module:
    """`module` made so that the gradient of one output reaches exactly its receptive field: positive
    weights (no cancellation), norms at rest, max pooling as average pooling of the same geometry
    (a max passes its gradient to one input only)."""
    for name, child in list(module.named_children()):
        if isinstance(child, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
            pool = {nn.MaxPool1d: nn.AvgPool1d, nn.MaxPool2d: nn.AvgPool2d, nn.MaxPool3d: nn.AvgPool3d}[type(child)]
            setattr(module, name, pool(child.kernel_size, child.stride, child.padding, child.ceil_mode))
        else:
            _measurable(child)
    with torch.no_grad():
        for parameter in module.parameters(recurse=False):
            fan_in = parameter[0].numel() if parameter.dim() > 1 else 1
            parameter.copy_(torch.full_like(parameter, 1.0 / fan_in))
    return module


def _predicted(field: Field, index: tuple[int, ...], sizes: tuple[int, ...]) -> list[tuple[int, int]]:
    """The input positions (first, last) per dim that output position `index` sees, clipped to the input."""
    spans = []
    for i, size, jump, pad, n in zip(index, field.size, field.jump, field.padding, sizes):
        first = i * jump - pad
        spans.append((max(0, int(first)), min(n - 1, int(first + size - 1))))
    return spans


def _measured(module, path: str, input_shape, index) -> list[tuple[int, int]]:
    outputs = {}
    target = module.get_submodule(path)
    handle = target.register_forward_hook(lambda m, i, out: outputs.setdefault("out", out))
    x = (torch.rand(1, *input_shape) + 0.5).requires_grad_()
    module.eval()(x)
    handle.remove()
    out = outputs["out"]
    (grad,) = torch.autograd.grad(out[(0, slice(None), *index)].sum(), x)
    seen = grad[0].abs().sum(0).nonzero()
    return [(int(seen[:, d].min()), int(seen[:, d].max())) for d in range(seen.shape[1])]


CASES = [  # (spec, input the field is measured at, layers)
    ("resnet50", (3, 512, 512), ["conv1", "maxpool", "layer1", "layer2.0", "layer3", "layer4"]),
    ("vgg16", (3, 224, 224), ["features.4", "features.16", "features.29", "features.30"]),
    ("unet_small", (1, 96, 96), ["encoder.pool1", "bridge"]),
    ("unet", (3, 64, 64), ["pool1", "enc3", "bridge"]),
    ("densenet121", (3, 224, 224), ["features.denseblock1", "features.transition1", "features.denseblock2"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, input_shape, paths", CASES, ids=[case[0] for case in CASES])
def test_receptive_fields_equal_gradients_through_the_module(name, input_shape, paths):
    """Where every window on the way slides, a field is exact: the positions each output sees."""
    spec = ROOT / "specs" / f"{name}.yaml"
    costs = measure(analyze(spec, input_shape=input_shape))
    module = _measurable(compile_spec(spec))
    rows = {layer.path: layer for layer in costs.layers}
    for path in paths:
        row = rows[path]
        sizes = row.out_shape[1:]
        for index in (tuple(n // 2 for n in sizes), (0,) * len(sizes), tuple(n - 1 for n in sizes)):
            expected = _predicted(row.field, index, input_shape[1:])
            assert _measured(module, path, input_shape, index) == expected, f"{name} {path} at {index}"


def test_adaptive_pooling_to_one_position_sees_everything():
    """As a global pool does; squeeze-excitation multiplies such a gate back onto its input, whose
    field must then stay the input's (it once came out as 78285599643 x 78285599643)."""
    spec = {
        "archspec": 1, "name": "se", "input": [4, 9, 9],
        "layers": [
            {"conv": {"name": "conv", "out": 4, "kernel": 3}},
            {"adaptive_avgpool": {"name": "pool", "size": 1}},
            {"conv": {"name": "gate", "out": 4, "kernel": 1}},
            {"identity": {"name": "scaled", "from": ["conv", "gate"], "merge": "mul"}},
        ],
    }  # fmt: skip
    fields = {layer.path: layer.field for layer in measure(analyze(spec)).layers}
    assert fields["conv"].size == (3, 3) and not fields["conv"].whole
    assert fields["pool"].whole and fields["gate"].whole and fields["scaled"].whole  # the gate saw everything
    spec["layers"][1:] = [{"adaptive_avgpool": {"name": "rows", "size": [1, 3]}}]  # one position in H only
    assert not next(layer.field for layer in measure(analyze(spec)).layers if layer.path == "rows").whole


def test_the_field_where_branches_meet_is_the_widest_in_each_dim():
    """Inception v3's factorised convolutions: a 1x7 and a 7x1 branch, concatenated, see 7 x 7
    (neither branch's field is the widest in both dims)."""
    spec = {
        "archspec": 1, "name": "branches", "input": [2, 15, 15],
        "layers": [
            {"conv": {"name": "wide", "out": 2, "kernel": [1, 7], "padding": [0, 3]}},
            {"conv": {"name": "tall", "from": "input", "out": 2, "kernel": [7, 1], "padding": [3, 0]}},
            {"identity": {"name": "both", "from": ["wide", "tall"], "merge": "concat"}},
        ],
    }  # fmt: skip
    row = next(layer for layer in measure(analyze(spec)).layers if layer.path == "both")
    assert row.field.size == (7, 7)
    module = _measurable(compile_spec(spec))
    for index in ((7, 7), (0, 0), (14, 3)):
        assert _measured(module, "both", (2, 15, 15), index) == _predicted(row.field, index, (15, 15))


@pytest.mark.slow
def test_receptive_fields_through_upsampling_have_the_measured_width():
    """After a transposed convolution, neighbouring outputs read the same inputs (it is not a
    sliding window), so only the width is exact: the widest field among neighbouring outputs."""
    input_shape = (1, 160, 160)
    spec = ROOT / "specs" / "unet_small.yaml"
    costs = measure(analyze(spec, input_shape=input_shape))
    module = _measurable(compile_spec(spec))
    for row in costs.layers:
        if row.path not in ("up2", "dec2", "up1", "dec1", "head"):
            continue
        middle = row.out_shape[1] // 2
        widths = []
        for i in range(middle - 2, middle + 2):
            (first, last), _ = _measured(module, row.path, input_shape, (i, i))
            widths.append(last - first + 1)
        assert max(widths) == row.field.size[0], row.path


def test_resnet50_last_stage_sees_427_pixels_with_jump_32():
    fields = {row.path: row.field for row in measure(analyze(ROOT / "specs" / "resnet50.yaml")).layers}
    assert fields["layer4"].size == (427, 427) and fields["layer4"].jump == (32, 32)
    assert fields["layer4"].describe() == "427x427 /32"
    assert fields["avgpool"].whole and fields["fc"].describe() == "all"


def test_paths_with_different_jumps_are_noted():
    spec = (
        "archspec: 1\nname: m\ninput: [3, 32, 32]\nlayers:\n"
        "  - identity: {name: x}\n"
        "  - maxpool: {name: a, kernel: 4}\n"  # 8 positions, 4 apart
        "  - maxpool: {name: b, kernel: 2, from: x}\n"
        "  - conv: {name: c, out: 3, kernel: 9}\n"  # 8 positions, 2 apart
        "  - conv: {name: d, out: 4, kernel: 1, from: [a, c]}\n"
    )
    costs = measure(analyze(spec))
    assert any("different jumps" in note for note in costs.notes), costs.notes
    assert {row.path: row.field for row in costs.layers}["d"].size == (Fraction(18), Fraction(18))


# ---------------------------------------------------------------- valid input sizes


def _runs_statically(spec, shape: tuple[int, ...], declared) -> bool:
    """archspec's own shape check at another input: no error, and the same model (every layer, its
    arguments and parameter count; an automatic shortcut's stride is chosen from the sizes)."""
    try:
        model = analyze(spec, input_shape=shape)
    except SpecError:
        return False
    return _layers(model) == _layers(declared)


def _layers(model) -> dict[str, tuple]:
    return {node.path: (node.kind, node.params, dict(node.args)) for node in walk(model.body)}


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_valid_sizes_agree_with_the_shape_check_at_each_size(spec):
    declared = analyze(spec)
    report = measure(declared).input_sizes
    assert len(report) == len(declared.input_shape) - 1
    for dim, sizes in enumerate(report):
        top = declared.input_shape[dim + 1] + 40
        for n in sorted({*range(1, 40), *range(top - 40, top, 3)}):
            shape = list(declared.input_shape)
            shape[dim + 1] = n
            assert sizes.accepts(n) == _runs_statically(spec, tuple(shape), declared), (spec.stem, sizes, n)


SIZE_CASES = {
    "densenet121": "any H >= 29",
    "unet_small": "H >= 4, divisible by 4",
    "vgg16": "any H >= 32",
    "conv_unit": "32 <= H <= 33",
    "resnet18": "any H >= 1",
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SIZE_CASES))
def test_valid_sizes_around_each_bound_run_in_torch(name):
    spec = ROOT / "specs" / f"{name}.yaml"
    sizes = measure(analyze(spec)).input_sizes[0]
    assert sizes.describe() == SIZE_CASES[name]
    module = compile_spec(spec).eval()
    channels, _, width = analyze(spec).input_shape
    smallest = sizes.smallest
    tried = {smallest - 1, smallest, smallest + 1, smallest + sizes.period, smallest + sizes.period + 1}
    tried |= {sizes.largest + 1} if sizes.largest else set()
    for n in sorted(size for size in tried if size >= 1):
        assert _runs_in_torch(module, (channels, n, width)) == sizes.accepts(n), f"{name}: H = {n}"


def _runs_in_torch(module, shape: tuple[int, ...]) -> bool:
    try:
        with torch.no_grad():
            module(torch.rand(2, *shape))
    except (RuntimeError, ValueError):
        return False
    return True


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(random_specs())
def test_valid_sizes_of_random_specs_agree_with_torch(source):
    """The model built at the spec's input, run at each size: torch is the judge here (the shape stage
    at another input may choose another automatic shortcut stride). Torch broadcasts an add of sizes
    1 and n where archspec requires equal shapes, so specs with residual adds or `add` merges are left
    to the test against the shape stage above."""
    try:
        declared = analyze(copy.deepcopy(source))
    except SpecError:
        assume(False)
    nodes = list(walk(declared.body))
    assume(not any(getattr(node, "flow", None) == "residual" or node.merge == "add" for node in nodes))
    module = compile_spec(copy.deepcopy(source)).eval()
    for dim, sizes in enumerate(measure(declared).input_sizes):
        for n in range(1, declared.input_shape[dim + 1] + 12):
            shape = list(declared.input_shape)
            shape[dim + 1] = n
            assert sizes.accepts(n) == _runs_in_torch(module, tuple(shape)), (sizes, n)


def test_training_memory_estimate_is_within_ten_percent_of_a_measured_step():
    """benchmarks/peak_memory_reference.json: torchvision's models stepped on the CPU, peak RSS growth
    over the process that already held weights, buffers and input (benchmarks/measure_peak_memory.py)."""
    measured = json.loads((ROOT / "benchmarks" / "peak_memory_reference.json").read_text())["rows"]
    for row in measured:
        costs = measure(analyze(ROOT / "specs" / f"{row['model']}.yaml"), batch=row["batch"])
        growth = costs.peak_training_bytes - costs.param_bytes - costs.buffer_bytes - costs.batch * costs.input_bytes
        assert 0.9 < growth / row["peak_bytes_over_baseline"] < 1.1, row


# ---------------------------------------------------------------- the newer layer kinds, one by one


def _one_layer(input_shape, *layers) -> dict:
    return {"archspec": 1, "name": "one", "input": list(input_shape), "layers": list(layers)}


SAVES_CASES = [  # (layer, input shape): kinds whose `saves` is checked against what autograd packs
    ("relu6", [3, 4, 4]),
    ("hardsigmoid", [3, 4, 4]),
    ("mish", [3, 4, 4]),
    ({"elu": 0.5}, [3, 4, 4]),
    ({"softplus": {"beta": 2}}, [3, 4, 4]),
    ({"hardtanh": {"min": 0, "max": 6}}, [3, 4, 4]),
    ({"prelu": {"per_channel": True}}, [3, 4, 4]),
    ("prelu", [3, 5]),
    ({"instance_norm": {"affine": True, "track_running_stats": True}}, [3, 4, 4]),
    ("instance_norm", [3, 5]),
    ({"dropout": {"p": 0.3, "channels": True}}, [3, 4, 4]),
    ({"zero_pad": {"padding": 1, "after": [0, 2]}}, [3, 4, 4]),
    ({"pixel_shuffle": 2}, [8, 4, 4]),
    ({"pixel_unshuffle": 2}, [3, 4, 4]),
    ({"channel_shuffle": 3}, [6, 4, 4]),
]


@pytest.mark.parametrize("layer, input_shape", SAVES_CASES, ids=lambda v: str(v) if isinstance(v, (str, dict)) else "")
def test_saves_is_what_autograd_keeps(layer, input_shape):
    """A kind's `saves` against the tensors a training forward packs for backward (parameters aside):
    the input, the output, or nothing of the layer's size."""
    from archspec import registry

    source = _one_layer(input_shape, layer)
    op = analyze(source).body.children[0]
    saves = registry.layer_kind(op.kind).saves
    saves = set(saves(op) if callable(saves) else saves)
    module = compile_spec(source).train()
    params = {p.untyped_storage().data_ptr() for p in module.parameters()}
    x = torch.randn(2, *input_shape, requires_grad=True)
    packed = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: packed.append(t) or t, lambda t: t):
        out = module(x)
    kept = set()
    for tensor in packed:
        where = tensor.untyped_storage().data_ptr()
        if where == x.untyped_storage().data_ptr():
            kept.add("input")
        elif where == out.untyped_storage().data_ptr():
            kept.add("output")
        elif where not in params and tensor.numel() * tensor.element_size() >= out.numel():
            kept.add(f"a {tuple(tensor.shape)} {tensor.dtype} tensor")  # as large as a mask
    assert kept == saves - {"view"}, op.kind


NEW_WINDOWS = _one_layer(
    [2, 20, 18],
    {"conv": {"name": "c1", "out": 3, "kernel": 3}},
    {"zero_pad": {"name": "pad", "padding": [1, 0], "after": [1, 2]}},
    {"pixel_unshuffle": {"name": "down", "factor": 2}},
    {"conv": {"name": "c2", "out": 8, "kernel": 3, "padding": [0, 1]}},
    {"channel_shuffle": {"name": "shuffle", "groups": 2}},
    {"pixel_shuffle": {"name": "up", "factor": 2}},
    {"conv": {"name": "c3", "out": 2, "kernel": 3}},
)


def _sees_anything(module, path: str, input_shape, index) -> bool:
    outputs = {}
    handle = module.get_submodule(path).register_forward_hook(lambda m, i, out: outputs.setdefault("out", out))
    x = (torch.rand(1, *input_shape) + 0.5).requires_grad_()
    module.eval()(x)
    handle.remove()
    (grad,) = torch.autograd.grad(outputs["out"][(0, slice(None), *index)].sum(), x, allow_unused=True)
    return grad is not None and bool(grad.abs().sum() > 0)


def test_receptive_fields_through_padding_and_pixel_shuffles_equal_gradients():
    """zero_pad and pixel_unshuffle slide: their fields are exact at every output that sees the
    input (one made of padding alone sees nothing). After a pixel_shuffle neighbouring outputs read
    the same input, so, as after a transposed convolution, the field is exact at even positions and
    elsewhere no wider. Each dim is walked with the others at their middle."""
    input_shape = tuple(NEW_WINDOWS["input"])
    costs = measure(analyze(copy.deepcopy(NEW_WINDOWS)))
    module = _measurable(compile_spec(copy.deepcopy(NEW_WINDOWS)))
    rows = {layer.path: layer for layer in costs.layers}
    described = {path: rows[path].field.describe() for path in ("pad", "down", "c2", "up", "c3")}
    assert described == {"pad": "3x3 /1", "down": "4x4 /2", "c2": "8x8 /2", "up": "8x8 /1", "c3": "10x10 /1"}
    padding_only = {"pad": ({0, 19}, {16, 17}), "down": (set(), {8})}  # positions of zeros the padding made
    for path in ("c1", "pad", "down", "c2", "shuffle", "up", "c3"):
        row = rows[path]
        middle = tuple(n // 2 for n in row.out_shape[1:])
        for dim, size in enumerate(row.out_shape[1:]):
            widths = []
            for i in range(size):
                index = (*middle[:dim], i, *middle[dim + 1 :])
                expected = _predicted(row.field, index, input_shape[1:])[dim]
                if i in padding_only.get(path, (set(), set()))[dim]:
                    assert not _sees_anything(module, path, input_shape, index), f"{path} at {index}"
                    continue
                first, last = _measured(module, path, input_shape, index)[dim]
                widths.append(last - first + 1)
                if path not in ("up", "c3") or i % 2 == 0:
                    assert (first, last) == expected, f"{path} at {index}"
            assert max(widths) == row.field.size[dim], path


NEW_KIND_SIZES = {
    "pixel-unshuffle-shuffle": (
        _one_layer([2, 12, 10], {"pixel_unshuffle": 2}, {"conv": {"out": 8, "kernel": 3, "padding": 1}},
                   {"pixel_shuffle": 2}),
        ("H >= 2, divisible by 2", "W >= 2, divisible by 2"),
    ),
    "zero-pad-then-unshuffle": (
        _one_layer([3, 9, 9], {"zero_pad": {"padding": 0, "after": 1}}, {"pixel_unshuffle": 2},
                   {"conv": {"out": 2, "kernel": 3}}),
        ("H >= 5, H mod 2 in {1}", "W >= 5, W mod 2 in {1}"),
    ),
    "unshuffle-by-3": (
        _one_layer([1, 9, 6], {"pixel_unshuffle": 3}),
        ("H >= 3, divisible by 3", "W >= 3, divisible by 3"),
    ),
    "channel-mixing": (
        _one_layer([8, 6, 5], {"channel_shuffle": 2}, {"instance_norm": {"affine": True}},
                   {"dropout": {"channels": True}}, {"prelu": {"per_channel": True}}, "relu6", "hardsigmoid"),
        ("any H >= 1", "any W >= 1"),
    ),
    "zero-pad-1d": (_one_layer([4, 8], {"zero_pad": 2}, {"conv": {"out": 2, "kernel": 7}}), ("any L >= 3",)),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(NEW_KIND_SIZES))
def test_valid_sizes_through_the_newer_kinds_agree_with_the_shape_check_and_torch(name):
    source, described = NEW_KIND_SIZES[name]
    declared = analyze(copy.deepcopy(source))
    report = measure(declared).input_sizes
    assert tuple(sizes.describe() for sizes in report) == described
    module = compile_spec(copy.deepcopy(source)).eval()
    for dim, sizes in enumerate(report):
        for n in range(1, declared.input_shape[dim + 1] + 13):
            shape = list(declared.input_shape)
            shape[dim + 1] = n
            static = _runs_statically(copy.deepcopy(source), tuple(shape), declared)
            assert sizes.accepts(n) == static == _runs_in_torch(module, tuple(shape)), (name, sizes, n)
