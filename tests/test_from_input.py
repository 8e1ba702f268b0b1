"""`from: input`: a layer of any sequence (the model, a group, a user block's body, a residual's body
or shortcut) may read the input that sequence received.

Each case is checked at every stage: the static shapes against torch's (a hook on every module of
the live model), the emitted module against the live one on the same weights, the receptive fields
against gradients through the module, the accepted input sizes against torch and against the shape
stage at each size, and the diagram. The located errors are at the end.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_costs import _measurable, _measured, _predicted
from test_diagram import read_dot, read_mermaid, same_graph
from test_differential import assert_emitted_equals_live

from archspec import SpecError, analyze, compile_spec, measure
from archspec.reports.diagram import dot, mermaid
from archspec.backends.emit import emit_python
from archspec.core.ir import Op, walk

HEADER = "archspec: 1\nname: {name}\ninput: {input}\n"

# Four branches from the block's input, concatenated: GoogLeNet's Inception block without the
# dummy `identity: {name: x}` it needed before. Two uses of different widths, and a top-level
# layer reading the model's own input.
INCEPTION = """
blocks:
  inception:
    params: {c1: int, c3: int, c5: int, cp: int}
    layers:
      - conv: {name: branch1, out: c1, kernel: 1, from: input}
      - conv: {name: branch2, out: c3, kernel: 3, padding: 1, from: input}
      - conv: {name: branch3, out: c5, kernel: 5, padding: 2, from: input}
      - maxpool: {name: pool, kernel: 3, stride: 1, padding: 1, from: input}
      - conv: {name: branch4, out: cp, kernel: 1}
      - identity: {name: cat, from: [branch1, branch2, branch3, branch4]}
layers:
  - conv: {name: stem, out: 8, kernel: 3, padding: 1}
  - inception: {name: i1, c1: 4, c3: 4, c5: 2, cp: 2}
  - inception: {name: i2, c1: 4, c3: 6, c5: 3, cp: 1}
  - conv: {name: side, out: 14, kernel: 1, from: input}
  - identity: {name: sum, from: [i2, side], merge: add}
  - relu
"""

# In a group: two strided branches of the group's input meet in a concatenation, which only even
# sizes pass (pooling floors n / 2, the padded conv ceils it).
GROUP = """
layers:
  - conv: {name: stem, out: 6, kernel: 3, padding: 1}
  - group:
      name: down
      layers:
        - maxpool: {name: pool, kernel: 2, from: input}
        - conv: {name: conv, out: 6, kernel: 3, stride: 2, padding: 1, from: input}
        - identity: {name: cat, from: [pool, conv]}
        - conv: {out: 8, kernel: 1}
  - relu
"""

# At top level, with `merge: add` and `merge: concat`, before a classifier (`out` in the emitted
# forward keeps `x` the input; the classifier is the `num_classes` argument).
TOP = """
vars: {num_classes: 5}
layers:
  - conv: {name: conv1, out: 4, kernel: 3, padding: 1}
  - relu
  - conv: {name: conv3, out: 4, kernel: 3, padding: 1}
  - identity: {name: skip, from: [input, conv3], merge: add}
  - conv: {name: mix, out: 6, kernel: 1, from: [conv3, input, skip], merge: concat}
  - maxpool: 2
  - flatten
  - linear: num_classes
"""

# In a residual body (auto shortcut: the identity), and in an explicit shortcut.
RESIDUAL = """
layers:
  - residual:
      name: res
      activation: relu
      body:
        - conv: {name: a, out: 6, kernel: 3, padding: 1}
        - batchnorm: {name: bn}
        - relu
        - conv: {name: b, out: 6, kernel: 1, from: input}
        - identity: {name: both, from: [bn, b], merge: add}
  - residual:
      name: res2
      body:
        - conv: {name: a, out: 4, kernel: 3, stride: 2, padding: 1}
        - conv: {name: b, out: 4, kernel: 1, stride: 2, from: input}
        - identity: {name: cat, from: [a, b]}
      shortcut:
        - conv: {name: p, out: 4, kernel: 1, stride: 2}
        - conv: {name: q, out: 4, kernel: 3, stride: 2, padding: 1, from: input}
        - identity: {from: [p, q]}
