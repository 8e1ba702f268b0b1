"""In place where it is safe (archspec/inplace.py), in both backends.

archspec applies ReLU-family activations in place on a fresh output nobody else reads, and adds a
residual's shortcut onto its body's fresh output (`out += identity`), as torchvision does. These
tests check that this changes nothing but memory and time: for every spec, and for random specs,
the in-place module's outputs, gradients and running statistics equal those of the same model built
with nothing in place (archspec.inplace.without), the emitted module's equal the live one's, the
model's input is never written to, and the user's `inplace: false` / `inplace: true` are honoured
(the latter a located error where it is not safe).
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from archspec import SpecError, analyze, compile_spec
from archspec.backends.emit import emit_python
from archspec.analyses.inplace import without
from archspec.core.ir import Block, Op, walk
from archspec.backends.live import build_model

try:
    from test_differential import load_emitted_class, random_specs
except ImportError:  # tests/ is not on sys.path (another import mode): load the module by path
    _path = Path(__file__).resolve().parent / "test_differential.py"
    _spec = importlib.util.spec_from_file_location("_archspec_test_differential", _path)
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
    load_emitted_class, random_specs = _module.load_emitted_class, _module.random_specs

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
# The quick loop runs these (at a reduced input size where the spec allows); the rest are slow.
QUICK = {"conv_unit", "resblk", "densenet", "unet_small", "squeezenet1_1"}  # as tests/conftest.py's quick loop
INPLACE_KINDS = ("relu", "relu6", "leaky_relu", "elu", "hardtanh", "hardswish", "hardsigmoid", "silu", "mish")


# RegNetY-128GF's 645M parameters and their gradients, in two modules at once, need over 10 GB; its
# code is RegNetY-32GF's, which these tests run.
TOO_BIG_FOR_TWO_WITH_GRADIENTS = {"regnet_y_128gf"}


def spec_params():
    return [
        pytest.param(p, id=p.stem, marks=() if p.stem in QUICK else pytest.mark.slow)
        for p in SPECS
        if p.stem not in TOO_BIG_FOR_TWO_WITH_GRADIENTS
    ]


def spec(input_shape, *layers, **top) -> dict:
    return {"archspec": 1, "name": "inplace", "input": list(input_shape), "layers": list(layers), **top}


# ---------------------------------------------------------------- helpers


def small_input(source) -> tuple | None:
    """A smaller input the spec accepts with the same parameters (so the same module), or None."""
    model = analyze(source)
    shape = model.input_shape
    for size in (48, 64, 96, 128, 160):
        if len(shape) != 3 or size >= min(shape[1:]):
            break
        try:
            smaller = analyze(source, input_shape=(shape[0], size, size))
        except SpecError:
            continue
        if smaller.body.params == model.body.params:
            return smaller.input_shape
    return None


def randomized(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Weights and running statistics drawn at random (scaled by fan-in, so deep nets stay finite)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.is_floating_point():
                fan_in = tensor[0].numel() if tensor.dim() > 1 else 1
                tensor.copy_((torch.rand(tensor.shape, generator=generator) + 0.5) / fan_in)
    return module


def run(module: torch.nn.Module, batch: torch.Tensor, mode: str = "train") -> dict:
    """Outputs, gradients (of the input and every parameter) and state after one step, and checks that
    the input was never written to (autograd counts every in-place write in `_version`)."""
    module.train(mode == "train")
    module.zero_grad(set_to_none=True)
    x = batch.clone().requires_grad_()
    torch.manual_seed(0)  # dropout and stochastic depth draw the same masks
    out = module(x)
    if isinstance(out, dict):  # named outputs: every one takes part in the loss
        out = torch.cat([tensor.reshape(-1) for tensor in out.values()])
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * weight).sum().backward()
    assert x._version == 0, "the model wrote to its input"
    assert torch.equal(x.detach(), batch), "the model changed its input"
    grads = {name: p.grad for name, p in module.named_parameters()}
    return {"out": out.detach(), "input grad": x.grad, "grads": grads, "state": copy.deepcopy(module.state_dict())}


def assert_same_step(actual: torch.nn.Module, expected: torch.nn.Module, batch: torch.Tensor, exact: bool = True):
    tolerance = {"rtol": 0, "atol": 0} if exact else {}
    for mode in ("train", "eval"):
        got, want = run(actual, batch, mode), run(expected, batch, mode)
        for what in want:
            torch.testing.assert_close(
                got[what], want[what], **tolerance, msg=lambda m, w=what, t=mode: f"{t}, {w}: {m}"
            )


def manifest(module: torch.nn.Module):
    return [(key, tuple(t.shape), t.dtype) for key, t in module.state_dict().items()]


def decisions(model) -> dict[str, bool]:
    """Every in-place site of an analyzed model: activation paths, and `path +` / `path relu` for
    residual adds and the activations after them."""
    found = {}
    for node in walk(model.body):
        if isinstance(node, Op) and "inplace" in node.args:
            found[node.path] = node.inplace
        elif isinstance(node, Block) and node.flow == "residual":
            found[f"{node.path} +"] = node.inplace_add
            if node.activation not in (None, "identity"):
                found[f"{node.path} {node.activation}"] = node.inplace_activation
    return found


# ---------------------------------------------------------------- every spec


@pytest.mark.parametrize("path", spec_params())
def test_inplace_module_equals_the_out_of_place_one(path):
    """Outputs, input and parameter gradients and running statistics, bit for bit, in train and eval."""
    shape = small_input(path)
    model = analyze(path, input_shape=shape)
    live, plain = build_model(model), build_model(without(model))
    assert manifest(live) == manifest(plain)
    randomized(live)
    plain.load_state_dict(live.state_dict())
    batch = torch.randn(2, *model.input_shape)
    assert_same_step(live, plain, batch)


@pytest.mark.parametrize("path", spec_params())
def test_emitted_module_equals_the_live_one_with_gradients(path):
    live = randomized(compile_spec(path))
    emitted = load_emitted_class(emit_python(path))()
    assert manifest(emitted) == manifest(live)
    emitted.load_state_dict(live.state_dict())
    batch = torch.randn(2, *(small_input(path) or live.input_shape))
    assert_same_step(emitted, live, batch)


def test_resnets_are_in_place_where_torchvisions_are():
    """Every ReLU after a norm, every add onto bn2/bn3 and every ReLU after it: torchvision's choices."""
    for name in ("resnet18", "resnet50"):
        found = decisions(analyze(ROOT / "specs" / f"{name}.yaml"))
        assert found and all(found.values()), [site for site, inplace in found.items() if not inplace]
    source = emit_python(ROOT / "specs" / "resnet50.yaml")
    assert "self.relu = nn.ReLU(inplace=True)" in source
    assert "        out += identity\n        return self.relu(out)\n" in source
    densenet = emit_python(ROOT / "specs" / "densenet.yaml")
    assert "x = F.relu(x, inplace=True)  # (B, 64, 48, 48)" in densenet  # after norm0, as torchvision's


