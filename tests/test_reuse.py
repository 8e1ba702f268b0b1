"""Reuse and graphs: vars and overrides, repeat, extends, user-defined blocks, `from:` inputs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from conftest import examples
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from archspec import SpecError, UsageError, analyze, compile_spec
from archspec.cli import main
from archspec.frontend.expressions import ExpressionError, evaluate
from archspec.core.ir import walk

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def spec(*layers, input_shape=(3, 8, 8), **top) -> dict:
    return {"archspec": 1, "name": "t", "input": list(input_shape), "layers": list(layers), **top}


def paths(model) -> list[str]:
    return [node.path for node in walk(model.body) if node.path]


# ---------------------------------------------------------------- the evaluator

numbers = st.integers(-50, 50)


@st.composite
def expressions(draw, depth=3):
    """(source text, exact value) of a random arithmetic expression over the vars a and b."""
    if depth == 0 or draw(st.booleans()):
        choice = draw(st.sampled_from(["number", "a", "b"]))
        if choice == "number":
            value = draw(numbers)
            return (f"({value})", value)
        return (choice, {"a": 7, "b": -3}[choice])
    (left, lv), (right, rv) = draw(expressions(depth - 1)), draw(expressions(depth - 1))
    op = draw(st.sampled_from(["+", "-", "*", "//", "%", "min", "max"]))
    if op in ("//", "%") and rv == 0:
        return (left, lv)
    if op in ("min", "max"):
        return (f"{op}({left}, {right})", (min if op == "min" else max)(lv, rv))
    value = {"+": int.__add__, "-": int.__sub__, "*": int.__mul__, "//": int.__floordiv__, "%": int.__mod__}[op](lv, rv)
    return (f"({left} {op} {right})", value)


@settings(max_examples=examples(300), deadline=None)
@given(expressions())
def test_evaluator_computes_integer_arithmetic_like_python(case):
    text, expected = case
    assume(not isinstance(ast.parse(text, mode="eval").body, ast.Constant))  # a lone number stays text
    assert evaluate(text, {"a": 7, "b": -3}) == expected


@pytest.mark.parametrize(
    "text, value",
    [("64 / 2", 32), ("65 / 2", 32.5), ("bn_size * growth", 128), ("depths[2]", 6), ("depths[-1] + 1", 4),
     ("max(growth, 40) // 8", 5), ("-growth", -32), ("same", "same"), ("'1e-5'", "'1e-5'"),
     ("ceil(65 / 2)", 33), ("floor(65 / 2)", 32), ("int(-6.5)", -6), ("round(2.5)", 2), ("round(0.125, 2)", 0.12),
     ("max(1, growth, 3)", 32), ("make_divisible(growth * 0.75, 8)", 24), ("make_divisible(20, 16)", 32),
     ("make_divisible(3, 8)", 8), ("make_divisible(3, 8, 4)", 4), ("make_divisible(4, 8, 4)", 8),
     ("sum(depths)", 16), ("sum(depths[:2]) + 1", 8), ("depths[1:3]", [4, 6]), ("sum(depths[4:])", 0),
     ("0.2 * (sum(depths[:2]) + 1) / sum(depths)", 0.2 * float(8) / 16)],
)  # fmt: skip
def test_evaluator_examples(text, value):
    scope = {"bn_size": 4, "growth": 32, "depths": [3, 4, 6, 3]}
    result = evaluate(text, scope)
    assert result == value and type(result) is type(value)


@pytest.mark.parametrize(
    "text",
    ["__import__('os').system('echo hacked')", "growth.__class__", "(lambda: 1)()", "[x for x in ()]",
     "open('/etc/passwd')", "growth if growth else 1", "2 ** 10000000", "growth < 3"],
)  # fmt: skip
def test_evaluator_never_runs_anything_else(text):
    """Not arithmetic: the text comes back unchanged (validation then rejects it) or is refused."""
    try:
        assert evaluate(text, {"growth": 32}) == text
    except ExpressionError as exc:
        assert "no var named" in str(exc) or "not a simple arithmetic expression" in str(exc)


def torchvision_make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """torchvision.models._utils._make_divisible, copied: the rule make_divisible must reproduce."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


@settings(max_examples=examples(300), deadline=None)
@given(
    st.floats(0.01, 5000, allow_nan=False),
    st.integers(1, 64),
    st.one_of(st.none(), st.integers(1, 64)),
)
def test_make_divisible_is_torchvisions_rule(value, divisor, min_value):
    args = f"{value!r}, {divisor}" + (f", {min_value}" if min_value is not None else "")
    assert evaluate(f"make_divisible({args})", {}) == torchvision_make_divisible(value, divisor, min_value)