"""

# Nested groups, each reading its own input; an inner output and the input merged; a
# squeeze-and-excitation gate multiplying the group's input.
NESTED = """
layers:
  - conv: {name: stem, out: 4, kernel: 3, padding: 1}
  - group:
      name: outer
      layers:
        - conv: {name: c, out: 4, kernel: 3, padding: 1}
        - group:
            name: inner
            layers:
              - conv: {name: d, out: 4, kernel: 3, padding: 1}
              - identity: {name: sum, from: [input, d], merge: add}
        - identity: {name: cat, from: [input, inner, inner.d]}
  - group:
      name: se
      layers:
        - global_avgpool
        - conv: {out: 3, kernel: 1}
        - relu
        - conv: {out: 12, kernel: 1}
        - sigmoid: {name: gate}
        - identity: {name: excite, from: [input, gate], merge: mul}
  - identity: {name: last, from: [input, se, outer.inner.d]}
"""

CASES = {
    "inception": ("[8, 12, 12]", INCEPTION),
    "group": ("[4, 10, 10]", GROUP),
    "top": ("[4, 9, 9]", TOP),
    "residual": ("[6, 8, 8]", RESIDUAL),
    "nested": ("[4, 8, 8]", NESTED),
}
SIZES = {  # what each case accepts along H (W alike)
    "inception": "any H >= 1",
    "group": "H >= 2, divisible by 2",
    "top": "8 <= H <= 9",
    "residual": "any H >= 1",
    "nested": "any H >= 1",
}


def source(name: str) -> str:
    shape, body = CASES[name]
    return HEADER.format(name=name, input=shape) + body


def with_input(name: str, shape) -> str:
    return HEADER.format(name=name, input=list(shape)) + CASES[name][1]


# ---------------------------------------------------------------- shapes and the emitted module


@pytest.mark.parametrize("name", sorted(CASES))
def test_static_shapes_equal_torchs(name):
    model = analyze(source(name))
    live = compile_spec(source(name)).eval()
    seen = {}

    def record(path, out):
        seen[path] = out[0] if isinstance(out, tuple) else out  # a group handing out inner outputs: its own first

    for node in walk(model.body):
        if node.path:
            live.get_submodule(node.path).register_forward_hook(lambda m, i, out, path=node.path: record(path, out))
    with torch.no_grad():
        out = live(torch.rand(2, *model.input_shape))
    assert tuple(out.shape[1:]) == model.body.out_shape
    for node in walk(model.body):
        if node.path:
            assert tuple(seen[node.path].shape[1:]) == node.out_shape, node.path


@pytest.mark.parametrize("name", sorted(CASES))
def test_emitted_module_equals_the_live_one(name):
    assert_emitted_equals_live(source(name))


def forward_of(text: str, class_name: str) -> list[str]:
    """The lines of a class's forward in emitted source."""
    body = text.split(f"\nclass {class_name}(")[1].split("\n\n\n")[0]
    return [line.strip() for line in body.split("    def forward(")[1].splitlines()[1:] if line.strip()]


def test_emitted_forward_reads_the_input_from_x():
    """x is never reassigned in a forward that reads it: each step writes `out` or a kept local."""
    forward = forward_of(emit_python(source("top")), "Top")
    assert forward[0] == "out = self.conv1(x)  # (B, 4, 9, 9)"
    assert "out = x + conv3  # (B, 4, 9, 9)" in forward
    assert "out = torch.cat([conv3, x, skip], 1)  # (B, 12, 9, 9)" in forward
    assert not any(line.startswith("x =") for line in forward)
    text = emit_python(source("inception"))  # the model is class Inception, the block Inception_
    inception = forward_of(text, "Inception_")
    assert inception[:3] == ["branch1 = self.branch1(x)  # (B, 4, 12, 12)", "branch2 = self.branch2(x)",
                             "branch3 = self.branch3(x)"]  # fmt: skip
    assert inception[3].startswith("out = self.pool(x)")
    assert "side = self.side(x)  # (B, 14, 12, 12)" in forward_of(text, "Inception")


def test_an_unreferenced_input_changes_nothing_in_the_emitted_forward():
    """Specs without `from: input` keep the forward they had: `x = ...` at top level."""
    plain = HEADER.format(name="plain", input="[3, 8, 8]") + "layers:\n  - conv: {name: c, out: 4, kernel: 3}\n"
    text = emit_python(plain)
    assert forward_of(text, "Plain") == ["x = self.c(x)  # (B, 4, 6, 6)", "return x"]


# ---------------------------------------------------------------- costs


