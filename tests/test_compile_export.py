"""torch.compile(fullgraph=True) and torch.export for every spec in specs/, live (compile_spec) and
emitted (emit_python): each traces to one graph and computes what the eager module computes.

fullgraph=True makes dynamo raise at the first graph break, so a compiled call that returns has traced
the whole forward as one graph; the zoo is compiled with the "eager" backend (dynamo's tracing, then
the captured graph run as it is), which keeps the suite's time bounded. Inductor, the default backend,
which generates and builds code, compiles small specs (and trains one) in the full suite. torch.export
has no breaks to allow: it returns one graph or raises. (TorchScript is deprecated: not tested.)
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

from archspec import compile_spec
from archspec.backends.emit import emit_python

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
FORMS = ["live", "emitted"]

# Every block form a spec can take, small: a residual with a projection shortcut whose body ends in
# dropout and stochastic depth, nested groups whose inner layers are read from outside (`from:` with
# add, concatenation and product merges), chunks, a channel shuffle, a dense block, a transition,
# and ConvNeXt's channels-last stretch with a bare parameter (layer_scale).
EVERY_FORM = """
archspec: 1
name: every_form
input: [4, 8, 8]
layers:
  - conv: {name: stem, out: 8, kernel: 3, padding: 1, bias: false}
  - batchnorm: {name: bn}
  - relu
  - residual:
      name: res
      body:
        - conv: {out: 12, kernel: 3, stride: 2, padding: 1}
        - batchnorm
        - relu
        - dropout: 0.2
        - stochastic_depth: 0.25
  - group:
      name: outer
      layers:
        - conv: {name: c, out: 12, kernel: 3, padding: 1}
        - group:
            name: inner
            layers:
              - conv: {name: d, out: 12, kernel: 3, padding: 1}
              - identity: {name: sum, from: [input, d], merge: add}
        - identity: {name: cat, from: [input, inner, inner.d]}
  - chunk: {name: x1, parts: 2, index: 0}
  - chunk: {name: x2, from: outer, parts: 2, index: 1}
  - sigmoid: {name: gate}
  - identity: {name: gated, from: [x1, gate], merge: mul}
  - channel_shuffle: 2
  - dense_block: {name: dense, num_layers: 2, growth: 4, bn_size: 2}
  - identity: {name: last, from: [dense, outer.inner.d]}
  - transition: {compression: 0.5}
  - residual:
      name: cn
      shortcut: identity
      activation: null
      body:
        - permute: [0, 2, 3, 1]
        - layernorm: {dims: 1}
        - linear: {out: 19, last_dim: true}
        - permute: [0, 3, 1, 2]
        - layernorm2d
        - layer_scale: {name: layer_scale, init: 0.5}
  - global_avgpool
  - flatten
  - linear: 5
"""


# Tracing costs seconds to a minute and a half per spec and form (DenseNet-121: 84 s for the four
# tests), so the full suite traces one network of each zoo family, whose variants differ only in
# vars (depths, widths), plus every spec that is not from the zoo: about 12 minutes on 2 cores.
# ARCHSPEC_ALL_SPECS=1 traces every spec in specs/ (about 45 minutes there).
FAMILIES = {
    *("resnet18", "resnet50", "densenet121", "alexnet", "vgg11_bn", "squeezenet1_0", "googlenet"),
    *("mobilenet_v2", "mobilenet_v3_small", "mnasnet0_5", "shufflenet_v2_x0_5", "efficientnet_b0"),
    *("regnet_x_400mf", "regnet_y_400mf", "convnext_tiny"),
}
ZOO_VARIANTS = {
    "resnet", "densenet1", "densenet2", "vgg", "squeezenet", "inception", "mobilenet", "mnasnet", "shufflenet",
    "efficientnet", "resnext", "wide_resnet", "alexnet", "googlenet", "regnet", "convnext",
}  # fmt: skip


def traced_in_ci(spec: Path) -> bool:
    in_zoo = any(spec.stem.startswith(prefix) for prefix in ZOO_VARIANTS)
    return not in_zoo or spec.stem in FAMILIES or os.environ.get("ARCHSPEC_ALL_SPECS") == "1"


def spec_params(specs=SPECS):
    """every_form, which the quick loop traces, and the specs, which the full suite traces (see FAMILIES)."""
    return [pytest.param(EVERY_FORM, id="every_form")] + [
        pytest.param(spec, id=spec.stem, marks=pytest.mark.slow) for spec in specs if traced_in_ci(spec)
    ]


def build(source: Path | str, form: str, folder: Path) -> torch.nn.Module:
    """The spec's module, live or from its emitted file, with random weights and running statistics
    (the defaults make a BatchNorm in eval mode all but the identity, which would hide a lost one)."""
    if form == "live":
        model = compile_spec(source)
    else:
        path = folder / "emitted.py"
        path.write_text(emit_python(source))
        loader = importlib.util.spec_from_file_location(f"emitted_{folder.name}", path)
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
        model = getattr(module, module.__all__[0])()
    torch.manual_seed(0)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():  # scaled by fan-in: a deep net without norms stays finite
                fan_in = tensor[0].numel() if tensor.dim() > 1 else 1
                tensor.copy_((torch.rand_like(tensor) + 0.5) / fan_in)
    return model


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each test traces from scratch: nothing cached from another model, and no cache left behind."""
    torch.compiler.reset()
    yield
    torch.compiler.reset()


