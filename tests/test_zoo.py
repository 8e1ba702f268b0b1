"""The model zoo: torchvision's ResNets, DenseNets and VGG-16, key for key and output for output.

tests/data holds torchvision's state_dict manifests and its outputs on deterministic weights
(tests/reference_weights.py), recorded by tests/data/make_torchvision_reference.py; torchvision
itself is not needed here.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from archspec import WeightsError, analyze, compile_spec
from archspec.cli import main
from reference_weights import fill, reference_input

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
ZOO = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
       "densenet121", "densenet161", "densenet169", "densenet201", "vgg16"]  # fmt: skip
PARAMETERS = {
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032, "resnet101": 44_549_160,
    "resnet152": 60_192_808, "densenet121": 7_978_856, "densenet161": 28_681_000, "densenet169": 14_149_480,
    "densenet201": 20_013_928, "vgg16": 138_357_544,
}  # fmt: skip


def spec_path(name: str) -> Path:
    return ROOT / "specs" / f"{name}.yaml"


@pytest.mark.parametrize("name", ZOO)
def test_state_dict_equals_torchvision_key_by_key(name):
    reference = json.loads((DATA / f"torchvision-{name}.json").read_text())
    module = compile_spec(spec_path(name))
    manifest = [[key, list(t.shape), str(t.dtype).removeprefix("torch.")] for key, t in module.state_dict().items()]
    assert manifest == reference["state_dict"]
    assert analyze(spec_path(name)).body.params == reference["parameters"] == PARAMETERS[name]


@pytest.mark.parametrize("name", ZOO)
def test_forward_equals_torchvision(name):
    outputs = json.loads((DATA / "torchvision-outputs.json").read_text())["outputs"]
    module = compile_spec(spec_path(name)).eval()
    module.load_state_dict(fill(module.state_dict()), strict=True)
    with torch.no_grad():
        actual = module(reference_input(tuple(module.input_shape)))[0]
    expected = torch.tensor(outputs[name])
    torch.testing.assert_close(actual, expected, rtol=1e-3, atol=1e-3 * float(expected.abs().max()))


def test_weights_load_strictly_from_a_file(tmp_path):
    source = compile_spec(spec_path("resnet18"))
    state = fill(source.state_dict())
    weights = tmp_path / "resnet18.pt"
    torch.save(state, weights)
    model = compile_spec(spec_path("resnet18"), weights=weights)
    torch.testing.assert_close(model.state_dict(), state)
    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"state_dict": state, "epoch": 3}, checkpoint)
    compile_spec(spec_path("resnet18"), weights=checkpoint)


def test_mismatched_weights_list_missing_unexpected_and_wrong_shapes(tmp_path, capsys):
    state = compile_spec(spec_path("resnet18")).state_dict()
    weights = tmp_path / "other.pt"
    torch.save(state, weights)
    with pytest.raises(WeightsError) as exc:
        compile_spec(spec_path("resnet34"), weights=weights)
    message = str(exc.value)
    assert "missing keys (" in message and "and " in message and "more" in message
    state["extra.weight"] = torch.zeros(1)
    state["fc.weight"] = torch.zeros(10, 512)
    torch.save(state, weights)
    status = main(["build", str(spec_path("resnet18")), "--weights", str(weights)])
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err
    assert "unexpected keys (1): extra.weight" in err
    assert "wrong shapes (file != model) (1): fc.weight (10, 512) != (1000, 512)" in err


class Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_weights_files_cannot_run_code(tmp_path, capsys):
    weights = tmp_path / "evil.pt"
    with open(weights, "wb") as file:
        pickle.dump({"fc.weight": Exploit()}, file)
    with pytest.raises(WeightsError, match="weights_only=True"):
        compile_spec(spec_path("resnet18"), weights=weights)
    assert "this must never run" not in capsys.readouterr().out


def test_build_with_weights_on_the_command_line(tmp_path, capsys):
    weights = tmp_path / "w.pt"
    torch.save(fill(compile_spec(spec_path("densenet121")).state_dict()), weights)
    assert main(["build", str(spec_path("densenet121")), "--weights", str(weights)]) == 0
    assert f"weights from {weights}" in capsys.readouterr().out
    assert main(["build", str(spec_path("densenet121")), "--weights", str(tmp_path / "none.pt")]) == 2  # usage
    assert "no such weights file" in capsys.readouterr().err
