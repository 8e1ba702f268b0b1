"""The editor schema (archspec/editor_schema.py, committed as archspec/spec.schema.json).

It must accept every spec archspec accepts (a red squiggle on a valid spec is a bug) and reject the
usual mistakes. The tests check it against the specs in specs/, the specs in the docs, the layer-kind
cases, the error corpus in tests/errors (shape errors are beyond a schema: those specs must pass;
unknown kinds and fields, bad names and forms must not), hand-written valid and wrong forms (each
also run through archspec's own validation, so the lists cannot drift from what archspec does), and
random layers judged by archspec and by the schema (hypothesis).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import examples
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from archspec import registry
from archspec.frontend import validate as schema
from archspec.registry import fields
from archspec.reports.editor_schema import (
    EXPRESSION_PATTERN,
    LITERAL_PATTERN,
    PLAIN_EXPRESSION_PATTERN,
    json_schema,
    render,
    unknown_field_types,
)
from archspec.core.errors import SpecError, UsageError
from archspec.frontend.expand import expand
from archspec.frontend.expressions import ExpressionError, evaluate
from archspec.frontend.load import Document, load_file, load_text

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "archspec" / "spec.schema.json"
REGENERATE = "archspec schema -o archspec/spec.schema.json"
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


@functools.cache
def built() -> dict:
    return json_schema()


@functools.cache
def validator() -> Draft202012Validator:
    return Draft202012Validator(built())


def problems(data) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator().iter_errors(data)]


def archspec_errors(data, path: str = "<test>.yaml") -> list[str]:
    """What archspec's loader and validation (everything before shapes) say of spec data."""
    try:
        expanded = expand(Document(path, data))
    except UsageError as exc:
        return [str(exc)]
    _, errors, _ = schema.validate_partially(expanded)
    return [f"{d.message} [{d.code}]" for d in errors]


def yaml(text: str):
    return load_text(textwrap.dedent(text).strip() + "\n").data


# ---------------------------------------------------------------- the schema itself


def test_the_schema_is_a_valid_draft_2020_12_schema():
    Draft202012Validator.check_schema(json_schema())
    assert json_schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_render_is_deterministic_indented_json():
    text = render()
    assert text == render() and text.endswith("}\n") and text.startswith('{\n  "')
    assert json.loads(text) == json_schema()


def test_the_committed_schema_is_current():
    assert SCHEMA_FILE.is_file(), f"archspec/spec.schema.json is missing; write it with `{REGENERATE}`"
    assert SCHEMA_FILE.read_text(encoding="utf-8") == render(), (
        f"archspec/spec.schema.json is stale (a kind or field changed); regenerate it with `{REGENERATE}`"
    )


def test_importing_it_imports_no_torch():
    code = "import sys, archspec.editor_schema; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def _defs() -> dict:
    return built()["$defs"]


def _kind_def(name: str, mode: str) -> dict:
    """The def of a kind's mapping form in a mode (kinds that hold no layers share one with and without blocks)."""
    defs = _defs()
    return defs.get(f"kind.{name}.{mode}") or defs[f"kind.{name}.vars"]


@pytest.mark.parametrize("mode", ["plain", "vars", "blocks"])
def test_every_registered_kind_and_field_is_in_the_schema(mode):
    layer = _defs()[f"layer.{mode}"]
    by_name, mapping = layer["anyOf"]
    bare = by_name["enum"] if "enum" in by_name else by_name["anyOf"][0]["enum"]
    for name, kind in registry.KINDS.items():
        assert name in mapping["properties"], f"kind {name} is missing from the editor schema"
        required = [f.written for f in fields.declared_fields(kind.fields) if f.required and f.name != "kind"]
        assert (name in bare) == (not required), name
        declared = _kind_def(name, mode)
        assert set(schema.fields_of(name)) <= set(declared["properties"]), name
        assert set(declared.get("required", [])) == set(required), name
        assert kind.doc in _defs()[mapping["properties"][name]["$ref"].split("/")[-1]]["description"]
    assert _defs()["activation"]["enum"] == sorted(registry.ACTIVATIONS)
    assert _defs()["merge"]["enum"] == sorted(registry.MERGES)


