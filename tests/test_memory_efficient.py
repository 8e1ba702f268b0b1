"""Memory-efficient dense blocks (`memory_efficient: true`, or compile_spec's / emit_python's option).

torchvision's checkpointed bottleneck: while gradients are needed, each dense layer's concatenation
and first norm-relu-conv are recomputed in backward instead of kept. The module is the same (keys,
shapes, outputs, gradients, running statistics after a step) in both backends, with and without it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.utils.checkpoint
from reference_weights import fill, reference_input

import archspec.kinds.torch_modules
from archspec import compile_spec
from archspec.backends.emit import emit_python

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"


def tiny(dropout: float = 0.0, memory_efficient: bool | None = None) -> dict:
    """Both kinds of dense layer (torchvision's bottleneck and the seed's BN-ReLU-Conv3x3), 2d."""
    own = {} if memory_efficient is None else {"memory_efficient": memory_efficient}
    return {
        "archspec": 1,
        "name": "tiny_dense",
        "input": [3, 8, 8],
        "layers": [
            {"conv": {"out": 6, "kernel": 3, "padding": 1, "bias": False}},
            {"dense_block": {"num_layers": 3, "growth": 4, "bn_size": 2, "dropout": dropout, **own}},
            {"transition": {"compression": 0.5}},
            {"dense_block": {"num_layers": 2, "growth": 3, "dropout": dropout, **own}},
            "batchnorm",
            "relu",
            "global_avgpool",
            "flatten",
            {"linear": 5},
        ],
    }


def emitted(spec, tmp_path: Path, memory_efficient: bool | None = None, name: str = "model") -> torch.nn.Module:
    path = tmp_path / f"{name}.py"
    path.write_text(emit_python(spec, memory_efficient=memory_efficient))
    module_spec = importlib.util.spec_from_file_location(f"emitted_{name}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return getattr(module, module.__all__[0])()


def dense_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for name, m in model.named_modules() if name.rsplit(".", 1)[-1].startswith("denselayer")]


def manifest(model: torch.nn.Module):
    return [(key, tuple(t.shape), t.dtype) for key, t in model.state_dict().items()]


class Checkpoints:
    """Counts torch.utils.checkpoint.checkpoint calls, by the live builder and by emitted code."""

    def __init__(self, monkeypatch):
        self.calls = 0
        original = torch.utils.checkpoint.checkpoint

        def counting(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", counting)  # emitted: cp.checkpoint
        monkeypatch.setattr(archspec.kinds.torch_modules, "checkpoint", counting)  # live: imported by name


def step(model: torch.nn.Module, x: torch.Tensor, steps: int = 2):
    """`steps` training steps' forward and backward (no optimizer); the outputs, the input's and the
    parameters' gradients and the state_dict after them."""
    model.train()
    torch.manual_seed(0)
    x = x.clone().requires_grad_(True)
    outputs = []
    for _ in range(steps):
        out = model(x)
        (out * torch.linspace(-1, 1, out.numel()).view(out.shape)).sum().backward()
        outputs.append(out.detach())
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    return outputs, x.grad.clone(), grads, {k: v.clone() for k, v in model.state_dict().items()}


