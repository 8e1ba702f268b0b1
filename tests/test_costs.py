"""The static cost model against independent numbers: torchinfo's mult-adds, and receptive fields
measured with gradients through the compiled module."""

from __future__ import annotations

import copy
import json
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from test_differential import random_specs
from torch import nn

from archspec import SpecError, analyze, compile_spec, measure
from archspec.costs import Field
from archspec.ir import Block, walk

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
    assert (model.body.macs, model.body.params) == (reference["total_mult_adds"], reference["total_params"])
    ours = {node.path: node.macs for node in walk(model.body) if not isinstance(node, Block)}
    for path, _, _, _, macs, repeated in reference["layers"]:
        if path in ours and not repeated:  # torchvision's ResNets run one ReLU module several times
            assert ours[path] == macs, path


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