def test_every_field_type_has_a_json_schema():
    """A field type no entry of editor_schema._types describes would accept anything: add one."""
    assert unknown_field_types() == []


def test_a_plugin_kind_is_in_the_schema():
    from archspec.cli import load_plugin

    load_plugin(str(ROOT / "examples" / "scaled_tanh_plugin.py"))
    try:
        found = Draft202012Validator(json_schema())
        good = {"archspec": 1, "name": "t", "input": [3, 4], "layers": ["scaled_tanh", {"scaled_tanh": 2.5}]}
        assert not list(found.iter_errors(good))
        assert list(found.iter_errors({**good, "layers": [{"scaled_tanh": {"scale": "big"}}]}))
        assert list(found.iter_errors({**good, "layers": [{"scaled_tanh": {"scael": 2.0}}]}))
    finally:
        registry.unregister("scaled_tanh")
    assert list(validator().iter_errors(good)), "without the plugin, scaled_tanh is an unknown kind"


# ---------------------------------------------------------------- specs that exist


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_spec_validates_and_names_the_schema(path):
    first_line = path.read_text(encoding="utf-8").splitlines()[0]
    match = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first_line)
    assert match, f"{path.name}: the first line should be the yaml-language-server modeline"
    assert (path.parent / match.group(1)).resolve() == SCHEMA_FILE.resolve()
    assert problems(load_file(path).data) == []


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_the_example_specs_validate(path):
    assert problems(load_file(path).data) == []


def _doc_specs():
    """The complete specs in README.md and docs/*.md (```yaml blocks with `archspec:` or `extends:`)."""
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        for number, block in enumerate(re.findall(r"```yaml\n(.*?)```", text, re.S)):
            if re.search(r"^(archspec|extends):", block, re.M):
                yield pytest.param(block, id=f"{doc.name}-{number}")


@pytest.mark.parametrize("text", list(_doc_specs()))
def test_the_specs_in_the_docs_validate(text):
    assert problems(load_text(text).data) == []