def test_evaluator_reports_unknown_vars_and_bad_arithmetic():
    with pytest.raises(ExpressionError, match='no var named "growht"'):
        evaluate("growht * 2", {"growth": 32})
    with pytest.raises(ExpressionError, match="division by zero"):
        evaluate("growth // 0", {"growth": 32})
    with pytest.raises(ExpressionError, match="out of range"):
        evaluate("depths[4]", {"depths": [1, 2]})
    with pytest.raises(ExpressionError, match=r"ceil\(\) takes 1 argument, got 2"):
        evaluate("ceil(1, 2)", {})
    with pytest.raises(ExpressionError, match=r"sum\(\) takes one list"):
        evaluate("sum(1, 2)", {})
    with pytest.raises(ExpressionError, match=r"as list\[start:stop\]"):
        evaluate("depths[::2]", {"depths": [1, 2]})
    with pytest.raises(ExpressionError, match="bounds are integers"):
        evaluate("depths[:1.5]", {"depths": [1, 2]})
    with pytest.raises(ExpressionError, match="divisor must be a whole number"):
        evaluate("make_divisible(10, 0.5)", {})
    with pytest.raises(ExpressionError, match=r"ceil\(\) of inf"):
        evaluate("ceil(1e308 * 10)", {})
    for text in ("make_divisible(1e308 * 10, 8)", "round(1e308 * 10)", "make_divisible(1e308 * 10 - 1e308 * 10, 8)"):
        with pytest.raises(ExpressionError, match="out of range"):
            evaluate(text, {})


# ---------------------------------------------------------------- vars and overrides


def test_vars_and_overrides_from_the_library():
    data = spec({"conv": {"out": "width * 2", "kernel": 3}}, "flatten", {"linear": "num_classes"},
                vars={"width": 4, "num_classes": 10})  # fmt: skip
    assert analyze(data).body.out_shape == (10,)
    model = compile_spec(data, overrides={"num_classes": 3, "width": 1})
    assert model(torch.zeros(1, 3, 8, 8)).shape == (1, 3)
    with pytest.raises(UsageError, match=r'no var named "num_class".*did you mean "num_classes".*known vars'):
        analyze(data, overrides={"num_class": 3})


def test_set_on_the_command_line(capsys):
    spec_path = str(SPECS / "resnet18.yaml")
    assert main(["build", spec_path, "--set", "num_classes=7"]) == 0
    assert "-> output (B, 7)" in capsys.readouterr().out
    assert main(["check", "-q", spec_path, "--set", "nope=1"]) == 2
    assert "known vars: depths, num_classes" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["check", spec_path, "--set", "num_classes=ten"])
    assert exc.value.code == 2


def test_every_standard_network_exposes_num_classes():
    for name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                 "densenet121", "densenet161", "densenet169", "densenet201"):  # fmt: skip
        assert analyze(SPECS / f"{name}.yaml", overrides={"num_classes": 10}).body.out_shape == (10,)


# ---------------------------------------------------------------- repeat


def test_repeat_numbers_copies_like_torchvision():
    model = analyze(SPECS / "resnet18.yaml")
    assert [p for p in paths(model) if p.count(".") == 1 and p.startswith("layer2")] == ["layer2.0", "layer2.1"]
    first, second = (node for node in walk(model.body) if node.path in ("layer2.0", "layer2.1"))
    assert (first.stride, second.stride) == (2, 1)
    assert first.shortcut is not None and second.shortcut is None


def test_repeat_names_named_copies_from_one_and_exposes_the_index():
    data = spec({"conv": {"name": "c", "out": "4 + i", "kernel": 1, "repeat": 3}})
    model = analyze(data)
    assert [(c.name, c.out_shape[0]) for c in model.body.children] == [("c1", 4), ("c2", 5), ("c3", 6)]


def test_name_templates_name_each_copy_and_hyphens_reach_the_state_dict():
    """torchvision's RegNet keys: trunk_output.block1.block1-0, block1-1, block2.block2-0, ..."""
    stage = {"conv": {"name": "block{index}-{i}", "out": 4, "kernel": 1, "repeat": "depth"}}
    text = spec(
        {"group": {"name": "trunk", "layers": [
            {"repeat": {"times": 2, "index": "s", "layers": [{"stage": {"name": "block{s + 1}", "index": "s + 1", "depth": "s + 1"}}]}},
        ]}},
        blocks={"stage": {"params": {"index": "int", "depth": "int"}, "layers": [stage]}},
    )  # fmt: skip
    model = analyze(text)
    assert paths(model) == ["trunk", "trunk.block1", "trunk.block1.block1-0", "trunk.block2", "trunk.block2.block2-0",
                            "trunk.block2.block2-1"]  # fmt: skip
    keys = list(compile_spec(text).state_dict())
    assert keys[:2] == ["trunk.block1.block1-0.weight", "trunk.block1.block1-0.bias"] and len(keys) == 6