# ---------------------------------------------------------------- the decision


CONV = {"conv": {"out": 4, "kernel": 3, "padding": 1}}
READ_TWICE = [{"conv": {"name": "a", "out": 4, "kernel": 1}}, {"relu": {"inplace": True}},
              {"conv": {"out": 4, "kernel": 1, "from": "a"}}]  # fmt: skip


def test_what_may_be_overwritten():
    model = analyze(
        spec(
            [3, 8, 8],
            {"relu": {"name": "on_input"}},  # the model's input: never
            {"conv": {"name": "c1", "out": 4, "kernel": 3, "padding": 1}},
            {"relu": {"name": "after_conv"}},  # a fresh conv output nobody else reads
            {"relu": {"name": "after_relu"}},  # relu keeps its output for backward
            "batchnorm",
            {"dropout": {"name": "drop", "p": 0.1}},
            {"relu": {"name": "after_dropout"}},  # in eval, dropout returns its input
            {"conv": {"name": "shared", "out": 4, "kernel": 1}},
            {"relu": {"name": "after_shared"}},  # `shared` is read by a later layer too
            {"conv": {"name": "c2", "out": 4, "kernel": 1, "from": "shared"}},
            {"silu": {"name": "after_merge", "from": ["c2", "shared"], "merge": "add"}},  # a new tensor
            {"conv": {"name": "c3", "out": 4, "kernel": 1}},
            {"group": {"name": "g", "layers": [{"hardswish": {"name": "first"}}, CONV]}},  # g's input is c3's
            {"group": {"name": "h", "layers": [{"relu": {"name": "first"}}, {"identity": {"from": "input"}}]}},
            {"conv": {"name": "c4", "out": 4, "kernel": 1}},
            {"leaky_relu": {"name": "negative", "slope": -0.1}},  # PyTorch has no in-place backward for it
            {"conv": {"name": "c5", "out": 4, "kernel": 1}},
            {"elu": {"name": "elu"}},  # only when asked: its in-place gradient differs in the last bits
            {"conv": {"name": "c6", "out": 4, "kernel": 1}},
            {"relu": {"name": "declined", "inplace": False}},
            "flatten",
            {"relu": {"name": "after_flatten"}},  # a view
        )
    )
    assert decisions(model) == {
        "on_input": False,
        "after_conv": True,
        "after_relu": False,
        "after_dropout": False,
        "after_shared": False,
        "after_merge": True,
        "g.first": True,
        "h.first": False,  # h's input is read again by `from: input`
        "negative": False,
        "elu": False,
        "declined": False,
        "after_flatten": False,
    }