def _layer_kind_cases():
    try:
        from test_layer_kinds import CASES
    except ImportError:  # tests/ is not on sys.path: load the module by path
        path = Path(__file__).resolve().parent / "test_layer_kinds.py"
        spec = importlib.util.spec_from_file_location("_archspec_test_layer_kinds", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        CASES = module.CASES
    return CASES


@pytest.mark.parametrize("source", _layer_kind_cases())
def test_every_layer_kind_case_validates(source):
    data = load_text(source).data if isinstance(source, str) else source
    assert problems(data) == []


# Codes of errors a schema cannot see (shapes, references, other files): specs with only these pass.
BEYOND_A_SCHEMA = {
    "bad-arg", "output-size", "branch-mismatch", "channel-mismatch", "concat-mismatch", "duplicate-name",
    "needs-flatten", "rank", "bad-reference", "bad-extends", "bad-override",
}  # fmt: skip
# Codes of errors it must see: a spec with any of these fails.
SCHEMA_ERRORS = {
    "unknown-kind",
    "unknown-field",
    "missing-field",
    "bad-name",
    "bad-input",
    "layer-form",
    "format-version",
}


def _error_specs():
    for path in sorted((ROOT / "tests" / "errors").glob("*.yaml")):
        err = path.with_suffix(".err")
        codes = set(re.findall(r"\[([a-z-]+)\]", err.read_text(encoding="utf-8"))) if err.is_file() else set()
        if codes and (codes <= BEYOND_A_SCHEMA or codes & SCHEMA_ERRORS):
            yield pytest.param(path, codes, id=path.stem)


@pytest.mark.parametrize("path, codes", list(_error_specs()))
def test_the_error_corpus_is_judged_like_archspec(path, codes):
    try:
        data = load_file(path).data
    except SpecError:
        pytest.skip("not loadable YAML")
    if codes <= BEYOND_A_SCHEMA:
        assert problems(data) == [], f"only archspec check can see {sorted(codes)}"
    else:
        assert problems(data), f"the schema should see {sorted(codes & SCHEMA_ERRORS)}"


# ---------------------------------------------------------------- forms, valid and wrong

HEAD = "archspec: 1\nname: t\ninput: [3, 16, 16]\n"

VALID = {
    "bare, null, primary and mapping forms": """
        layers:
          - relu
          - batchnorm:
          - conv: {out: 6, kernel: [3, 3], padding: same, bias: no}
          - maxpool: 2
          - leaky_relu: -0.2
          - conv: {name: c2, out: 4, kernel: 1, stride: [1, 1], dilation: 1, groups: 2}
          - adaptive_avgpool: [2, 2]
          - flatten
          - linear: {out: 10, bias: false}
        """,
    "expressions without vars: i in a repeat, functions, arithmetic": """
        layers:
          - conv: {out: "4 * (i + 1)", kernel: 3, padding: "3 // 2", repeat: "1 + 1"}
          - conv: {out: "make_divisible(20, 8)", kernel: "max(1, min(3, 5))"}
          - dropout: "ceil(0.25 * 2) / 4"
          - flatten
        """,
    "vars in every numeric place, a list var, input": """
        vars: {c: 3, size: 16, ks: [3, 3], width: 8, p: 0.1}
        layers:
          - conv: {out: width, kernel: ks, padding: "ks[0] // 2", stride: "ks[1] - 2"}
          - conv: {out: "width * 2", kernel: ["ks[0]", 1]}
          - dropout: p
          - batchnorm: {eps: "p / 1000", momentum: p}
        """,
    "groups, residuals, shortcuts, graphs, merges": """
        layers:
          - group: [conv: {out: 4, kernel: 3, padding: 1}, relu]
          - group:
              name: trunk
              layers:
                - conv: {name: a, out: 4, kernel: 1}
                - conv: {name: b, out: 4, kernel: 1}
          - identity: {name: sum, from: [trunk.a, trunk.b], merge: add}
          - residual: {body: [conv: {out: 4, kernel: 3, padding: 1}], shortcut: identity, activation: null}
          - residual:
              shortcut_name: proj
              activation: gelu
              body: [conv: {out: 8, kernel: 3, stride: 2, padding: 1}]
              shortcut: [conv: {out: 8, kernel: 1, stride: 2}, batchnorm]
          - identity: {from: sum}
        """,
    "built-in blocks": """
        layers:
          - basic_block: 4
          - bottleneck: {width: 2, stride: 2, groups: 2}
          - dense_block: {num_layers: 2, growth: 2, bn_size: 2, dropout: 0.1}
          - transition: {compression: 0.5}
          - upsample: {scale: 2, mode: bilinear, align_corners: true}
          - normalize: {mean: [0.5, 0.4, 0.3, 0.2], std: [1, 1, 1, 1]}
        """,
    "repeat with first, and flat repeats with and without an index": """
        layers:
          - conv: {out: 4, kernel: 3, padding: 1, repeat: 2, first: {stride: 2, name: down}}
          - repeat:
              times: 2
              index: stage
              layers:
                - repeat: {times: "stage + 1", layers: [conv: {out: "4 * (stage + 1)", kernel: 1}]}
                - relu
          - repeat: {times: 2, layers: [conv: {out: "i + 4", kernel: 1}]}
        """,
    "user blocks in every form": """
        vars: {base: 8}
        blocks:
          double_conv:
            description: two convs
            params: {out: int, stride: {type: int, default: 1}, bias: false, act: 1.5}
            layers:
              - conv: {out: out, kernel: 3, padding: 1, stride: stride, bias: bias}
              - conv: {out: out, kernel: 3, padding: 1}
          tail:
            params: {k: 1}
            layers: [conv: {out: 2, kernel: k}]
        layers:
          - double_conv: 4
          - double_conv: {name: enc, out: base, stride: 2}
          - tail
          - tail:
          - group: [double_conv: {out: 2, repeat: 2}]
          - double_conv: {out: 2, from: enc}
        """,
}
VALID_WHOLE = {
    "extends with an override": """
        extends: base.yaml
        name: child
        vars: {width: 4}
        override:
          features.0: {out: width}
          head: {out: 3}
        """,
    "extends, using a block of the base": """
        extends: base.yaml
        layers:
          - base_block: {out: 4}
          - flatten
        """,
    "extends only": "extends: base.yaml\n",
}


def _valid_cases():
    for name, text in VALID.items():
        yield pytest.param(HEAD + textwrap.dedent(text), id=name)
    for name, text in VALID_WHOLE.items():
        yield pytest.param(textwrap.dedent(text), id=name)


BASE = """\
archspec: 1
name: base
input: [3, 8, 8]
blocks:
  base_block:
    params: {out: int}
    layers: [conv: {out: out, kernel: 1}]
layers:
  - group: {name: features, layers: [conv: {out: 4, kernel: 3}]}
  - flatten
  - linear: {name: head, out: 2}
"""


@pytest.mark.parametrize("text", list(_valid_cases()))
def test_valid_forms_validate(text, tmp_path):
    (tmp_path / "base.yaml").write_text(BASE)
    data = load_text(text).data
    assert archspec_errors(data, str(tmp_path / "spec.yaml")) == [], "the case itself should be valid"
    assert problems(data) == []


MISTAKES = {
    "unknown kind": "layers: [convv: {out: 6, kernel: 3}]",
    "unknown kind, bare": "layers: [relu, flaten]",
    "unknown kind in a group": "layers: [group: [conv: {out: 6, kernel: 3}, rleu]]",
    "unknown field": "layers: [conv: {out: 6, kernel: 3, strid: 2}]",
    "unknown field in a residual body": "layers: [residual: {body: [conv: {out: 6, kernel: 3, bais: false}]}]",
    "missing required field": "layers: [conv: {out: 6}]",
    "bare kind with required fields": "layers: [conv]",
    "a word where a number is required": "layers: [conv: {out: six, kernel: 3}]",
    "a string that is no expression": "vars: {six: 6}\nlayers: [conv: {out: 6 apples, kernel: 3}]",
    "a quoted number": 'layers: [conv: {out: "6", kernel: 3}]',
    "a float where an integer is required": "layers: [conv: {out: 6.5, kernel: 3}]",
    "a boolean where a number is required": "layers: [conv: {out: yes, kernel: 3}]",
    "a number out of range": "layers: [dropout: 1.5]",
    "too many sizes": "layers: [conv: {out: 6, kernel: [3, 3, 3, 3]}]",
    "a string where a list of layers is required": "layers: [group: {layers: relu}]",
    "a string where the layers are required": "layers: relu",
    "an unknown enum value": "layers: [upsample: {scale: 2, mode: bilinaer}]",
    "an unknown padding word": "layers: [conv: {out: 6, kernel: 3, padding: full}]",
    "an unknown activation": "layers: [residual: {body: [relu], activation: rleu}]",
    "an unknown merge": "layers: [conv: {name: a, out: 3, kernel: 1}, identity: {from: [a, a], merge: sum}]",
    "a misspelt short form: fields beside the kind": "layers:\n  - conv: 6\n    kernel: 3",
    "a kind that takes no single value": "layers: [residual: [relu]]",
    "a bad layer name": "layers: [relu: {name: 2nd}]",
    "a reserved layer name": "layers: [relu: {name: forward}]",
    "a repeat below zero": "layers: [relu: {repeat: -1}]",
    "a flat repeat without times": "layers: [repeat: {layers: [relu]}]",
    "a flat repeat with an unknown field": "layers: [repeat: {times: 2, layers: [relu], idx: s}]",
    "first with an unknown field": "layers: [conv: {out: 6, kernel: 3, repeat: 2, first: {strid: 2}}]",
    "a block with an unknown field": "blocks: {b: {layers: [relu], param: {x: 1}}}\nlayers: [b]",
    "a block named like a kind": "blocks: {conv: {layers: [relu]}}\nlayers: [relu]",
    "a block parameter without a type": "blocks: {b: {params: {x: }, layers: [relu]}}\nlayers: [b]",
}
MISTAKES_WHOLE = {
    "missing input": "archspec: 1\nname: t\nlayers: [relu]\n",
    "wrong version": "archspec: 2\nname: t\ninput: [3, 4]\nlayers: [relu]\n",
    "a string input": "archspec: 1\nname: t\ninput: 3x32x32\nlayers: [relu]\n",
    "an unknown top-level key": "archspec: 1\nname: t\ninput: [3, 4]\nlayer: [relu]\n",
    "a name with a space": "archspec: 1\nname: my net\ninput: [3, 4]\nlayers: [relu]\n",
}


def _mistakes():
    for name, text in MISTAKES.items():
        yield pytest.param(HEAD + text + "\n", id=name)
    for name, text in MISTAKES_WHOLE.items():
        yield pytest.param(text, id=name)


@pytest.mark.parametrize("text", list(_mistakes()))
def test_typical_mistakes_are_rejected(text):
    data = load_text(text).data
    assert archspec_errors(data), "the case itself should be wrong"
    assert problems(data), "the schema accepts it"


# ---------------------------------------------------------------- expressions


@st.composite
def expression_texts(draw, depth=3):
    """Random arithmetic the evaluator takes: numbers, vars, functions, indexing."""
    if depth == 0 or draw(st.booleans()):
        return draw(
            st.sampled_from(
                ["3", "0.5", "1e-3", "12", ".5", "0x10", "1_000", "width", "i", "ks[0]", "ks[-1]", "(2)", "-4"]
            )
        )
    left, right = draw(expression_texts(depth - 1)), draw(expression_texts(depth - 1))
    form = draw(st.sampled_from(["{} + {}", "{}-{}", "{} * {}", "{} / {}", "{}//{}", "{} % {}", "({} + {})"]))
    function = draw(st.sampled_from(["min({}, {})", "max({},{})", "round({})", "ceil({})", "floor( {} )", "int({})"]))
    return draw(st.sampled_from([form, function])).format(left, right)


@settings(max_examples=examples(200), deadline=None)
@given(expression_texts())
def test_every_expression_the_evaluator_takes_matches_the_pattern(text):
    try:
        value = evaluate(text, {"width": 8, "i": 1, "ks": [3, 5]})
    except ExpressionError:
        return
    if value == text:  # not an expression: a quoted number, (2)
        assert re.search(LITERAL_PATTERN, text) or not re.search(EXPRESSION_PATTERN, text) or "(" in text
        return
    assert re.search(EXPRESSION_PATTERN, text) and not re.search(LITERAL_PATTERN, text), text
    if not re.search(r"width|ks", text):
        assert re.search(PLAIN_EXPRESSION_PATTERN, text), text


@pytest.mark.parametrize("text", ["6 apples", "3x32", "2i", "True", "5", " 5 ", "1e5", "a b", "", "x.y", "f(1)"])
def test_strings_that_are_no_expressions_do_not_match(text):
    matches = re.search(EXPRESSION_PATTERN, text) and not re.search(LITERAL_PATTERN, text)
    assert not matches or text == "f(1)"  # a call of an unknown function looks like one; archspec reports it


# ---------------------------------------------------------------- random layers, judged by both
# Layers of random kinds and forms, their fields drawn mostly from the values the specs and the
# layer-kind cases give a field of that name (so most layers are valid, near the schema's edges),
# the rest from a pool of plausible mistakes. Whatever archspec accepts, the schema must accept.

VALUES = [
    0, 1, 2, 3, -1, 0.5, 1.0, 2.5, -0.5, True, False, None, "same", "valid", "auto", "identity", "relu",
    "gelu", "add", "mul", "concat", "nearest", "bilinear", "tanh", "none", "w", "fc", "forward", "1 + 2",
    "w * 2", "i", "2 apples", "5", "min(2, 3)", [], [1], [1, 2], [2, 2, 2], [1, 2, 3, 4], [0], [0.5, 1.5],
    ["w", 2], ["a", "b"], "a", {"x": 1},
]  # fmt: skip
EXTRA_FIELDS = ["strid", "name", "from", "merge", "first", "layers", "body", "shortcut", "repeat"]


@functools.cache
def observed() -> dict[str, list]:
    """Field (or kind) name -> the scalar and list values the specs and the layer-kind cases give it."""
    found: dict[str, dict[str, object]] = {}

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                flat = isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value)
                if not isinstance(value, dict) and (flat or not isinstance(value, list)):
                    found.setdefault(key, {})[repr(value)] = value
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for source in _layer_kind_cases():
        source = source.values[0]
        walk(load_text(source).data if isinstance(source, str) else source)
    for path in SPECS:
        walk(load_file(path).data)
    return {key: [values[k] for k in sorted(values)] for key, values in sorted(found.items())}