@pytest.mark.parametrize(
    "name, message, code",
    [
        ("b{j}", 'no var named "j" in the name \'b{j}\' (known: ', "bad-expression"),
        ("b{i / 2}", "a name's {i / 2} must give an integer >= 0, got 0.5", "bad-expression"),
        ("b{i - 5}", "a name's {i - 5} must give an integer >= 0, got -5", "bad-expression"),
        ("b{(}", "", "bad-expression"),
        ("b{i}.x", "a name must be ASCII letters, digits, _ and - starting with a letter, or a number (0, 1, ...), got 'b0.x'", "bad-name"),
        ("{i}b", "a name must be ASCII letters, digits, _ and - starting with a letter, or a number (0, 1, ...), got '0b'", "bad-name"),
        ("b{0}-{i}", 'the name "b0" is already used', "duplicate-name"),
    ],
)
def test_name_template_mistakes_are_located_at_the_name(name, message, code):
    text = f"archspec: 1\nname: t\ninput: [3, 4, 4]\nlayers:\n  - relu\n  - relu:\n      name: \"{name}\"\n      repeat: 2\n"
    if name == "b{0}-{i}":
        text = text.replace("{0}-{i}", "{0}")
    with pytest.raises(SpecError) as caught:
        analyze(text)
    diagnostic = caught.value.diagnostics[0]
    assert diagnostic.code == code and message in diagnostic.message, diagnostic.format()
    assert diagnostic.loc.line in (6, 7), diagnostic.format()


def test_flat_repeat_splices_copies_numbered_with_their_neighbours():
    """VGG's features: stages of conv (+ batchnorm where bn is 1) + relu pairs, then a pool, all
    numbered 0, 1, 2, ... in one sequence, as torchvision numbers them; repeats nest by index name."""
    stage = {
        "repeat": {
            "times": "depths[s]",
            "layers": [
                {"conv": {"out": "widths[s]", "kernel": 3, "padding": 1}},
                {"batchnorm": {"repeat": "bn"}},
                "relu",
            ],
        }
    }
    features = {
        "group": {
            "name": "features",
            "layers": [
                "identity",
                {"repeat": {"times": 2, "index": "s", "layers": [stage, {"maxpool": 2}]}},
                "flatten",
            ],
        }
    }
    for bn, kinds in (
        (0, "conv relu maxpool conv relu conv relu maxpool"),
        (1, "conv batchnorm relu maxpool conv batchnorm relu conv batchnorm relu maxpool"),
    ):
        model = analyze(spec(features, input_shape=(3, 8, 8), vars={"widths": [4, 6], "depths": [1, 2], "bn": bn}))
        children = model.body.children[0].children
        assert [c.kind for c in children] == ["identity", *kinds.split(), "flatten"]
        assert [c.name for c in children] == [str(n) for n in range(len(children))]
        assert [c.out_shape[0] for c in children if c.kind == "conv"] == [4, 6, 6]
    # fmt: skip


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"repeat": {"times": 2}}, "repeat takes {times: n, layers: [...]}"),
        ({"repeat": [{"relu": None}]}, "repeat takes {times: n, layers: [...]}"),
        ({"repeat": {"times": -1, "layers": ["relu"]}}, "repeat's times must be an integer >= 0, got -1"),
        ({"repeat": {"times": 1, "layers": ["relu"], "idx": "s"}}, 'unknown field "idx" of repeat'),
        ({"repeat": {"times": 1, "layers": ["relu"], "index": "2s"}}, "repeat's index must be a var name"),
        ({"repeat": {"times": "n", "layers": ["relu"]}}, "repeat's times must be an integer >= 0, got 'n'"),
    ],
)
def test_flat_repeat_mistakes_are_located(entry, message):
    import yaml

    text = yaml.safe_dump(spec("relu", entry), sort_keys=False)
    with pytest.raises(SpecError) as caught:
        analyze(text)
    assert message in str(caught.value)
    lines = text.splitlines()
    (diagnostic,) = caught.value.diagnostics
    repeat_line = next(n for n, line in enumerate(lines, 1) if "- repeat:" in line)
    assert repeat_line <= diagnostic.loc.line <= repeat_line + 4  # at the repeat, not at the spec


# ---------------------------------------------------------------- extends


def test_variants_are_a_few_lines_on_their_base():
    lines = [line for line in (SPECS / "densenet169.yaml").read_text().splitlines() if line.strip()]
    assert len(lines) <= 15
    assert analyze(SPECS / "densenet169.yaml").body.params == 14_149_480