def test_residual_adds_in_place_onto_a_fresh_body_output_only():
    body_bn = [CONV, "batchnorm"]
    model = analyze(
        spec(
            [4, 6, 6],
            {"residual": {"name": "fresh", "body": body_bn}},  # onto bn's output; relu after it too
            {"residual": {"name": "relu_last", "body": [CONV, "relu"]}},  # relu keeps its output
            {"residual": {"name": "view_last", "body": [CONV, "identity"], "activation": "gelu"}},
            {"residual": {"name": "body_input", "body": ["relu", CONV]}},  # the shortcut reads the input too
            {"residual": {"name": "no_act", "body": body_bn, "activation": None}},
            "relu",  # after an add (no activation): a new tensor, or bn's output written in place
            {"residual": {"name": "elu", "body": body_bn, "activation": "elu"}},
        )
    )
    assert decisions(model) == {
        "fresh +": True,
        "fresh relu": True,
        "relu_last.1": True,
        "relu_last +": False,
        "relu_last relu": True,  # the sum is a new tensor
        "view_last +": False,
        "view_last gelu": False,  # gelu has no in-place form
        "body_input.0": False,
        "body_input +": True,
        "body_input relu": True,
        "no_act +": True,
        "5": True,
        "elu +": True,
        "elu elu": False,
    }
    live = randomized(compile_spec(copy.deepcopy(model_source := spec([4, 6, 6], {"residual": {"body": body_bn}}))))
    assert live[0]._inplace_add
    emitted = emit_python(model_source)
    assert "out += identity" not in emitted and "        out += x\n        return F.relu(out, inplace=True)" in emitted


