"""Hostile specs (issue 11, spec-level classes): every input that once hung, exhausted memory, printed
megabytes or ended in a traceback now ends in a located error, quickly, and says which limit to raise.

Four classes, each a family of inputs rather than one example:

- unbounded expansion: anchors fanning out through user blocks, `repeat: 1000000000`, a dense block
  of a million layers, blocks that double each other, repeats nested in repeats (limit layers);
- unbounded arithmetic: vars squared over and over, numbers of thousands of digits, `/` of big
  integers, huge resizing scales and sizes (limit digits);
- recursion: long and deep expressions, vars in reverse order, chains of blocks and of `extends:`,
  self-referencing and deeply nested data given to analyze() (limits expression_size and depth);
- output amplification: lists of known names, notes, long names, "did you mean" (bounded always).

Each case runs in-process under a time bound (an alarm stops a hang); one test also runs the CLI on
every hostile file in a process with a memory limit, and checks that nothing prints a traceback.
"""

from __future__ import annotations

import re
import resource
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from conftest import time_limit

from archspec import Limits, SpecError, analyze, measure
from archspec.core.errors import LIMIT, did_you_mean, digits, show_number, show_value
from archspec.frontend.expand import expand
from archspec.frontend.expressions import ExpressionError, evaluate
from archspec.core.limits import applied, how_to_raise
from archspec.frontend.load import load_text

ROOT = Path(__file__).resolve().parent.parent
HEAD = "archspec: 1\nname: hostile\ninput: [3, 8, 8]\n"
ERROR_LINE = re.compile(r"^(?P<path>.+?):(?P<line>\d+):(?P<col>\d+): error: (?P<message>.*) \[(?P<code>[a-z-]+)\]$")
BOUND = 20.0  # seconds any case may take here, on a slow shared machine; each takes well under one


def within(seconds: float = BOUND):
    """Fails the test if the block takes longer than `seconds`, and stops it if it hangs."""
    return time_limit(seconds)


def refused(source, limits: Limits | None = None, **kwargs) -> list:
    """The diagnostics of a spec that must fail cleanly: a SpecError, in time, every one located."""
    with within():
        with pytest.raises(SpecError) as caught:
            analyze(source, limits=limits, **kwargs)
    diagnostics = caught.value.diagnostics
    assert diagnostics
    for diagnostic in diagnostics:
        assert diagnostic.loc is not None, diagnostic
        assert len(diagnostic.format()) < 3_000, diagnostic.format()[:500]
        assert len(diagnostic.notes) <= 10
    return diagnostics


def one(diagnostics, code=LIMIT):
    found = [d for d in diagnostics if d.code == code]
    assert found, [d.format() for d in diagnostics]
    return found[0]


def line_of(text: str, fragment: str | int) -> int:
    """The 1-based line of `text` holding `fragment` first (a number is the line itself)."""
    if isinstance(fragment, int):
        return fragment
    return next(number for number, line in enumerate(text.splitlines(), 1) if fragment in line)


# ---------------------------------------------------------------- the hostile specs, as files


def fanout_blocks() -> str:
    """1.6 kB of valid layers: each block uses the one before ten times; anchors share the lists."""
    text = HEAD + "blocks:\n  b0: {layers: &l0 [relu, relu, relu, relu, relu, relu, relu, relu, relu, relu]}\n"
    for k in range(1, 9):
        text += f"  b{k}: {{layers: &l{k} [" + ", ".join([f"b{k - 1}"] * 10) + "]}\n"
    return text + "layers:\n  - relu\n  - b8\n"


def anchor_groups() -> str:
    """Anchors fanning out through groups alone: 10**4 relus in a few lines, 11,111 layers with the groups."""
    text = HEAD + "blocks:\n  leaf: {layers: &a0 [relu, relu, relu, relu, relu, relu, relu, relu, relu, relu]}\n"
    text += "  unused:\n    layers:\n"
    for k in range(1, 4):
        text += f"      - group: {{layers: &a{k} [" + ", ".join([f"{{group: {{layers: *a{k - 1}}}}}"] * 10) + "]}\n"
    return text + "layers:\n  - group: {layers: *a3}\n"


