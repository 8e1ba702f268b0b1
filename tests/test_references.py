"""References across sequences, named outputs and resizing to a tensor's size: what the model
computes is what the spec says, in the live module and the emitted one alike.

tests/errors/reference_errors.yaml (a golden of tests/test_errors.py) holds the ways each can be
wrong; tests/test_differential.py draws random specs with all three.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F

from archspec import SpecError, analyze, compile_spec, measure
from archspec.analyses.inplace import without
from archspec.backends.live import build_model
from archspec.cli import main
from test_differential import assert_emitted_equals_live

HEAD = {  # reads two taps of the backbone from inside a group, and resizes one to the other's size
    "archspec": 1,
    "name": "taps",
    "input": [3, 20, 28],
    "layers": [
        {"group": {"name": "backbone", "layers": [
            {"conv": {"out": 8, "kernel": 3, "stride": 2, "padding": 1}}, "relu",
            {"conv": {"out": 16, "kernel": 3, "stride": 2, "padding": 1}}, "relu"]}},
        {"group": {"name": "head", "layers": [
            {"conv": {"name": "low", "out": 4, "kernel": 1, "from": "backbone.1"}},
            {"conv": {"name": "high", "out": 4, "kernel": 1, "from": "backbone.3"}},
            {"upsample": {"name": "up", "size_of": "low", "mode": "bilinear", "align_corners": False}},
            {"identity": {"from": ["low", "up"], "merge": "add"}}]}},
        {"upsample": {"name": "out", "size_of": "input", "mode": "bilinear", "align_corners": False}},
        {"conv": {"name": "aux", "out": 2, "kernel": 1, "from": "backbone.3"}},
    ],
    "outputs": {"out": "out", "aux": "aux", "0": "backbone.1"},
}  # fmt: skip


def test_the_live_module_computes_what_the_spec_says():
    model = compile_spec(copy.deepcopy(HEAD)).eval()
    x = torch.randn(2, 3, 33, 41)  # another size than the spec's: the resizes follow it
    with torch.no_grad():
        got = model(x)
        b = model.backbone
        tap1 = F.relu(b[0](x))
        tap3 = F.relu(b[2](tap1))
        low = model.head.low(tap1)
        up = F.interpolate(model.head.high(tap3), size=low.shape[2:], mode="bilinear", align_corners=False)
        out = F.interpolate(low + up, size=x.shape[2:], mode="bilinear", align_corners=False)
    assert list(got) == ["out", "aux", "0"]
    torch.testing.assert_close(got["out"], out)
    torch.testing.assert_close(got["aux"], model.aux(tap3))
    torch.testing.assert_close(got["0"], tap1)


def test_the_emitted_module_equals_the_live_one():
    assert_emitted_equals_live(copy.deepcopy(HEAD))


NESTED = {  # captured two levels down, by a residual's body and by its explicit shortcut
    "archspec": 1,
    "name": "nested",
    "input": [4, 9, 9],
    "layers": [
        {"conv": {"name": "stem", "out": 6, "kernel": 3, "padding": 1}},
        {"group": {"name": "a", "layers": [
            {"conv": {"name": "c", "out": 6, "kernel": 1}},
            {"group": {"name": "b", "layers": [
                {"residual": {"name": "r", "activation": "relu",
                              "body": [{"conv": {"out": 6, "kernel": 1, "from": "stem"}},
                                       {"identity": {"from": ["0", "input"], "merge": "mul"}}],
                              "shortcut": [{"relu": {"from": "c"}}]}},
                {"relu": {"from": "stem"}},
                {"identity": {"from": ["r", "1"], "merge": "add"}}]}}]}},
        {"relu": {"from": "stem"}},
    ],
    "outputs": {"x": "a", "stem": "stem", "r": "a.b.r", "last": "2"},
}  # fmt: skip


def test_captures_pass_through_every_block_between():
    model = analyze(copy.deepcopy(NESTED))
    blocks = {node.path: node for node in model.body.children[1:2]}
    assert blocks["a"].captures == ("/stem",)
    inner = blocks["a"].children[1]
    assert inner.captures == ("/stem", "/a.c")
    residual = inner.children[0]
    assert set(residual.captures) == {"/stem", "/a.c"}  # the shortcut's `c` is a's, two sequences out
    assert_emitted_equals_live(copy.deepcopy(NESTED))


def test_a_captured_tensor_is_never_overwritten_in_place():
    """The stem's output is read inside `a` and by the relu after `a`: in place, a relu inside
    would change what the others read. Decided in place, the module equals the out-of-place one."""
    model = analyze(copy.deepcopy(NESTED))
    decided, plain = build_model(model).eval(), build_model(without(model)).eval()
    plain.load_state_dict(decided.state_dict())
    x = torch.randn(2, 4, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(decided(x), plain(x))


def test_check_reports_each_output(capsys):
    costs = measure(analyze(copy.deepcopy(HEAD)))
    shown = {o.name: (o.path, o.shape, o.field.jump, o.field.size) for o in costs.outputs}
    assert shown == {
        "out": ("out", (4, 20, 28), (1, 1), (13, 13)),
        "aux": ("aux", (2, 5, 7), (4, 4), (7, 7)),
        "0": ("backbone.1", (8, 10, 14), (2, 2), (3, 3)),
    }


def test_json_carries_the_outputs(capsys, tmp_path):
    path = tmp_path / "taps.yaml"
    path.write_text(json.dumps(HEAD))
    assert main(["check", "--format", "json", str(path)]) == 0
    report = json.loads(capsys.readouterr().out)["files"][0]
    outputs = report["outputs"]
    assert [o["name"] for o in outputs] == ["out", "aux", "0"]
    assert outputs[1] == {
        "name": "aux",
        "layer": "aux",
        "shape": [2, 5, 7],
        "channels": 2,
        "stride": [4, 4],
        "receptive_field": {"whole_input": False, "size": [7, 7], "jump": [4, 4], "padding": [3, 3]},
    }


def test_accepted_sizes_follow_a_resize_to_a_tensor():
    """Resized to the tap's own size, the sum takes any size; resized by a scale of 2, only sizes
    that halve evenly twice."""
    layers = [
        {"conv": {"name": "a", "out": 4, "kernel": 3, "stride": 2, "padding": 1}},
        {"conv": {"out": 4, "kernel": 3, "stride": 2, "padding": 1}},
        None,
        {"identity": {"from": ["a", "up"], "merge": "add"}},
    ]
    sized = {"archspec": 1, "name": "s", "input": [3, 16, 16], "layers": list(layers)}
    sized["layers"][2] = {"upsample": {"name": "up", "size_of": "a"}}
    scaled = copy.deepcopy(sized)
    scaled["layers"][2] = {"upsample": {"name": "up", "scale": 2}}
    assert measure(analyze(sized)).input_sizes[0].describe() == "any H >= 1"
    accepted = measure(analyze(scaled)).input_sizes[0]
    halved = lambda n: (n - 1) // 2 + 1  # noqa: E731
    assert [n for n in range(1, 50) if accepted.accepts(n)] == [n for n in range(1, 50) if halved(n) % 2 == 0]


@pytest.mark.parametrize(
    "outputs, message",
    [
        ({}, "expected a mapping of output names to layers"),
        ({"a b": "a"}, "an output's name is ASCII letters"),
        ({"out": 3}, "expected the layer output out returns"),
    ],
)
def test_malformed_outputs_are_located_errors(outputs, message):
    source = {"archspec": 1, "name": "m", "input": [3, 8, 8], "layers": [{"conv": {"name": "a", "out": 2, "kernel": 1}}]}
    with pytest.raises(SpecError) as caught:
        analyze({**source, "outputs": outputs})
    assert message in str(caught.value)


def test_a_layer_no_output_depends_on_is_noted():
    """It still runs (and costs) in the live and emitted modules; check says so, once, for the
    outermost such part, with its line."""
    source = {
        "archspec": 1,
        "name": "unread",
        "input": [3, 8, 8],
        "layers": [
            {"conv": {"name": "a", "out": 4, "kernel": 1}},
            {"group": {"name": "b", "layers": [{"conv": {"out": 4, "kernel": 1}}, "relu"]}},
            {"conv": {"name": "c", "out": 4, "kernel": 1, "from": "a"}},
            {"conv": {"name": "d", "out": 2, "kernel": 1}},
        ],
    }
    notes = [note for note in measure(analyze(copy.deepcopy(source))).notes if "no output" in note]
    assert notes == ["b (group, line 1): no output depends on it"]  # d is the model's output
    named = measure(analyze({**source, "outputs": {"out": "c"}})).notes
    assert [note.partition(" ")[0] for note in named if "no output" in note] == ["b", "d"]
    assert_emitted_equals_live({**source, "outputs": {"out": "c"}})