def test_exported_and_reached_into_outputs_are_not_overwritten():
    encoder = {"group": {"name": "enc", "layers": [CONV, {"conv": {"name": "last", "out": 4, "kernel": 1}}]}}
    model = analyze(
        spec(
            [3, 6, 6],
            encoder,
            {"relu": {"name": "after_enc"}},  # enc's output is enc.last's, which a later layer reads
            {"conv": {"out": 4, "kernel": 1, "from": ["enc.last", "after_enc"], "merge": "add"}},
        )
    )
    assert decisions(model) == {"after_enc": False}
    model = analyze(
        spec(
            [3, 6, 6],
            {"group": {"name": "enc", "layers": [{"conv": {"name": "inner", "out": 4, "kernel": 1}}, CONV]}},
            {"relu": {"name": "after_enc"}},  # enc.inner is not enc's output: this one may be overwritten
            {"conv": {"out": 4, "kernel": 1, "from": ["enc.inner", "after_enc"], "merge": "add"}},
        )
    )
    assert decisions(model) == {"after_enc": True}


# ---------------------------------------------------------------- what the user writes


def test_inplace_false_is_honoured_in_both_backends():
    source = spec(
        [3, 6, 6],
        CONV,
        {"relu": {"inplace": False}},
        CONV,
        "relu",
        CONV,
        {"relu6": {"name": "capped", "inplace": False}},
        CONV,
        {"relu6": {"name": "capped_inplace"}},
    )
    live = compile_spec(copy.deepcopy(source))
    assert [live.get_submodule(n).inplace for n in ("1", "3", "capped", "capped_inplace")] == [False, True, False, True]
    emitted = emit_python(copy.deepcopy(source))
    assert "x = torch.relu(x)" in emitted and "x = F.relu(x, inplace=True)" in emitted
    assert "self.capped = nn.ReLU6()" in emitted and "self.capped_inplace = nn.ReLU6(inplace=True)" in emitted
    generated = load_emitted_class(emitted)()
    generated.load_state_dict(randomized(live).state_dict())
    assert_same_step(generated, live, torch.randn(2, 3, 6, 6))


def test_inplace_true_is_honoured_where_safe():
    source = spec([3, 6, 6], CONV, {"elu": {"name": "act", "inplace": True}}, CONV, {"relu": {"inplace": True}})
    model = analyze(copy.deepcopy(source))
    assert decisions(model) == {"act": True, "3": True}
    live = randomized(build_model(model))
    plain = build_model(without(model))
    plain.load_state_dict(live.state_dict())
    assert_same_step(live, plain, torch.randn(2, 3, 6, 6), exact=False)  # elu's in-place gradient: to the last bits


@pytest.mark.parametrize(
    "layers, words",
    [
        ([{"relu": {"inplace": True}}], "the model's input"),
        ([CONV, "relu", {"relu": {"inplace": True}}], "(relu), which its backward may need"),
        (READ_TWICE, "another layer reads too"),
        ([CONV, {"leaky_relu": {"slope": -0.5, "inplace": True}}], "negative slope (-0.5)"),
        ([{"residual": {"body": [{"relu": {"inplace": True}}, CONV]}}], "its shortcut reads too"),
        ([CONV, "flatten", {"silu": {"inplace": True}}], "(flatten)"),
    ],
)
def test_inplace_true_where_unsafe_is_a_located_error(layers, words):
    import yaml

    text = yaml.safe_dump(spec([3, 6, 6], *layers), sort_keys=False)
    with pytest.raises(SpecError) as error:
        compile_spec(text)
    (diagnostic,) = error.value.diagnostics
    assert diagnostic.code == "bad-value" and "inplace: true is not safe here" in diagnostic.message
    assert words in diagnostic.message, diagnostic.message
    assert diagnostic.loc is not None, diagnostic.format()
    at = text.splitlines()[diagnostic.loc.line - 1 :]  # the layer's line, its fields below it
    assert at[0].strip().startswith("- ") and "inplace: true" in "".join(at[:4]), diagnostic.format() + "\n" + text