def test_extends_with_a_named_part_override(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {SPECS / 'densenet121.yaml'}\nname: small\noverride:\n  classifier: {{out: 5}}\n")
    model = analyze(child)
    assert (model.name, model.body.out_shape) == ("small", (5,))


def test_an_override_can_replace_a_groups_layers_block_uses_included(tmp_path):
    """SqueezeNet 1.1 is 1.0 with other features: the new list is expanded like any (short forms,
    block uses), and nothing recorded of the old list (block uses at the same positions) remains."""
    base = tmp_path / "base.yaml"
    base.write_text(
        "archspec: 1\nname: base\ninput: [3, 8, 8]\n"
        "blocks:\n  unit:\n    params: {out: int}\n    layers: [conv: {name: conv, out: out, kernel: 1}]\n"
        "layers:\n  - group:\n      name: features\n      layers: [unit: 4, relu, unit: 6]\n"
    )
    child = tmp_path / "child.yaml"
    child.write_text(
        "extends: base.yaml\nname: child\noverride:\n  features:\n"
        "    layers: [relu, unit: 5, unit: 7, maxpool: 2]\n"
    )
    model = analyze(child)
    features = model.body.children[0]
    assert [(c.kind, c.out_shape) for c in features.children] == [
        ("relu", (3, 8, 8)), ("unit", (5, 8, 8)), ("unit", (7, 8, 8)), ("maxpool", (7, 4, 4))]  # fmt: skip
    assert paths(model)[-4:] == ["features.1.conv", "features.2", "features.2.conv", "features.3"]
    child.write_text(child.read_text().replace("unit: 7", "unit: {out: 7, size: 3}").replace("relu,", "[relu],"))
    with pytest.raises(SpecError) as caught:  # two wrong layers in the replaced list: located, no crash
        analyze(child)
    assert [d.loc.line for d in caught.value.diagnostics] == [5, 5]


# ---------------------------------------------------------------- user-defined blocks


def test_an_error_in_a_block_that_is_one_residual_points_into_the_block(tmp_path):
    path = tmp_path / "ir.yaml"
    path.write_text(
        "archspec: 1\nname: t\ninput: [8, 6, 6]\nblocks:\n  ir:\n    params: {mid: int}\n    layers:\n"
        "      - residual:\n          activation: bogus\n          body:\n"
        "            - conv: {out: mid, kernel: 9}\n            - conv: {out: 8, kernel: 1}\n"
        "layers:\n  - ir: 4\n"
    )
    for fix, expected in (("bogus", (9, "bad-value", [14])), ("kernel: 9", (11, "output-size", [14]))):
        path.write_text(path.read_text().replace("bogus", "relu") if fix == "kernel: 9" else path.read_text())
        with pytest.raises(SpecError) as caught:
            analyze(path)
        found = [(d.loc.line, d.code, [note.line for note, _ in d.notes]) for d in caught.value.diagnostics]
        assert found == [expected]


def test_user_blocks_expand_at_their_use_with_their_name_as_kind():
    blocks = {"unit": {"params": {"out": "int", "stride": 1},
                       "layers": [{"conv": {"name": "conv", "out": "out", "kernel": 3, "stride": "stride",
                                            "padding": 1}}, {"batchnorm": {"name": "bn"}}]}}  # fmt: skip
    data = spec({"unit": {"name": "a", "out": 8}}, {"unit": {"name": "b", "out": 16, "stride": 2}}, blocks=blocks)
    model = analyze(data)
    assert [n.kind for n in model.body.children] == ["unit", "unit"]
    assert model.body.out_shape == (16, 4, 4)
    assert paths(model) == ["a", "a.conv", "a.bn", "b", "b.conv", "b.bn"]


# ---------------------------------------------------------------- graphs


def test_from_feeds_earlier_outputs_and_merges_them():
    data = spec(
        {"conv": {"name": "a", "out": 4, "kernel": 3, "padding": 1}},
        {"conv": {"name": "b", "out": 4, "kernel": 3, "padding": 1}},
        {"identity": {"name": "sum", "from": ["a", "b"], "merge": "add"}},
        {"identity": {"name": "cat", "from": ["sum", "a", "b"]}},
        {"conv": {"name": "again", "out": 2, "kernel": 1, "from": "a"}},
    )
    model = analyze(data)
    assert [c.out_shape for c in model.body.children] == [(4, 8, 8), (4, 8, 8), (4, 8, 8), (12, 8, 8), (2, 8, 8)]
    module = compile_spec(data).eval()
    x = torch.randn(2, 3, 8, 8)
    a = module.a(x)
    torch.testing.assert_close(module(x), module.again(a))


def test_unet_output_size_equals_input_size():
    model = analyze(SPECS / "unet.yaml")
    assert model.body.out_shape[1:] == model.input_shape[1:]
    with pytest.raises(SpecError) as exc:
        analyze(SPECS / "unet.yaml", overrides={"size": 100})
    (error,) = exc.value.diagnostics
    assert error.code == "concat-mismatch" and "up3 (B, 256, 24, 24), enc3 (B, 256, 25, 25)" in error.message