def _value(draw, field: str):
    seen = observed().get(field)
    if seen and draw(st.integers(0, 9)) < 9:
        return draw(st.sampled_from(seen))
    return draw(st.sampled_from(VALUES))


def _required(kind: str) -> list[str]:
    declared = registry.KINDS[kind].fields if kind in registry.KINDS else None
    return [f.written for f in fields.declared_fields(declared) if f.required and f.name != "kind"]


@st.composite
def layer_entries(draw, depth: int = 2):
    kinds = sorted(registry.KINDS)
    kind = draw(st.sampled_from(kinds * 4 + ["convv", "blk", "repeat", "repeat", "repeat"]))
    children = st.lists(
        layer_entries(depth - 1) if depth > 0 else st.sampled_from(["relu", {"conv": {"out": 2, "kernel": 1}}]),
        min_size=1,
        max_size=3,
    )
    if kind == "repeat":
        body = {"times": draw(st.sampled_from([1, 2, "w // 4", -1, "x"])), "layers": draw(children)}
        if draw(st.booleans()):
            body["index"] = draw(st.sampled_from(["s", "i", "2s"]))
        return {"repeat": body}
    declared = registry.KINDS[kind].fields if kind in registry.KINDS else None
    forms = (
        ["mapping", "mapping"]
        + (["value"] if getattr(declared, "primary", None) else [])
        + ([] if _required(kind) else ["bare", "null"])
    )
    form = draw(st.sampled_from(forms if draw(st.integers(0, 9)) else ["bare", "null", "value", "mapping"]))
    if form == "bare":
        return kind
    if form == "null":
        return {kind: None}
    if form == "value":
        return {kind: draw(children) if kind == "group" and draw(st.booleans()) else _value(draw, kind)}
    known = (schema.fields_of(kind) if kind in registry.KINDS else ["out"]) or ["name", "from", "merge"]
    chosen = set(_required(kind)) | set(draw(st.lists(st.sampled_from(known), max_size=3)))
    if draw(st.integers(0, 5)) == 0:
        chosen.add(draw(st.sampled_from(EXTRA_FIELDS)))
    fields = {}
    for field in sorted(chosen):
        if field in schema.CONTAINER_FIELDS and draw(st.integers(0, 3)) > 0:
            fields[field] = draw(children)
        elif field == "first":  # not setting required fields: those would be missing from the other copies
            optional = [f for f in known if f not in _required(kind)] + ["x"]
            first = {f: _value(draw, f) for f in draw(st.lists(st.sampled_from(optional), max_size=2))}
            fields["first"] = draw(st.sampled_from([first, first, None, 1]))
        elif field == "repeat":
            fields["repeat"] = draw(st.sampled_from([1, 2, "w // 4", -1, "x", 1.5]))
        else:
            fields[field] = _value(draw, field)
    return {kind: fields}