def test_inplace_true_in_a_block_is_located_at_the_body_with_a_note_at_the_use():
    text = """\
archspec: 1
name: blocks
input: [3, 6, 6]
blocks:
  act:
    params: {out: int}
    layers:
      - relu: {inplace: true}
      - conv: {out: out, kernel: 1}
layers:
  - conv: {out: 4, kernel: 1}
  - act: 4
  - relu
  - act: 5
"""
    with pytest.raises(SpecError) as error:
        analyze(text)
    (diagnostic,) = error.value.diagnostics  # the first use is on a conv's fresh output: safe
    assert diagnostic.loc.line == 8 and "the output of 2 (relu)" in diagnostic.message, diagnostic.format()
    assert [loc.line for loc, _ in diagnostic.notes] == [14]


def test_the_input_is_never_written_to():
    """Even where every layer could work in place: the first activation reads the caller's tensor."""
    source = spec([3, 6, 6], "relu", {"residual": {"body": ["relu6", CONV, "batchnorm"], "activation": None}}, "silu")
    model = analyze(copy.deepcopy(source))
    assert decisions(model) == {"0": False, "1.0": False, "1 +": True, "2": True}
    live = randomized(compile_spec(copy.deepcopy(source)))
    batch = torch.randn(2, 3, 6, 6)
    for mode in ("train", "eval"):
        run(live, batch, mode)  # asserts the input's version and values
    with torch.no_grad():
        x = batch.clone()
        live.eval()(x)
        assert x._version == 0 and torch.equal(x, batch)


# ---------------------------------------------------------------- random specs


def _mark(layers, draw) -> list:
    """The layers, each in-place activation given `inplace: true`, `false` or nothing, at random."""
    marked = []
    for layer in layers:
        kind, fields = (layer, {}) if isinstance(layer, str) else next(iter(layer.items()))
        fields = dict(fields) if isinstance(fields, dict) else fields
        if isinstance(fields, dict):
            for key in ("layers", "body", "shortcut"):
                if isinstance(fields.get(key), list):
                    fields[key] = _mark(fields[key], draw)
        if kind in INPLACE_KINDS and isinstance(fields, dict):
            choice = draw(st.sampled_from([None, None, True, False]))
            if choice is not None:
                fields["inplace"] = choice
        marked.append(kind if isinstance(layer, str) and not fields else {kind: fields})
    return marked


@pytest.mark.slow
@settings(max_examples=40, deadline=None, report_multiple_bugs=False, suppress_health_check=[HealthCheck.too_slow])
@given(random_specs(), st.data())
def test_random_specs_backward_in_place_equals_out_of_place(source, data):
    """No "modified by an inplace operation" from autograd, the input untouched, the gradients of the
    out-of-place build, and the emitted module's; `inplace: true` where unsafe is a located error."""
    try:
        analyze(copy.deepcopy(source))
    except SpecError:
        assume(False)
    marked = copy.deepcopy(source)
    marked["layers"] = _mark(marked["layers"], data.draw)
    for block in marked["blocks"].values():
        block["layers"] = _mark(block["layers"], data.draw)
    try:
        model = analyze(copy.deepcopy(marked))
    except SpecError as error:
        for diagnostic in error.diagnostics:
            assert diagnostic.code == "bad-value" and "inplace: true is not safe" in diagnostic.message
            assert diagnostic.loc is not None
        marked, model = source, analyze(copy.deepcopy(source))
    live, plain = randomized(build_model(model)), build_model(without(model))
    plain.load_state_dict(live.state_dict())
    batch = torch.randn(2, *model.input_shape)
    assert_same_step(live, plain, batch)
    emitted = load_emitted_class(emit_python(copy.deepcopy(marked)))()
    emitted.load_state_dict(live.state_dict())
    assert_same_step(emitted, live, batch)


def test_no_second_error_after_a_wrong_layer():
    """A layer stood in for (reported already) gives no in-place error to the layer after it."""
    text = "archspec: 1\nname: x\ninput: [3, 8, 8]\nlayers:\n  - conv: {out: 4, kernal: 3}\n  - relu: {inplace: true}\n"
    with pytest.raises(SpecError) as error:
        analyze(text)
    assert [d.code for d in error.value.diagnostics] == ["unknown-field"]