def doubling_blocks(levels: int = 60) -> str:
    text = HEAD + "blocks:\n  d0: {layers: [relu]}\n"
    text += "".join(f"  d{k}: {{layers: [d{k - 1}, d{k - 1}]}}\n" for k in range(1, levels + 1))
    return text + f"layers:\n  - d{levels}\n"


def block_chain(length: int, body: str = "{nxt}") -> str:
    text = HEAD + "blocks:\n"
    text += "".join(f"  c{k}: {{layers: [{body.format(nxt=f'c{k + 1}')}]}}\n" for k in range(length - 1))
    return text + f"  c{length - 1}: {{layers: [relu]}}\nlayers:\n  - c0\n"


FILES = {  # name: (text, code, a fragment of the message, the fragment of the line it is at)
    "fanout_blocks": (fanout_blocks(), LIMIT, "makes more than 250,000 layers", "- b8"),
    "repeat_billion": (HEAD + "layers:\n  - relu: {repeat: 1000000000}\n", LIMIT, "layers", "repeat:"),
    "dense_million": (
        HEAD + "layers:\n  - dense_block: {num_layers: 1000000, growth: 1}\n",
        LIMIT,
        "this dense_block makes more than 250,000 layers",
        "dense_block",
    ),
    "doubling_blocks": (doubling_blocks(), LIMIT, "this use of block d60 makes more than", "- d60"),
    "nested_repeats": (
        HEAD + "layers:\n  - repeat:\n      times: 1000\n      index: a\n      layers:\n"
        "        - repeat: {times: 1000, index: b, layers: [{repeat: {times: 1000, layers: [relu]}}]}\n",
        LIMIT,
        "this repeat makes more than 250,000 layers",
        6,
    ),
    "squaring": (
        HEAD
        + "vars:\n  v0: 3\n"
        + "".join(f"  v{k}: v{k - 1} * v{k - 1}\n" for k in range(1, 35))
        + "layers:\n  - conv: {out: v34, kernel: 1}\n",
        LIMIT,
        "a number of more than 60 digits",
        "v7: v6 * v6",
    ),
    "long_literal": (
        HEAD + "layers:\n  - conv: {out: " + "9" * 4000 + ", kernel: 1}\n",
        LIMIT,
        "(4,000 digits)",
        "conv",
    ),
    "literal_past_python": (
        HEAD + 'layers:\n  - conv: {out: "' + "7" * 5000 + ' + 1", kernel: 1}\n',
        LIMIT,
        "more than 60 digits",
        "conv",
    ),
    "upsample_huge": (HEAD + "layers:\n  - upsample: 1.0e+308\n", LIMIT, "beyond 10**60", "upsample"),
    "upsample_twice": (
        HEAD + "layers:\n  - upsample: 1.0e+59\n  - upsample: 1.0e+59\n",
        "output-size",
        "(119 digits)",
        6,
    ),
    "expression_3000": (
        HEAD + "layers:\n  - conv: {out: '" + "+".join(["1"] * 3000) + "', kernel: 1}\n",
        LIMIT,
        "more than 1,000 operators and operands",
        "conv",
    ),
    "expression_deep": (
        HEAD + "layers:\n  - conv: {out: '" + "(" * 150 + "1" + ")" * 150 + "', kernel: 1}\n",
        "bad-value",  # Python's parser refuses more than 200 parentheses: plain text, not a number
        "expected an integer",
        "conv",
    ),
    "unary_chain": (HEAD + "layers:\n  - conv: {out: '" + "-" * 1999 + "1', kernel: 1}\n", LIMIT, "expression", "conv"),
    "block_chain": (block_chain(1000), LIMIT, "layers nest more than 100 deep", "c98: {layers: [c99]}"),
    "residual_chain": (
        block_chain(1000, "{{residual: {{body: [{nxt}]}}}}"),
        LIMIT,
        "layers nest more than 100 deep",
        "c99: {layers: [{residual: {body: [c100]}}]}",
    ),
    "unknown_vars": (
        HEAD
        + "vars:\n"
        + "".join(f"  var_{k}: {k}\n" for k in range(5000))
        + "layers:\n"
        + "".join(f"  - conv: {{out: unknown_{k} * 2, kernel: 1}}\n" for k in range(300)),
        "bad-expression",
        "and 4,990 more",
        "unknown_0",
    ),
    "long_names": (
        HEAD
        + "layers:\n"
        + "".join(f"  - conv: {{name: {'n' * 100_000}, out: 4, kernel: 1}}\n" for _ in range(2))
        + f"  - relu: {{from: {'n' * 100_000}x}}\n",
        "bad-name",  # a name is at most 128 characters (issue 29): refused with its length, not shown
        "at most 128 characters, got one of 100,000",
        5,
    ),
}


