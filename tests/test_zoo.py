"""The model zoo: all 68 of torchvision's classification CNNs, key for key and output for output.

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
from reference_weights import GAINS, fill, reference_input

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
# Every torchvision classification CNN, with its parameter count as torchvision counts it
# (aux_logits=False for the Inception nets): the zoo issue's list.
TORCHVISION = {
    "alexnet": 61_100_840,
    "vgg11": 132_863_336, "vgg13": 133_047_848, "vgg16": 138_357_544, "vgg19": 143_667_240,
    "vgg11_bn": 132_868_840, "vgg13_bn": 133_053_736, "vgg16_bn": 138_365_992, "vgg19_bn": 143_678_248,
    "squeezenet1_0": 1_248_424, "squeezenet1_1": 1_235_496, "googlenet": 6_624_904, "inception_v3": 23_834_568,
    "mobilenet_v2": 3_504_872, "mobilenet_v3_small": 2_542_856, "mobilenet_v3_large": 5_483_032,
    "mnasnet0_5": 2_218_512, "mnasnet0_75": 3_170_208, "mnasnet1_0": 4_383_312, "mnasnet1_3": 6_282_256,
    "shufflenet_v2_x0_5": 1_366_792, "shufflenet_v2_x1_0": 2_278_604, "shufflenet_v2_x1_5": 3_503_624,
    "shufflenet_v2_x2_0": 7_393_996,
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032, "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnext50_32x4d": 25_028_904, "resnext101_32x8d": 88_791_336, "resnext101_64x4d": 83_455_272,
    "wide_resnet50_2": 68_883_240, "wide_resnet101_2": 126_886_696,
    "densenet121": 7_978_856, "densenet161": 28_681_000, "densenet169": 14_149_480, "densenet201": 20_013_928,
    "efficientnet_b0": 5_288_548, "efficientnet_b1": 7_794_184, "efficientnet_b2": 9_109_994,
    "efficientnet_b3": 12_233_232, "efficientnet_b4": 19_341_616, "efficientnet_b5": 30_389_784,
    "efficientnet_b6": 43_040_704, "efficientnet_b7": 66_347_960,
    "efficientnet_v2_s": 21_458_488, "efficientnet_v2_m": 54_139_356, "efficientnet_v2_l": 118_515_272,
    "regnet_x_400mf": 5_495_976, "regnet_x_800mf": 7_259_656, "regnet_x_1_6gf": 9_190_136,
    "regnet_x_3_2gf": 15_296_552, "regnet_x_8gf": 39_572_648, "regnet_x_16gf": 54_278_536,
    "regnet_x_32gf": 107_811_560,
    "regnet_y_400mf": 4_344_144, "regnet_y_800mf": 6_432_512, "regnet_y_1_6gf": 11_202_430,
    "regnet_y_3_2gf": 19_436_338, "regnet_y_8gf": 39_381_472, "regnet_y_16gf": 83_590_140,
    "regnet_y_32gf": 145_046_770, "regnet_y_128gf": 644_812_894,
    "convnext_tiny": 28_589_128, "convnext_small": 50_223_688, "convnext_base": 88_591_464,
    "convnext_large": 197_767_336,
}  # fmt: skip
ZOO = [name for name in TORCHVISION if (ROOT / "specs" / f"{name}.yaml").exists()]
PARAMETERS = TORCHVISION
def spec_path(name: str) -> Path:
    return ROOT / "specs" / f"{name}.yaml"


def test_the_zoo_list_is_whole_and_what_is_missing_is_known():
    """68 models in 16 families (the zoo issue). Those without a spec yet are the rest of that issue;
    the count is asserted so that adding a spec (or losing one) shows here."""
    assert len(TORCHVISION) == 68
    missing = [name for name in TORCHVISION if name not in ZOO]
    assert len(ZOO) == 68, f"specs for {len(ZOO)} of 68; still missing: {', '.join(missing)}"


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
    module.load_state_dict(fill(module.state_dict(), GAINS.get(name, 1.0)), strict=True)
    with torch.no_grad():
        actual = module(reference_input(tuple(module.input_shape)))[0]
    expected = torch.tensor(outputs[name])
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


# The activations each gained model's reference weights must exercise, and a look-alike for each.
SWAPS = {
    "mobilenet_v2": [(torch.nn.ReLU6, torch.nn.ReLU)],
    "mobilenet_v3_large": [(torch.nn.Hardswish, torch.nn.ReLU), (torch.nn.Hardsigmoid, torch.nn.Sigmoid)],
    "mobilenet_v3_small": [(torch.nn.Hardswish, torch.nn.ReLU), (torch.nn.Hardsigmoid, torch.nn.Sigmoid)],
    **{f"efficientnet_b{n}": [(torch.nn.SiLU, torch.nn.ReLU)] for n in range(8)},
    **{f"efficientnet_v2_{size}": [(torch.nn.SiLU, torch.nn.ReLU)] for size in "sml"},
    "convnext_tiny": [(torch.nn.GELU, torch.nn.ReLU)],  # the family's smallest: the others share its code
}


@pytest.mark.parametrize(
    "name, kind, other", [(name, kind, other) for name in ZOO for kind, other in SWAPS.get(name, ())], ids=str
)
def test_the_reference_weights_make_the_activations_matter(name, kind, other):
    """The outputs compared above would not tell ReLU6 from ReLU if no pre-activation exceeded 6
    (at unit normalisation scales none does), nor hardsigmoid from sigmoid if every gate saturated:
    with the recorded weights, swapping one for its look-alike changes the output far beyond the
    comparison's tolerance."""
    module = compile_spec(spec_path(name)).eval()
    module.load_state_dict(fill(module.state_dict(), GAINS.get(name, 1.0)))
    x = reference_input(tuple(module.input_shape))
    with torch.no_grad():
        expected = module(x)[0]
        for parent in list(module.modules()):
            for child_name, child in list(parent.named_children()):
                if isinstance(child, kind):
                    setattr(parent, child_name, other())
        swapped = module(x)[0]
    assert float((swapped - expected).abs().max()) > 100 * 1e-4 * float(expected.abs().max())


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