@pytest.mark.parametrize("name", sorted(CASES))
def test_receptive_fields_equal_gradients_through_the_module(name):
    costs = measure(analyze(source(name)))
    model = analyze(source(name))
    module = _measurable(compile_spec(source(name)))
    rows = {row.path: row for row in costs.layers}
    ops = [node for node in walk(model.body) if isinstance(node, Op) and len(node.out_shape) > 1]
    for op in ops:
        row = rows[op.path]
        if row.field.whole:
            continue
        sizes = row.out_shape[1:]
        for index in (tuple(n // 2 for n in sizes), (0,) * len(sizes), tuple(n - 1 for n in sizes)):
            expected = _predicted(row.field, index, model.input_shape[1:])
            assert _measured(module, op.path, model.input_shape, index) == expected, f"{op.path} at {index}"


def test_a_layer_reading_the_input_sees_what_the_input_sees():
    fields = {row.path: row.field for row in measure(analyze(source("inception"))).layers}
    assert fields["side"].describe() == "1x1 /1"  # the model's input: one pixel
    assert fields["i1.branch1"].describe() == "3x3 /1"  # i1's input: the stem's output
    assert fields["i1.branch3"].describe() == "7x7 /1"
    assert fields["i1"].describe() == "7x7 /1"  # the widest branch
    assert fields["i2.branch1"].describe() == "7x7 /1" and fields["i2"].describe() == "11x11 /1"
    nested = {row.path: row.field for row in measure(analyze(source("nested"))).layers}
    assert nested["outer.inner.sum"].describe() == "7x7 /1"  # inner's input saw 5x5 (stem, c)
    assert nested["outer.cat"].describe() == "7x7 /1"  # outer's input (3x3) and the inner outputs (7x7)
    assert nested["se.excite"].whole  # the gate saw the whole input


def test_memory_counts_the_input_once():
    """`from: input` reads the tensor the sequence already received: nothing new is made for it."""
    plain = HEADER.format(name="m", input="[4, 8, 8]") + "layers:\n  - conv: {name: a, out: 4, kernel: 3, padding: 1}\n"
    reread = plain + "  - conv: {name: b, out: 4, kernel: 3, padding: 1, from: input}\n"
    base, again = measure(analyze(plain)), measure(analyze(reread))
    assert again.input_bytes == base.input_bytes
    # b's output is the only tensor added, and nothing keeps it (no layer reads it)
    assert again.activation_bytes == base.activation_bytes
    group = HEADER.format(name="g", input="[4, 8, 8]") + (
        "layers:\n  - relu: {name: r}\n  - group:\n      name: g\n      layers:\n"
        "        - conv: {name: a, out: 4, kernel: 3, padding: 1}\n"
        "        - conv: {name: b, out: 4, kernel: 3, padding: 1, from: input}\n"
    )
    rows = {row.path: row for row in measure(analyze(group)).layers}
    assert rows["r"].activation_bytes == 4 * 8 * 8 * 4  # relu's output, read by two convs, kept once
    assert rows["g"].activation_bytes == 0


def _runs_in_torch(module, shape) -> bool:
    try:
        with torch.no_grad():
            module(torch.rand(2, *shape))
    except (RuntimeError, ValueError):
        return False
    return True


def _runs_statically(name, shape, declared) -> bool:
    try:
        model = analyze(with_input(name, shape))
    except SpecError:
        return False
    layers = lambda m: {node.path: (node.kind, node.params, dict(node.args)) for node in walk(m.body)}
    return layers(model) == layers(declared)


@pytest.mark.parametrize("name", sorted(CASES))
def test_valid_sizes_agree_with_torch_and_the_shape_check(name):
    declared = analyze(source(name))
    report = measure(declared).input_sizes
    assert report[0].describe() == SIZES[name]
    module = compile_spec(source(name)).eval()
    for dim, sizes in enumerate(report):
        for n in range(1, declared.input_shape[dim + 1] + 8):
            shape = list(declared.input_shape)
            shape[dim + 1] = n
            assert sizes.accepts(n) == _runs_in_torch(module, shape), (sizes, n)
            assert sizes.accepts(n) == _runs_statically(name, shape, declared), (sizes, n)


# ---------------------------------------------------------------- the diagram


@pytest.mark.parametrize("depth", [None, 1, 2])
@pytest.mark.parametrize("name", sorted(CASES))
def test_diagram_renders(name, depth):
    model = analyze(source(name))
    chart = read_mermaid(mermaid(model, depth))
    same_graph(chart, read_dot(dot(model, depth)))


def test_diagram_draws_an_edge_from_the_sequences_entry():
    chart = read_mermaid(mermaid(analyze(source("inception"))))
    entry, stem = chart.box_named("input"), chart.box_named("stem")
    assert (entry, "(B, 8, 12, 12)") in chart.into(chart.box_named("side"))  # the model's input
    for branch in ("branch1", "branch2", "branch3", "pool"):  # i1's input: the stem's output
        assert chart.into(chart.box_named(f"i1.{branch}")) == [(stem, "(B, 8, 12, 12)")]
    cat = chart.box_named("i1.cat")
    assert chart.into(chart.box_named("i2.branch1")) == [(cat, "(B, 12, 12, 12)")]
    closed = read_mermaid(mermaid(analyze(source("group")), 1))  # the group is one box
    assert closed.into(closed.box_named("down")) == [(closed.box_named("stem"), "(B, 6, 10, 10)")]
    nested = read_mermaid(mermaid(analyze(source("nested"))))
    (sum_join,) = [s for s, _ in nested.into(nested.box_named("outer.inner.sum"))]
    assert sorted(s for s, _ in nested.into(sum_join)) == sorted(
        [nested.box_named("outer.c"), nested.box_named("outer.inner.d")]
    )


# ---------------------------------------------------------------- located errors


def errors_of(text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        analyze(text)
    assert all(d.loc is not None for d in caught.value.diagnostics)
    return str(caught.value).splitlines()


def test_reaching_into_the_input_is_a_located_error():
    text = HEADER.format(name="m", input="[3, 8, 8]") + (
        "layers:\n"
        "  - conv: {name: conv, out: 4, kernel: 3}\n"
        "  - relu: {from: input.conv}\n"
    )  # fmt: skip
    assert errors_of(text) == [
        '<string>:6:18: error: from: "input" is the input of this sequence, which has no layers to reach into'
        " [bad-reference]"
    ]


def test_a_layer_named_input_is_a_located_error():
    text = HEADER.format(name="m", input="[3, 8, 8]") + (
        "layers:\n"
        "  - conv: {name: conv, out: 4, kernel: 3}\n"
        "  - group:\n"
        "      layers:\n"
        "        - relu: {name: input}\n"
    )  # fmt: skip
    reason = 'the name "input" is reserved: `from: input` means the input of the sequence; rename the layer'
    assert errors_of(text) == [f"<string>:8:24: error: {reason} [bad-name]"]
    in_block = HEADER.format(name="m", input="[3, 8, 8]") + (
        "blocks:\n"
        "  unit:\n"
        "    layers:\n"
        "      - relu: {name: input}\n"
        "layers:\n"
        "  - unit: {name: u}\n"
        "  - unit: {name: input}\n"
    )  # fmt: skip
    assert errors_of(in_block) == [  # the body's layer, once per use (as any error in a block body)
        f"<string>:7:22: error: {reason} [bad-name]",
        "<string>:9:5: note: in block unit, used here",
        f"<string>:7:22: error: {reason} [bad-name]",
        "<string>:10:5: note: in block unit, used here",
        f"<string>:10:18: error: {reason} [bad-name]",  # the use's own name
    ]


def test_a_misspelt_input_suggests_it_and_a_group_has_no_layer_named_input():
    text = HEADER.format(name="m", input="[3, 8, 8]") + (
        "layers:\n"
        "  - group: {name: g, layers: [relu]}\n"
        "  - relu: {from: inptu}\n"
        "  - relu: {from: g.input}\n"
    )  # fmt: skip
    assert errors_of(text) == [
        '<string>:6:18: error: from: no earlier layer named "inptu" in this sequence; did you mean "input"?'
        " [bad-reference]",
        '<string>:7:18: error: from: g has no layer named "input" [bad-reference]',
    ]


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).resolve().parent.parent / "specs").glob("*.yaml")), ids=lambda p: p.stem
)
def test_no_spec_names_a_layer_input(path):
    """`input` became reserved: no spec of the zoo used it as a layer name."""
    model = analyze(path)
    assert not any(node.name == "input" for node in walk(model.body)), path


def test_top_level_layers_named_like_the_emitted_locals():
    """At top level `x` stays the input once `from: input` is used, so a kept layer named `out` or
    `x` gets a local of its own."""
    assert_emitted_equals_live(
        HEADER.format(name="m", input="[4, 6, 6]") + "layers:\n"
        "  - conv: {name: out, out: 3, kernel: 1}\n"
        "  - conv: {name: x, out: 5, kernel: 1, from: input}\n"
        "  - conv: {name: x_, out: 2, kernel: 1, from: [out, x, input]}\n"
        "  - identity: {from: [x_, input, out, x]}\n"
        "  - relu: {from: input}\n"
    )