def assert_same(a, b, what: str):
    (outputs_a, xgrad_a, grads_a, state_a), (outputs_b, xgrad_b, grads_b, state_b) = a, b
    exact = {"rtol": 0, "atol": 0}
    for i, (u, v) in enumerate(zip(outputs_a, outputs_b, strict=True)):
        torch.testing.assert_close(u, v, **exact, msg=f"{what}: outputs of step {i + 1} differ")
    torch.testing.assert_close(xgrad_a, xgrad_b, **exact, msg=f"{what}: input gradients differ")
    assert grads_a.keys() == grads_b.keys() and state_a.keys() == state_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], **exact, msg=f"{what}: gradient of {name}")
    for key in state_a:
        torch.testing.assert_close(state_a[key], state_b[key], **exact, msg=f"{what}: {key} after the steps")


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_outputs_gradients_and_state_are_those_of_the_plain_block(dropout, tmp_path, monkeypatch):
    """Live and emitted, with and without memory_efficient: identical, bit for bit, over two training
    steps: outputs, input and parameter gradients, and the running statistics after them (the
    recompute does not update norm1's a second time, as torchvision's memory_efficient does)."""
    spec = tiny(dropout)
    plain = compile_spec(spec)
    models = {
        "live plain": plain,
        "live memory_efficient": compile_spec(spec, memory_efficient=True),
        "emitted plain": emitted(spec, tmp_path, name="plain"),
        "emitted memory_efficient": emitted(spec, tmp_path, memory_efficient=True, name="efficient"),
    }
    for model in models.values():
        assert manifest(model) == manifest(plain)
        model.load_state_dict(plain.state_dict(), strict=True)
    x = torch.randn(4, *plain.input_shape)
    checkpoints = Checkpoints(monkeypatch)
    results = {}
    for name, model in models.items():
        before = checkpoints.calls
        results[name] = step(model, x)
        expected_calls = 2 * 5 if "memory_efficient" in name else 0  # two steps, five dense layers
        assert checkpoints.calls - before == expected_calls, name
    for name, result in results.items():
        assert_same(results["live plain"], result, name)
    assert int(results["live memory_efficient"][3]["1.denselayer1.norm1.num_batches_tracked"]) == 2


def test_no_checkpoint_without_gradients(tmp_path, monkeypatch):
    """No-grad runs (inference, train or eval mode) take the plain path; with gradients, even in
    eval mode (parameters require grad, so the layers' inputs do), each dense layer checkpoints."""
    spec = tiny(memory_efficient=True)
    checkpoints = Checkpoints(monkeypatch)
    x = torch.randn(2, 3, 8, 8)
    for model in (compile_spec(spec), emitted(spec, tmp_path)):
        for mode in (True, False):
            model.train(mode)
            with torch.no_grad():
                model(x)
        assert checkpoints.calls == 0
        model(x)
        assert checkpoints.calls == 5
        checkpoints.calls = 0


@pytest.mark.slow
def test_memory_efficient_modules_export(tmp_path):
    spec = tiny(memory_efficient=True)
    x = torch.randn(2, 3, 8, 8)
    for model in (compile_spec(spec).eval(), emitted(spec, tmp_path).eval()):
        with torch.no_grad():
            exported = torch.export.export(model, (x,))
            torch.testing.assert_close(exported.module()(x), model(x))


def test_saves_less_for_backward():
    """What autograd keeps outside the checkpoints: no concatenation, no bottleneck activations."""

    def saved_bytes(model):
        weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
        storages = {}  # activations only, each storage once

        def pack(tensor):
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in weights:
                storages[storage.data_ptr()] = storage.nbytes()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(torch.randn(8, 3, 8, 8)).sum()
        return sum(storages.values())

    spec = tiny()
    plain, efficient = compile_spec(spec).train(), compile_spec(spec, memory_efficient=True).train()
    assert saved_bytes(efficient) < 0.8 * saved_bytes(plain)  # 0.69 here; at DenseNet-121's sizes far less


def test_the_option_overrides_the_spec():
    """compile_spec(memory_efficient=True/False) sets every dense block; None keeps each block's field."""

    def flags(spec, option):
        return {layer.memory_efficient for layer in dense_layers(compile_spec(spec, memory_efficient=option))}

    assert flags(tiny(), None) == {False}
    assert flags(tiny(memory_efficient=True), None) == {True}
    assert flags(tiny(memory_efficient=False), True) == {True}
    assert flags(tiny(memory_efficient=True), False) == {False}
    mixed = tiny()
    mixed["layers"][1]["dense_block"]["memory_efficient"] = True
    assert [layer.memory_efficient for layer in dense_layers(compile_spec(mixed))] == [True] * 3 + [False] * 2

    assert "cp.checkpoint(" in emit_python(tiny(memory_efficient=True))
    assert "checkpoint" not in emit_python(tiny(memory_efficient=True), memory_efficient=False)
    assert "checkpoint" not in emit_python(tiny())  # plain source as before
    assert "memory_efficient=True" in emit_python(tiny(), memory_efficient=True)


