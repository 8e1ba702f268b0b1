"""The loader's converter against a plain one: the same data, positions and errors for any YAML.

archspec.load reads a collection's plain scalars in the collection's own loop, not by a call each
(a 100,000-layer spec has 300,000 of them). The reference below reads every node by one recursive
function, as the loader did before. Both must agree on every document, under any limits, including
where a limit cuts the document off.
"""

from __future__ import annotations

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from archspec import load
from archspec.errors import LIMIT, YAML_DUPLICATE_KEY, YAML_SYNTAX, YAML_TAG, Diagnostic, SpecError
from archspec.limits import Limits, applied

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
    values = {path: position(mark) for path, mark in doc.values.items()}
    return doc.data, values, {path: position(mark) for path, mark in doc.keys.items()}


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
