"""Beyond classification: torchvision's segmentation models, detection backbones and video CNNs,
key for key and output for output, and what `check` says of their outputs statically.

tests/data/torchvision-dense-<model>.json holds each model's state_dict manifest and a sample of
each of its outputs on deterministic weights (tests/reference_weights.py) at an input size other
than the spec's own, recorded by tests/data/make_torchvision_dense_reference.py; torchvision itself
is not needed here.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
import torch

from archspec import SpecError, analyze, compile_spec, measure
from archspec.emit import emit_python
from reference_weights import fill, reference_input

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
MODELS = sorted(path.name[len("torchvision-dense-") : -len(".json")] for path in DATA.glob("torchvision-dense-*.json"))
WRITTEN = [name for name in MODELS if (ROOT / "specs" / f"{name}.yaml").exists()]


def reference(name: str) -> dict:
    return json.loads((DATA / f"torchvision-dense-{name}.json").read_text())


def spec_path(name: str) -> Path:
    return ROOT / "specs" / f"{name}.yaml"


def gain(recorded: dict) -> float:
    """The gain the reference weights were filled with, as the recording says."""
    return float(re.search(r"gain=([0-9.]+)", recorded["source"]).group(1))


def filled(module: torch.nn.Module, recorded: dict) -> torch.nn.Module:
    module.load_state_dict(fill(module.state_dict(), gain(recorded)), strict=True)
    return module.eval()


def outputs_of(module: torch.nn.Module, shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = module(reference_input(shape))
    return dict(out) if isinstance(out, dict) else {"output": out}


def assert_matches(actual: dict[str, torch.Tensor], recorded: dict) -> None:
    """Same keys in the same order, same shapes, and the recorded sample of each output."""
    assert list(actual) == list(recorded)
    for key, expected in recorded.items():
        tensor = actual[key][0]
        assert list(tensor.shape) == expected["shape"], key
        flat = tensor.reshape(-1)
        step = max(1, flat.numel() // 256)
        sample = torch.tensor(expected["sample"])
        scale = float(sample.abs().max())
        torch.testing.assert_close(flat[::step], sample, rtol=1e-4, atol=1e-4 * max(scale, 1.0), msg=key)


def test_the_reference_data_is_whole():
    """The 16 models of the dense-prediction issue are recorded; those without a spec yet are listed."""
    assert len(MODELS) == 16, MODELS
    assert WRITTEN, "no dense-prediction spec yet"


@pytest.mark.parametrize("name", WRITTEN)
def test_state_dict_equals_torchvision_key_by_key(name):
    recorded = reference(name)
    module = compile_spec(spec_path(name))
    manifest = [[key, list(t.shape), str(t.dtype).removeprefix("torch.")] for key, t in module.state_dict().items()]
    assert manifest == recorded["state_dict"]


@pytest.mark.parametrize("name", WRITTEN)
def test_outputs_equal_torchvision_at_another_size(name):
    recorded = reference(name)
    module = filled(compile_spec(spec_path(name)), recorded)
    assert tuple(module.input_shape) != tuple(recorded["input"])  # the spec's own size is another
    assert_matches(outputs_of(module, tuple(recorded["input"])), recorded["outputs"])
    for size, outputs in recorded.get("outputs_at", {}).items():
        assert_matches(outputs_of(module, tuple(map(int, size.split("x")))), outputs)


@pytest.mark.parametrize("name", WRITTEN)
def test_check_gives_every_outputs_shape_statically_at_two_sizes(name):
    """The shapes `check` computes without torch equal those torch computes, at the spec's size and
    at the recorded one, output by output."""
    recorded = reference(name)
    module = compile_spec(spec_path(name)).eval()
    for shape in (tuple(module.input_shape), tuple(recorded["input"])):
        costs = measure(analyze(spec_path(name), input_shape=shape))
        static = {output.name: output.shape for output in costs.outputs} or {"output": costs.output_shape}
        real = {key: tuple(tensor.shape[1:]) for key, tensor in outputs_of(module, shape).items()}
        assert static == real, shape


EMITTED = ["fcn_resnet50"]  # one model per family


@pytest.mark.parametrize("name", EMITTED)
def test_emitted_source_equals_torchvision(name, tmp_path):
    recorded = reference(name)
    source = tmp_path / f"{name}.py"
    source.write_text(emit_python(spec_path(name)))
    loaded = importlib.util.spec_from_file_location(name, source)
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    model = next(getattr(module, cls) for cls in module.__all__)()
    assert_matches(outputs_of(filled(model, recorded), tuple(recorded["input"])), recorded["outputs"])


def test_a_pyramid_wired_to_the_wrong_tap_is_a_located_error():
    """Written with a fixed 2x upsample (as hand-written pyramids often are), the pyramid accepts only
    sizes every level halves exactly, and a lateral wired to the wrong stage fails at the add that
    meets it, at its line, with both shapes, before anything is built."""
    text = spec_path("fasterrcnn_resnet50_fpn_backbone").read_text()
    fixed = re.sub(r"size_of: inner_blocks\.\d", "scale: 2", text)
    sizes = measure(analyze(fixed)).input_sizes
    assert [s.describe() for s in sizes] == ["H >= 29, H mod 32 in {0, 29, 30, 31}", "W >= 29, W mod 32 in {0, 29, 30, 31}"]
    wrong = fixed.replace('- lateral: {name: "1", from: body.layer2}', '- lateral: {name: "1", from: body.layer3}')
    with pytest.raises(SpecError) as caught:
        analyze(wrong)
    [error] = caught.value.diagnostics
    line = next(i for i, text in enumerate(wrong.splitlines(), 1) if "name: top_down1" in text)
    assert (error.code, error.loc.line) == ("branch-mismatch", line)
    sizes = re.search(r"inner_blocks\.1 \(B, 256, (\d+), (\d+)\), up1 \(B, 256, (\d+), (\d+)\)", error.message)
    lateral, upsampled = sizes.groups()[:2], sizes.groups()[2:]
    assert [2 * int(n) for n in lateral] == [int(n) for n in upsampled]  # layer3's stride 16 met at stride 8