@pytest.mark.parametrize("name", list(FILES))
def test_hostile_file_is_one_located_error_in_time(name, tmp_path):
    text, code, fragment, where = FILES[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    diagnostics = refused(path)
    found = one(diagnostics, code)
    assert fragment in found.message, found.format()
    assert found.loc.path == str(path)
    assert found.loc.line == line_of(text, where), found.format()
    if code == LIMIT:
        assert found.message.endswith("archspec.Limits(" + found.message.split("archspec.Limits(")[-1])
        assert re.search(
            r"; limit \w+ = [\d,]+; raise it with --limit \w+=N or archspec\.Limits\(\w+=N\)$", found.message
        )


def test_the_cli_reports_every_hostile_file_without_a_traceback_within_memory(tmp_path):
    """All of them in one run of `archspec check`, with 1.5 GiB of address space and a time limit."""
    paths = []
    for name, (text, *_) in FILES.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        paths.append(str(path))

    def confine():
        resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29))

    result = subprocess.run(
        [sys.executable, "-m", "archspec", "check", "--max-errors", "0", *paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        preexec_fn=confine,
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    assert result.returncode == 1, result.stderr[-3000:]
    reported = {Path(m["path"]).stem for m in map(ERROR_LINE.match, result.stderr.splitlines()) if m}
    assert reported == set(FILES)
    assert len(result.stderr) < 400_000  # was 16 MB for the unknown vars alone


# ---------------------------------------------------------------- unbounded expansion


def test_a_repeat_of_a_billion_is_refused_before_any_copy_is_made():
    text = HEAD + "layers:\n  - conv: {out: 4, kernel: 1}\n  - relu: {repeat: 1000000000}\n"
    found = one(refused(text))
    assert found.loc.line == 6 and found.loc.col == line_of_col(text, "1000000000")
    assert "this relu, repeated, makes more than 250,000 layers" in found.message
    assert found.message.endswith(how_to_raise("layers"))


def line_of_col(text: str, fragment: str) -> int:
    line = text.splitlines()[line_of(text, fragment) - 1]
    return line.index(fragment) + 1


def test_anchors_fanning_out_are_counted_as_what_they_make():
    """The YAML shares one list among every use; the layers each use makes still count."""
    text = anchor_groups()
    with within():
        counted = expand(load_text(text))
    assert not counted.errors
    found = one(refused(text, Limits(layers=10_000)))
    assert found.loc.line == line_of(text, "layers: *a3}")
    assert "this group makes more than 10,000 layers" in found.message


def test_the_limit_is_exact_the_count_of_what_expansion_makes():
    """A spec of exactly `layers` layers passes expansion; one more is refused, at the layer that crosses."""
    text = (
        HEAD
        + "blocks:\n  pair: {layers: [relu, {group: {layers: [relu]}}]}\n"
        + "layers:\n  - repeat: {times: 4, layers: [pair, relu]}\n"
        + "  - dense_block: {num_layers: 3, growth: 2}\n  - relu\n"
    )  # 4 * (group + relu + group + relu + relu) + dense block (1 + 3) + relu = 25
    with applied(Limits(layers=25)):
        assert not expand(load_text(text)).errors
    with applied(Limits(layers=24)):
        errors = expand(load_text(text)).errors
    assert [(d.code, d.loc.line) for d in errors] == [(LIMIT, 9)]  # the last relu
    assert "this relu makes 1 layer, which with the 24 before it are more than 24" in errors[0].message
    with applied(Limits(layers=22)):
        errors = expand(load_text(text)).errors
    assert [(d.code, d.loc.line) for d in errors] == [(LIMIT, 8)]  # the dense block; its stand-in counts one
    assert "this dense_block makes 4 layers, which with the 20 before it" in errors[0].message


@pytest.mark.parametrize(
    "spec", ["densenet121", "efficientnet_b0", "vgg16_bn", "googlenet", "unet", "mobilenet_v3_small"]
)
def test_measuring_agrees_with_making_on_the_zoo(spec):
    """The count a spec is refused by is exactly the layers expansion makes: the zoo passes at its own
    count and is refused one below."""
    doc = load_text((ROOT / "specs" / f"{spec}.yaml").read_text(), f"specs/{spec}.yaml")
    made = _layers_made(expand(doc).data["layers"])
    with applied(Limits(layers=made)):
        assert not [d for d in expand(doc).errors if d.code == LIMIT]
    with applied(Limits(layers=made - 1)):
        assert [d.code for d in expand(doc).errors] == [LIMIT]


def _layers_made(layers: list) -> int:
    total, stack = 0, list(layers)
    while stack:
        layer = stack.pop()
        total += 1
        if layer.get("kind") == "dense_block":
            total += layer["num_layers"]
        for key in ("layers", "body", "shortcut"):
            if isinstance(layer.get(key), list):
                stack.extend(layer[key])
    return total


def test_copies_that_read_their_index_are_measured_one_by_one_within_the_limit():
    """A repeat whose copies' sizes depend on the index cannot be measured by one copy: it costs as
    much as making them would, bounded by the limit."""
    text = HEAD + "layers:\n  - repeat: {times: 1000000000, layers: [{relu: {repeat: 'i % 2 + 1'}}]}\n"
    found = one(refused(text, Limits(layers=20_000)))
    assert "this repeat makes more than 20,000 layers" in found.message
    text = HEAD + "layers:\n  - repeat: {times: 1000000000, layers: [{relu: {repeat: 'i * 0'}}]}\n"
    found = one(refused(text, Limits(layers=20_000)))  # empty copies count: a billion of them take time
    assert "more than 20,000 layers" in found.message


def test_copies_whose_values_read_the_index_are_still_measured_by_one_copy():
    text = HEAD + "layers:\n  - repeat: {times: 100000000, layers: [{conv: {out: 'i % 7 + 1', kernel: 1}}]}\n"
    assert "more than 250,000" in one(refused(text)).message


@pytest.mark.slow
def test_a_spec_of_100k_layers_is_admitted():
    text = HEAD + "layers:\n  - repeat: {times: 50000, layers: [{conv: {out: 3, kernel: 1}}, relu]}\n"
    model = analyze(text)
    assert len(model.body.children) == 100_000


# ---------------------------------------------------------------- unbounded arithmetic


def test_division_is_exact_for_integers_of_any_size_within_the_limit():
    assert evaluate("1152921504606846978 / 2", {}) == 576460752303423489  # (2**60 + 2) / 2, once off by one
    assert type(evaluate("1152921504606846978 / 2", {})) is int
    assert evaluate("65 / 2", {}) == 32.5
    big = 10**40 + 1
    assert evaluate(f"{big} / 3", {}) == float(Fraction(big, 3))  # correctly rounded, not float(big) / 3
    assert evaluate("x / y", {"x": 10**59, "y": 10**58}) == 10


@pytest.mark.parametrize(
    "text, scope",
    [
        ("x * x", {"x": 10**40}),
        ("x * x * x * x", {"x": 10**20}),
        ("x + x", {"x": 10**60 - 1}),
        ("int(1e300)", {}),
        ("ceil(x / 3) * 10 ** 3", {"x": 1}),  # ** is not arithmetic here: a plain error, not a hang
        ("round(5, -100000000000000)", {}),
        ("sum(xs) * sum(xs)", {"xs": [10**35] * 3}),
        ("1" * 5000 + " + 1", {}),
        ("1" * 61 + " + 1", {}),
    ],
    ids=["product", "powers", "sum", "int", "power-operator", "round", "sums", "literal-5000", "literal-61"],
)
def test_arithmetic_past_the_digit_limit_is_refused_before_it_is_computed(text, scope):
    with within(5):
        with pytest.raises(ExpressionError) as caught:
            evaluate(text, scope)
    message = str(caught.value)
    assert len(message) < 600
    assert "digits" in message or "not a simple arithmetic" in message


def test_floats_that_are_not_finite_are_errors():
    with pytest.raises(ExpressionError, match="not a finite number"):
        evaluate("1e308 * 10", {})
    with pytest.raises(ExpressionError, match=r"ceil\(\) of inf"):
        evaluate("ceil(1e308 * 10)", {})


def test_vars_squared_34_times_stop_at_the_first_that_is_too_big():
    text = FILES["squaring"][0]
    diagnostics = refused(text)
    assert [d.loc.line for d in diagnostics] == [line_of(text, "v7:"), line_of(text, "out: v34")]
    assert "var v34 has no value" in diagnostics[1].message  # the vars in between are not each reported


def test_big_numbers_are_shortened_wherever_they_are_shown():
    assert show_number(10**5000 + 5678) == "1000...5678 (5,001 digits)"
    assert show_number(-(10**70)) == "-1000...0000 (71 digits)"
    assert show_number(12345) == "12345"
    assert digits(10**4299) == 4300 and digits(10**4300 - 1) == 4300 and digits(9) == 1
    assert show_value([10**5000, "x" * 1000]).startswith("[1000...0000 (5,001 digits), 'xxx")
    for data in (
        {"conv": {"out": 10**5000, "kernel": 1}},
        {"conv": {"out": 4, "kernel": 1, 10**5000: 1}},  # a key, in data given as such
        {"linear": 10**100},
    ):
        diagnostics = refused(_spec(data))
        assert any("digits" in d.message for d in diagnostics), [d.format() for d in diagnostics]


def _spec(*layers, **top) -> dict:
    return {"archspec": 1, "name": "hostile", "input": [3, 8, 8], "layers": list(layers), **top}


def test_huge_sizes_give_output_size_errors_or_bounded_figures():
    # a huge scale past the digit limit's float bound: the shape rule refuses it, without an OverflowError
    found = one(refused(_spec({"upsample": 1e308}), Limits(digits=400)), "output-size")
    assert "beyond any size" in found.message
    # strides and kernels of 10**50 keep sizes small, but once took a loop over the stride
    with within():
        model = analyze(
            _spec(
                {"conv_transpose": {"out": 2, "kernel": 3, "stride": 10**12}},
                {"conv": {"out": 2, "kernel": 1, "stride": 10**50}},
                {"adaptive_avgpool": 100000},
                *[{"conv": {"out": 2, "kernel": 1, "stride": 10**50}}] * 30,
            )
        )
        costs = measure(model)
    assert costs.layers[-1].field.describe()  # composed without growing past 10**60
    # an output past 10**60 is an output-size error at the layer that makes it
    huge = {"conv_transpose": {"out": 2, "kernel": 1, "stride": 10**59}}  # 7 * 10**59 + 1 positions: fine
    found = one(refused(_spec(huge)))  # but (7 * 10**59)**2 positions, each 8 multiply-adds, are not
    assert "its multiply-adds (3920...0008 (121 digits))" in found.message
    huge = {"conv_transpose": {"out": 2, "kernel": 10**59, "stride": 1}}
    found = one(refused(_spec(huge)))  # a kernel of 10**59 squared: its parameters are too many
    assert "its parameters (6000...0002 (119 digits))" in found.message


def test_the_transposed_span_and_adaptive_windows_in_closed_form_match_the_loops():
    from archspec.analyses.costs import _adaptive_taps, _transposed_span
    from archspec.core.shape_rules import Window

    for kernel in range(1, 9):
        for dilation in range(1, 5):
            for stride in range(1, 10):
                extent = dilation * (kernel - 1) + 1
                taps = range(0, extent, dilation)
                spans = [[t for t in taps if (r - t) % stride == 0] for r in range(stride)]
                expected = max((hit[-1] - hit[0]) // stride for hit in spans if hit)
                window = Window(extent, stride, transposed=True, dilation=dilation)
                assert _transposed_span(window) == expected
    for n in range(1, 40):
        for out in range(1, 40):
            expected = max(-(-(i + 1) * n // out) - (i * n // out) for i in range(out))
            assert _adaptive_taps(n, out) == expected


# ---------------------------------------------------------------- recursion


def test_vars_in_reverse_order_work_however_many():
    for count in (400, 5000):
        text = HEAD + "vars:\n" + "".join(f"  v{k}: v{k + 1} + 1\n" for k in range(count - 1))
        text += f"  v{count - 1}: 1\nlayers:\n  - conv: {{out: v0, kernel: 1}}\n"
        with within():
            model = analyze(text)
        assert model.body.out_shape[0] == count
        assert model.vars["v0"] == count


def test_a_long_cycle_of_vars_is_one_error_with_a_short_message():
    text = HEAD + "vars:\n" + "".join(f"  v{k}: v{(k + 1) % 3000} + 1\n" for k in range(3000))
    text += "layers:\n  - conv: {out: v0, kernel: 1}\n"
    diagnostics = refused(text)
    cycle = one(diagnostics, "bad-var")
    assert "defined in terms of itself" in cycle.message and "more)" in cycle.message


@pytest.mark.parametrize(
    "text",
    [
        "+".join(["1"] * 3000),
        "-" * 3000 + "1",
        "-" * 1999 + "1",
        "(" * 150 + "1" + ")" * 150,
        "min(" * 150 + "1" + ")" * 150,
        "x" + "[0]" * 500,
    ],
    ids=["3000-terms", "3000-minus", "1999-minus", "150-parens", "150-calls", "500-indices"],
)
def test_long_and_deep_expressions_are_refused_without_recursing(text):
    with within(5):
        try:
            value = evaluate(text, {"x": [0]})
        except ExpressionError as exc:
            assert exc.code == LIMIT or "parenthes" in str(exc) or "nest" in str(exc), str(exc)
            assert len(str(exc)) < 600
        else:
            assert value == text  # not an expression Python can parse: plain text, which validation judges


def test_the_expression_limits_can_be_raised():
    text = "+".join(["1"] * 600)  # 1,199 operators and operands
    with pytest.raises(ExpressionError, match="expression_size"):
        evaluate(text, {})
    with applied(Limits(expression_size=2_000)):
        assert evaluate(text, {}) == 600


@pytest.mark.parametrize(
    "body", ["{nxt}", "{{residual: {{body: [{nxt}]}}}}", "{{repeat: {{times: 1, layers: [{nxt}]}}}}"]
)
def test_layers_nested_99_deep_pass_every_stage_and_101_deep_are_refused(body):
    from archspec.reports import table as report

    with within():
        costs = measure(analyze(block_chain(99, body)))
        assert report.table(costs, "deep") and report.as_json(costs, "deep")
    found = one(refused(block_chain(101, body)))
    assert "layers nest more than 100 deep" in found.message
    assert found.notes[-1][1] == "in block c0, used here"  # the first note and the last kept, the rest counted
    assert any("more notes like these" in text for _, text in found.notes)


def test_an_extends_chain_of_1000_files_is_one_error_with_its_notes_capped(tmp_path):
    for k in range(1000):
        text = f"extends: c{k + 1}.yaml\n" if k < 999 else HEAD + "layers: [relu]\n"
        (tmp_path / f"c{k}.yaml").write_text(text)
    diagnostics = refused(tmp_path / "c0.yaml")
    assert len(diagnostics) == 1 and len(diagnostics[0].notes) <= 10


def test_data_given_to_analyze_that_holds_itself_or_nests_deeply_is_refused():
    selfish = _spec("relu")
    selfish["layers"].append({"group": {"layers": selfish["layers"]}})
    assert "holds itself" in one(refused(selfish), "bad-value").message
    described = _spec("relu")
    described["description"] = described
    assert "holds itself" in one(refused(described), "bad-value").message
    deep = "relu"
    for _ in range(5000):
        deep = {"group": {"layers": [deep]}}
    assert "nests more than 100 deep" in one(refused(_spec(deep))).message
    listed = [1]
    for _ in range(5000):
        listed = [listed]
    assert "nests more than 100 deep" in one(refused(_spec("relu", vars={"v": listed}))).message
    shared = ["relu"]  # shared, not cyclic: fine, counted as often as it is reached
    for _ in range(4):
        shared = [{"group": {"layers": shared}}] * 3
    assert analyze(_spec(*shared)).body.out_shape == (3, 8, 8)


def test_a_schema_spec_nested_past_the_limit_is_refused_by_resolution():
    from archspec.frontend import validate as schema

    data = {"kind": "relu"}
    for _ in range(30):
        data = {"kind": "group", "layers": [data]}
    spec = schema.validator().validate_python(_spec(data))
    found = one(refused(spec, Limits(depth=10)))
    assert "nest more than 10 deep" in found.message


# ---------------------------------------------------------------- output amplification


def test_an_unknown_var_lists_ten_known_ones_and_a_count():
    diagnostics = refused(FILES["unknown_vars"][0])
    assert len(diagnostics) == 300
    message = diagnostics[0].message
    assert message.count("var_") == 10 and "and 4,990 more" in message
    assert sum(len(d.format()) for d in diagnostics) < 100_000  # was 16 MB


def test_long_names_are_shortened_in_messages():
    name = "n" * 100_000
    diagnostics = refused(_spec({"conv": {"name": name, "out": 4, "kernel": 1}}, {"relu": {"from": name + "x"}}))
    for diagnostic in diagnostics:
        assert len(diagnostic.message) < 400
    long_kind = refused(_spec({"k" * 50_000: None}))
    assert len(long_kind[0].message) < 400


def test_did_you_mean_is_bounded_on_long_similar_names_and_many_candidates():
    with within(5):
        assert did_you_mean("a" * 5000 + "x", ["a" * 5000 + str(k) for k in range(50)]) == ""
        names = [f"name_{k:06d}" for k in range(100_000)]
        assert did_you_mean("name_00001x", names).startswith('; did you mean "name_000')
        assert did_you_mean("kernal", ["kernel", "stride"]) == '; did you mean "kernel"?'


def test_notes_are_capped_with_a_count():
    text = block_chain(1000)
    found = one(refused(text))
    assert len(found.notes) == 10
    assert "90 more notes like these" in found.notes[8][1]


def test_check_of_a_good_spec_is_not_slowed():
    """The quick path: a zoo spec is measured in a few steps (one memo per distinct block use)."""
    with within(10):
        for _ in range(3):
            analyze(ROOT / "specs" / "densenet121.yaml")


def test_an_unquoted_literal_past_pythons_4300_digits_is_a_located_error(tmp_path):
    path = tmp_path / "literal.yaml"
    path.write_text(HEAD + "layers:\n  - conv: {out: " + "1" * 5000 + ", kernel: 1}\n")
    found = refused(path)
    assert found[0].loc.line == 5
