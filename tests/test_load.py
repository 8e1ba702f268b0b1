"""The loader against an independent reading: the same data, positions and errors for any YAML.

archspec.load composes a document with PyYAML's safe loader (libyaml's) and converts its nodes to
plain data, keeping each node's mark and refusing what a spec must not hold (tags, merge keys,
aliases of themselves), within the limits. The reference below reads the nodes its own way, with
PyYAML's construct_object for scalars; both must agree on every document, under any limits,
including where a limit cuts the document off.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from archspec.frontend import load
from archspec.core.errors import LIMIT, YAML_DUPLICATE_KEY, YAML_SYNTAX, YAML_TAG, Diagnostic, SpecError
from archspec.core.limits import Limits, applied

SPECS = Path(__file__).resolve().parent.parent / "specs"
PLAIN = {f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null")}


class Reference:
    """Every node through convert(): positions as (line, column), errors as the loader words them."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.values: dict = {}
        self.keys: dict = {}
        self.errors: list = []
        self.active: set = set()
        self.count = 0

    def convert(self, node, path):
        self.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        self.count += 1
        if len(self.active) > self.limits.depth:
            raise Stop(f"nested more than {self.limits.depth:,} deep", path)
        if self.count > self.limits.yaml_nodes:
            raise Stop(f"more than {self.limits.yaml_nodes:,} nodes", path)
        if id(node) in self.active:
            return self.error(node, "a YAML alias refers to the node that contains it", YAML_SYNTAX)
        if isinstance(node, yaml.ScalarNode) and node.tag in PLAIN:
            if node.tag.endswith(":int") and len(node.value) > self.limits.digits + 3:
                return self.error(node, "the number", LIMIT)
            return yaml.SafeLoader("").construct_object(node)
        if isinstance(node, yaml.SequenceNode) and node.tag.endswith(":seq"):
            self.active.add(id(node))
            items = [self.convert(item, path + (i,)) for i, item in enumerate(node.value)]
            self.active.discard(id(node))
            return items
        if isinstance(node, yaml.MappingNode) and node.tag.endswith(":map"):
            self.active.add(id(node))
            result = {}
            for key_node, value_node in node.value:
                if key_node.tag.endswith(":merge"):
                    self.error(key_node, "YAML merge keys", YAML_TAG)
                elif not (isinstance(key_node, yaml.ScalarNode) and key_node.tag.endswith(":str")):
                    self.error(key_node, "mapping keys must be plain strings", YAML_TAG)
                elif key_node.value in result:
                    self.error(key_node, f'duplicate key "{key_node.value}"', YAML_DUPLICATE_KEY)
                else:
                    self.keys[path + (key_node.value,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                    result[key_node.value] = self.convert(value_node, path + (key_node.value,))
            self.active.discard(id(node))
            return result
        return self.error(node, "timestamp" if node.tag.endswith(":timestamp") else "the YAML tag", YAML_TAG)

    def error(self, node, message, code):
        self.errors.append((message, code, node.start_mark.line + 1, node.start_mark.column + 1))


class Stop(Exception):
    def __init__(self, message, path):
        super().__init__(message)
        self.message, self.path = message, path


def reference(text: str, limits: Limits):
    """(data, value positions, key positions) or ("errors", [...]), as the plain converter reads `text`."""
    ref = Reference(limits)
    root = yaml.compose(text, Loader=yaml.CSafeLoader)
    try:
        if "&" in text and "*" in text:  # aliases counted as the loader counts them, first
            with applied(limits):
                load._check_expansion(root, "spec.yaml")
        data = ref.convert(root, ())
    except SpecError as exc:
        return "limit", _limit(exc.diagnostics[0])
    except Stop as stop:
        return "limit", stop.message
    if ref.errors:
        return "errors", ref.errors
    return data, ref.values, ref.keys


def loaded(text: str, limits: Limits):
    """The same, as archspec.load reads it."""
    try:
        with applied(limits):
            doc = load.load_text(text, "spec.yaml")
    except SpecError as exc:
        first = exc.diagnostics[0]
        if first.code == LIMIT and "the document is" in first.message:
            return "limit", _limit(first)
        return "errors", [_shown(d) for d in exc.diagnostics]
    position = lambda mark: (mark.line + 1, mark.column + 1)
    values, keys = doc.values, doc.keys
    return doc.data, {path: position(mark) for path, mark in values.items()}, {k: position(m) for k, m in keys.items()}


def _limit(diagnostic: Diagnostic) -> str:
    """The limit a document went past, in the reference's words."""
    return diagnostic.message.split("the document is ")[1].split(" (")[0].replace(" once aliases are expanded", "")


def _shown(diagnostic: Diagnostic):
    """An error as the reference words it: the loader's message cut to the reference's words."""
    message = diagnostic.message
    for short in ("a YAML alias refers to the node that contains it", "YAML merge keys", "the number", "timestamp"):
        if message.startswith(short) or short in message:
            message = short
            break
    else:
        if message.startswith("the YAML tag"):
            message = "the YAML tag"
        elif message.startswith("duplicate key"):
            message = message.split(" (first")[0]
    return message, diagnostic.code, diagnostic.loc.line, diagnostic.loc.col


scalars = st.one_of(
    st.integers(-(10**12), 10**12),
    st.sampled_from(["relu", "conv", "1e3", "0x1F", "yes", "~", ".inf", "2026-11-29", "3.5", "-7", "007", "a b"]),
    st.integers(10**9, 10**20).map(str).map(lambda digits: int(digits)),
)
keys = st.sampled_from(["kind", "out", "kernel", "layers", "a", "b", "c", "name"])
data = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=25,
)
MUTATIONS = [
    lambda text: text,
    lambda text: text.replace("relu", "!!python/name:os.system relu", 1),
    lambda text: text.replace("conv", "&c conv", 1).replace("relu", "*c", 1) if "conv" in text else text,
    lambda text: "<<: {a: 1}\n" + text if text.startswith(("a:", "b:", "c:", "kind:", "name:", "out:")) else text,
    lambda text: text + "a: 1\na: 2\n" if text.startswith(("a:", "b:", "c:", "kind:", "name:", "out:")) else text,
    lambda text: "a: &x\n  b: *x\n",
    lambda text: text.replace("'2026-11-29'", "2026-11-29"),
    lambda text: text.replace("1e3", "1" * 30, 1),
]


@settings(max_examples=300, deadline=None)
@given(
    data,
    st.booleans(),
    st.sampled_from(MUTATIONS),
    st.integers(1, 8),
    st.integers(1, 60),
    st.integers(1, 12),
)
def test_the_converter_reads_as_the_plain_one(value, flow, mutate, depth, nodes, digits):
    text = mutate(yaml.safe_dump(value, default_flow_style=flow, sort_keys=False))
    limits = Limits(depth=depth, yaml_nodes=nodes, digits=digits)
    try:
        expected = reference(text, limits)
    except yaml.YAMLError:
        return  # no YAML: the loader's syntax errors are tested apart
    assert loaded(text, limits) == expected


def test_a_limit_reached_by_a_collections_last_scalar_is_reported():
    text = "a: [1, 2, 3]\nb: {c: 4, d: 5}\n"  # 1 + (1 + 3) + (1 + 2) nodes
    assert loaded(text, Limits(yaml_nodes=8))[0] == {"a": [1, 2, 3], "b": {"c": 4, "d": 5}}
    for limit in range(1, 8):
        assert loaded(text, Limits(yaml_nodes=limit)) == ("limit", f"more than {limit:,} nodes")


@pytest.mark.parametrize("spec", sorted(SPECS.glob("*.yaml")), ids=lambda path: path.stem)
def test_every_example_spec_loads_as_pyyaml_reads_it(spec):
    text = spec.read_text(encoding="utf-8")
    assert load.load_text(text, "s.yaml").data == yaml.safe_load(text)


def test_values_and_keys_are_located_at_their_first_character():
    text = "layers:\n  - conv: {out: 8, kernel: [3, 5]}\n  - relu   # c\n  - conv: {out: 8, kernel: [3, 5]}\n"
    doc = load.load_text(text, "s.yaml")
    assert doc.locate(("layers", 2)) == ("s.yaml", 4, 5)
    assert doc.locate(("layers", 2, "conv", "kernel", 1)) == ("s.yaml", 4, 32)
    assert doc.locate(("layers", 2, "conv", "kernel"), key=True) == ("s.yaml", 4, 20)
    assert doc.locate(("layers", 2, "conv", "missing")) == ("s.yaml", 4, 11)


@pytest.mark.parametrize("flow", [True, False])
def test_nesting_past_pythons_stack_under_a_raised_limit_is_read_or_refused_not_a_crash(flow):
    deep = 4_000  # under libyaml's 5,000 levels, past Python's default 1,000 frames
    if flow:
        text = "a: " + "[" * deep + "]" * deep + "\n"
    else:
        text = "".join(" " * i + "b:\n" for i in range(deep)) + " " * deep + "c: 1\n"
    with applied(Limits(depth=10_000)):
        try:
            doc = load.load_text(text, "deep.yaml")
        except SpecError as exc:
            assert exc.diagnostics[0].code == LIMIT
        else:
            assert doc.data