@st.composite
def random_specs(draw):
    data = {"archspec": 1, "name": "t", "input": draw(st.sampled_from([[3, 8, 8], [3, 8, 8], [3, 8], [3, "w"], [4]]))}
    if draw(st.integers(0, 3)) > 0:
        data["vars"] = {"w": 8, "a": 1, "num_classes": 10, "growth": 4, "bn_size": 2, "depths": [1, 1, 1, 1]}
    if draw(st.booleans()):
        data["blocks"] = {"blk": {"params": {"out": 4}, "layers": [{"conv": {"out": "out", "kernel": 1}}]}}
    data["layers"] = draw(st.lists(layer_entries(), min_size=1, max_size=3))
    return data


def _copies_are_left_out(data) -> bool:
    """Whether a repeat may make no copies: archspec then never validates the layer (the schema does)."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key in ("repeat", "times") and not isinstance(value, (int, dict)):
                return True  # an expression, which may come to 0
            if _copies_are_left_out(value):
                return True
    elif isinstance(data, list):
        return any(_copies_are_left_out(item) for item in data)
    return False


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(random_specs())
def test_whatever_archspec_accepts_the_schema_accepts(data):
    assume(not _copies_are_left_out(data["layers"]))
    if archspec_errors(data) == []:
        assert problems(data) == [], data