def test_mixed_blocks_emit_the_live_module(tmp_path):
    """One memory-efficient and one plain bottleneck block in one file: two classes, the same module."""
    spec = tiny(0.2)
    spec["layers"][1]["dense_block"]["memory_efficient"] = True
    spec["layers"][3] = {"dense_block": {"num_layers": 2, "growth": 3, "bn_size": 2, "dropout": 0.2}}
    live, generated = compile_spec(spec), emitted(spec, tmp_path)
    assert manifest(generated) == manifest(live)
    generated.load_state_dict(live.state_dict())
    x = torch.randn(3, 3, 8, 8)
    assert_same(step(live, x), step(generated, x), "mixed")


def test_memory_efficient_3d_and_1d(tmp_path):
    for input_shape in ([2, 4, 4, 4], [2, 6]):
        spec = {"archspec": 1, "name": "other_ranks", "input": input_shape, "layers": [
            {"dense_block": {"num_layers": 2, "growth": 2, "bn_size": 2, "memory_efficient": True}},
            {"dense_block": {"num_layers": 2, "growth": 2, "memory_efficient": True}},
        ]}  # fmt: skip
        live, plain = compile_spec(spec), compile_spec(spec, memory_efficient=False)
        generated = emitted(spec, tmp_path, name=f"rank{len(input_shape)}")
        generated.load_state_dict(live.state_dict())
        plain.load_state_dict(live.state_dict())
        x = torch.randn(3, *input_shape)
        expected = step(plain, x)
        assert_same(expected, step(live, x), "live")
        assert_same(expected, step(generated, x), "emitted")


def test_densenet121_state_dict_is_torchvisions():
    reference = json.loads((DATA / "torchvision-densenet121.json").read_text())
    module = compile_spec(ROOT / "specs" / "densenet121.yaml", memory_efficient=True)
    assert [[k, list(t.shape), str(t.dtype).removeprefix("torch.")] for k, t in module.state_dict().items()] == (
        reference["state_dict"]
    )


@pytest.mark.slow
def test_densenet121_forward_through_the_checkpoints_equals_torchvision():
    """With an input that requires grad, every dense layer takes the checkpointed path; the output is
    still torchvision's (tests/test_zoo.py's reference), and backward runs."""
    outputs = json.loads((DATA / "torchvision-outputs.json").read_text())["outputs"]
    module = compile_spec(ROOT / "specs" / "densenet121.yaml", memory_efficient=True).eval()
    module.load_state_dict(fill(module.state_dict()), strict=True)
    x = reference_input(tuple(module.input_shape)).requires_grad_(True)
    actual = module(x)[0]
    expected = torch.tensor(outputs["densenet121"])
    torch.testing.assert_close(actual.detach(), expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
    actual.sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())


def test_the_option_with_a_num_classes_var(tmp_path, capsys):
    """A spec with an integer num_classes var, whose emitted model takes it as an argument: the option
    sets the dense blocks of both analyses the emitter compares (it failed with "'Variant' object has
    no attribute '_replace'", README's own `build specs/densenet121.yaml --emit-python --memory-efficient`)."""
    spec = tiny(0.2)
    spec["vars"] = {"num_classes": 5}
    spec["layers"][-1] = {"linear": "num_classes"}
    live, generated = compile_spec(spec, memory_efficient=True), emitted(spec, tmp_path, memory_efficient=True)
    assert {layer.memory_efficient for layer in dense_layers(generated)} == {True}
    assert manifest(generated) == manifest(live)
    generated.load_state_dict(live.state_dict())
    x = torch.randn(3, 3, 8, 8)
    assert_same(step(live, x), step(generated, x), "num_classes var")

    from archspec.cli import main

    assert main(["build", str(ROOT / "specs/densenet121.yaml"), "--emit-python", "--memory-efficient"]) == 0
    assert "cp.checkpoint(" in capsys.readouterr().out