@pytest.mark.parametrize("spec", spec_params())
@pytest.mark.parametrize("form", FORMS)
def test_export_equals_eager(form, spec, tmp_path):
    model = build(spec, form, tmp_path).eval()
    batch = torch.randn(2, *model.input_shape)
    with torch.no_grad():
        expected = model(batch)
        exported = torch.export.export(model, (batch,))
        actual = exported.module()(batch)
    torch.testing.assert_close(actual, expected)


@pytest.mark.parametrize("spec", spec_params())
@pytest.mark.parametrize("form", FORMS)
def test_compile_fullgraph_equals_eager(form, spec, tmp_path):
    model = build(spec, form, tmp_path).eval()
    batch = torch.randn(2, *model.input_shape)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        expected = model(batch)
        actual = compiled(batch)
    torch.testing.assert_close(actual, expected)


# Train mode takes other paths: batch statistics, dropout and stochastic depth (every_form, and two
# zoo nets: squeezenet1_1's dropout, efficientnet_b0's stochastic depth and squeeze-excitation).
TRAIN_SPECS = [spec for spec in SPECS if spec.stem in ("squeezenet1_1", "efficientnet_b0")]


TRAIN_PARAMS = [
    pytest.param("live", EVERY_FORM, id="live-every_form"),
    pytest.param("emitted", EVERY_FORM, id="emitted-every_form", marks=pytest.mark.slow),
    *(
        pytest.param(form, spec, id=f"{form}-{spec.stem}", marks=pytest.mark.slow)
        for spec in TRAIN_SPECS
        for form in FORMS
    ),
]


@pytest.mark.parametrize("form, spec", TRAIN_PARAMS)
def test_compile_fullgraph_equals_eager_in_train_mode(form, spec, tmp_path):
    """The same random draws in the same order: dropout and stochastic depth give equal outputs, and
    the backward pass equal gradients."""
    model = build(spec, form, tmp_path).train()
    twin = build(spec, form, tmp_path).train()
    batch = torch.randn(2, *model.input_shape)
    compiled = torch.compile(twin, fullgraph=True, backend="eager")
    torch.manual_seed(1)
    expected = model(batch)
    torch.manual_seed(1)
    actual = compiled(batch)
    torch.testing.assert_close(actual, expected)
    torch.testing.assert_close(twin.state_dict(), model.state_dict())  # the same running-stat updates
    expected.square().mean().backward()
    actual.square().mean().backward()
    torch.testing.assert_close(gradients(twin), gradients(model))


def gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert grads and all(grad is not None for grad in grads.values()), "a parameter without a gradient"
    return grads


@pytest.mark.parametrize("spec", spec_params([spec for spec in SPECS if spec.stem in ("conv_unit", "unet_small")]))
@pytest.mark.parametrize("form", FORMS)
def test_inductor_compiles_a_small_spec(form, spec, tmp_path):
    model = build(spec, form, tmp_path).eval()
    batch = torch.randn(2, *model.input_shape)
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(batch), model(batch), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("form", FORMS)
def test_inductor_trains_a_compiled_spec(form, tmp_path):
    """resblk in train mode, inductor's generated kernels forward and backward: outputs, gradients
    and the updated running statistics equal eager's."""
    spec = ROOT / "specs" / "resblk.yaml"
    model = build(spec, form, tmp_path).train()
    twin = build(spec, form, tmp_path).train()
    batch = torch.randn(4, *model.input_shape)
    compiled = torch.compile(twin, fullgraph=True)
    expected, actual = model(batch), compiled(batch)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)
    expected.square().mean().backward()
    actual.square().mean().backward()
    torch.testing.assert_close(gradients(twin), gradients(model), rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(twin.state_dict(), model.state_dict(), rtol=1e-4, atol=1e-5)
