"""Every spec in specs/: static shapes and parameter counts equal what torch computes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from archspec import analyze, compile_spec, registry
from archspec.core.ir import Op, walk

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))

EXPECTED_PARAMS = {"conv_unit": 10_012, "densenet": 758_226, "unet": 31_037_698}  # the zoo: test_zoo.py


def main_shape(output) -> tuple[int, ...]:
    """Per-sample shape of a module's output; a group that hands out inner outputs returns a tuple."""
    return tuple((output[0] if isinstance(output, tuple) else output).shape[1:])


def real_shapes(module: torch.nn.Module, batch: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Per-sample output shape of every submodule, keyed by qualified name, from one forward pass."""
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [
        sub.register_forward_hook(lambda _m, _i, out, name=name: shapes.__setitem__(name, main_shape(out)))
        for name, sub in module.named_modules()
        if name
    ]
    with torch.no_grad():
        module(batch)
    for hook in hooks:
        hook.remove()
    return shapes


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_static_shapes_equal_real_shapes(path):
    model = analyze(path)
    module = compile_spec(path).eval()
    real = real_shapes(module, torch.randn(2, *model.input_shape))
    nodes = [node for node in walk(model.body) if node.path]
    bare = [node for node in nodes if isinstance(node, Op) and registry.layer_kind(node.kind).parameter]
    static = {node.path: node.out_shape for node in nodes if node not in bare}  # layer_scale: no module to hook
    assert real == static
    parameters = dict(module.named_parameters())
    assert all(parameters[node.path].numel() == node.params for node in bare)
    assert tuple(module.input_shape) == model.input_shape


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_static_parameter_count_equals_real(path):
    model = analyze(path)
    module = compile_spec(path)
    assert sum(p.numel() for p in module.parameters()) == model.body.params
    if path.stem in EXPECTED_PARAMS:
        assert model.body.params == EXPECTED_PARAMS[path.stem]


def test_conv_unit_is_the_seed_worked_example():
    model = analyze(ROOT / "specs" / "conv_unit.yaml")
    assert [child.out_shape for child in model.body.children] == [
        (6, 30, 30), (6, 15, 15), (6, 13, 13), (6, 12, 12), (864,), (10,),
    ]  # fmt: skip
    assert model.body.children[-1].in_shape == (864,)  # in_features, inferred


def test_seed_densenet_channels():
    model = analyze(ROOT / "specs" / "densenet.yaml")
    block_channels = [c.out_shape[0] for c in model.body.children if c.kind in ("dense_block", "transition")]
    assert block_channels == [192, 96, 224, 112, 240, 120, 248]
