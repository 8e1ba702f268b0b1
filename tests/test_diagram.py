"""archspec.diagram: Mermaid and DOT text that parses, and shows every layer and every data flow.

Each output is read back by a small validator of exactly the grammar subset diagram.py writes, so
a stray quote or an unbalanced subgraph fails here; `dot -Tsvg` checks the DOT where graphviz is
installed. No torch.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from archspec import analyze
from archspec.analyses.dataflow import tensor_path
from archspec.reports.diagram import dot, dot_text, mermaid, mermaid_text
from archspec.core.ir import Block, Op, replace, walk
from archspec.core.shape_rules import fmt_shape

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
DEPTHS = (None, 1, 2, 3)


@functools.cache
def model_of(name: str):
    return analyze(ROOT / "specs" / f"{name}.yaml")


@dataclass
class Chart:
    """A diagram read back: boxes by id (their shape and label lines), edges, subgraph titles."""

    boxes: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    edges: list[tuple[str, str, str]] = field(default_factory=list)  # (source, label, target)
    clusters: dict[str, str] = field(default_factory=dict)

    def paths(self) -> list[str]:
        return [lines[0] for shape, lines in self.boxes.values() if shape not in MERGE_SHAPES]

    def box_named(self, first_line: str) -> str:
        (box,) = [id for id, (_, lines) in self.boxes.items() if lines[0] == first_line]
        return box

    def into(self, box: str) -> list[tuple[str, str]]:
        return [(source, label) for source, label, target in self.edges if target == box]


MERGE_SHAPES = {"((", "circle"}


# ---------------------------------------------------------------- reading Mermaid back

MM_TEXT = r"[^\"]*"
MM_SHAPES = {"[": "]", "[[": "]]", "([": "])", "((": "))"}
MM_BOX = re.compile(rf"(n\d+)(\(\[|\[\[|\(\(|\[)\"({MM_TEXT})\"(\]\)|\]\]|\)\)|\])")
MM_EDGE = re.compile(rf"(n\d+) -->\|\"({MM_TEXT})\"\| (n\d+)")
MM_SUBGRAPH = re.compile(rf"subgraph (s\d+)\[\"({MM_TEXT})\"\]")
MM_ENTITY = re.compile(r"#(\d+|quot|amp|lt|gt);")
MM_NAMED = {"quot": '"', "amp": "&", "lt": "<", "gt": ">"}


def mermaid_unescaped(text: str) -> str:
    """A label's text as Mermaid shows it; fails on a character that should have been a code."""
    bare = MM_ENTITY.sub("", text)
    assert not set(bare) & set('"#;<>|&`\\\n'), f"unescaped markup in label {text!r}"
    return MM_ENTITY.sub(lambda m: MM_NAMED.get(m[1]) or chr(int(m[1])), text)


def read_mermaid(text: str) -> Chart:
    chart, open_subgraphs = Chart(), []
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    for line in lines[1:]:
        body = line.strip()
        assert line == "  " * (len(open_subgraphs) + 1) + body or body == "end", f"bad indent: {line!r}"
        if m := MM_BOX.fullmatch(body):
            box, opening, label, closing = m.groups()
            assert MM_SHAPES[opening] == closing, line
            assert box not in chart.boxes and not chart.edges, f"{box} defined twice or after the edges"
            chart.boxes[box] = (opening, [mermaid_unescaped(part) for part in label.split("<br>")])
        elif m := MM_EDGE.fullmatch(body):
            source, label, target = m.groups()
            assert source in chart.boxes and target in chart.boxes, f"edge to an undefined node: {line!r}"
            assert not open_subgraphs, "edges are written after every subgraph"
            chart.edges.append((source, mermaid_unescaped(label), target))
        elif m := MM_SUBGRAPH.fullmatch(body):
            assert m[1] not in chart.clusters
            chart.clusters[m[1]] = mermaid_unescaped(m[2])
            open_subgraphs.append(m[1])
        elif body == "end":
            assert open_subgraphs, "an end without its subgraph"
            open_subgraphs.pop()
            assert line == "  " * (len(open_subgraphs) + 1) + "end"
        else:
            pytest.fail(f"not in the grammar diagram.py writes: {line!r}")
    assert not open_subgraphs, f"subgraphs left open: {open_subgraphs}"
    return chart


# ---------------------------------------------------------------- reading DOT back

DOT_STRING = r'"(?:[^"\\\n]|\\.)*"'
DOT_ATTR = rf"\w+=(?:\w+|{DOT_STRING})"
DOT_ATTRS = rf"\[{DOT_ATTR}(?:, {DOT_ATTR})*\]"
DOT_LINES = {
    "digraph": re.compile(rf"digraph ({DOT_STRING}) \{{"),
    "defaults": re.compile(rf"(graph|node|edge) {DOT_ATTRS};"),
    "cluster": re.compile(r"subgraph (cluster_s\d+) \{"),
    "title": re.compile(rf"label=({DOT_STRING});"),
    "close": re.compile(r"\}"),
    "box": re.compile(rf"(n\d+) ({DOT_ATTRS});"),
    "edge": re.compile(rf"(n\d+) -> (n\d+) \[label=({DOT_STRING})\];"),
}


def dot_unescaped(quoted: str) -> str:
    return re.sub(r"\\(.)", lambda m: m[1], quoted[1:-1])


def dot_label_lines(quoted: str) -> list[str]:
    """A box's label split at its `\\n` line breaks (not at an escaped backslash followed by n)."""
    lines = [""]
    for token in re.findall(r"\\.|[^\\]", quoted[1:-1]):
        if token == "\\n":
            lines.append("")
        else:
            lines[-1] += token[-1]
    return lines


def read_dot(text: str) -> Chart:
    chart, depth, closed = Chart(), 0, False
    cluster = None
    for line in text.splitlines():
        assert not closed, "text after the graph's closing brace"
        body = line.strip()
        kind, m = next(((k, p.fullmatch(body)) for k, p in DOT_LINES.items() if p.fullmatch(body)), (None, None))
        assert kind is not None, f"not in the grammar diagram.py writes: {line!r}"
        assert (kind == "digraph") == (depth == 0), f"statement outside the digraph: {line!r}"
        assert line == "  " * (depth - (kind == "close")) + body, f"bad indent: {line!r}"
        if kind in ("digraph", "cluster"):
            depth += 1
            cluster = m[1]
        elif kind == "close":
            depth -= 1
            closed = depth == 0
        elif kind == "title":
            chart.clusters[cluster] = dot_unescaped(m[1])
        elif kind == "box":
            attrs = dict(re.findall(rf"(\w+)=(\w+|{DOT_STRING})", m[2]))
            assert m[1] not in chart.boxes and not chart.edges
            chart.boxes[m[1]] = (attrs.get("shape", "box"), dot_label_lines(attrs["label"]))
        elif kind == "edge":
            assert m[1] in chart.boxes and m[2] in chart.boxes, f"edge to an undeclared node: {line!r}"
            chart.edges.append((m[1], dot_unescaped(m[3]), m[2]))
    assert closed, "unbalanced braces"
    return chart


def graphviz_accepts(text: str) -> None:
    run = subprocess.run(["dot", "-Tsvg"], input=text, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


def same_graph(one: Chart, other: Chart) -> None:
    """Both formats draw the same boxes and edges (ids included: both come from one drawing)."""
    assert {id: lines for id, (_, lines) in one.boxes.items()} == {id: lines for id, (_, lines) in other.boxes.items()}
    assert one.edges == other.edges
    assert {f"cluster_{id}": title for id, title in one.clusters.items()} == other.clusters


# ---------------------------------------------------------------- (1) every spec, every depth parses


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("spec", SPECS, ids=lambda path: path.stem)
def test_both_formats_parse_and_agree(spec, depth):
    model = model_of(spec.stem)
    chart = read_mermaid(mermaid(model, depth))
    same_graph(chart, read_dot(dot(model, depth)))
    assert [lines for _, lines in chart.boxes.values()].count(["input"]) == 1
    shapes = {node.path: node.out_shape for node in walk(model.body)}
    ends = [(name, shapes[tensor_path(model.body, ref)]) for name, ref in model.outputs]  # named outputs
    ends = ends or [("output", model.body.out_shape)]
    last = chart.edges[-len(ends) :]  # into a closed group, an edge label names the inner layer too
    assert [chart.boxes[edge[2]] for edge in last] == [("([", [name]) for name, _ in ends]
    assert all(edge[1].endswith(fmt_shape(shape)) for edge, (_, shape) in zip(last, ends))


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is not installed")
@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("spec", SPECS, ids=lambda path: path.stem)
def test_graphviz_draws_it(spec, depth):
    graphviz_accepts(dot(model_of(spec.stem), depth))


def test_depth_one_draws_the_top_level_layers_only():
    model = model_of("resnet18")
    chart = read_mermaid(mermaid(model, 1))
    assert not chart.clusters
    assert chart.paths() == ["input", *(child.path for child in model.body.children), "output"]
    assert chart.boxes[chart.box_named("layer1")] == ("[[", ["layer1", "stage", "147,968 params"])
    assert chart.boxes[chart.box_named("relu")] == ("[", ["relu", "relu"])  # no params: no params line


# ---------------------------------------------------------------- (2) graphs: every layer, every flow


def expected_flows(model) -> set[tuple[str, str, str | None]]:
    """(producer, consumer, merge) for every tensor one layer hands another, read off the IR of a
    model made of sequences only; 'input' and 'output' stand for the model's ends."""
    flows: set = set()

    def last(node) -> str:
        return node.path if isinstance(node, Op) else last(node.children[-1])

    def find(produced, reference):
        head, *rest = reference.split(".")
        node = produced[head]
        for part in rest:
            node = next(child for child in node.children if child.name == part)
        return node

    def sequence(block, feed):
        produced, entry = {}, feed

        def read(reference):  # `from: input`: the tensor(s) the sequence received (one, here)
            if reference == "input":
                assert entry[1] is None, "a from: input of a merged entry is drawn through its merge node"
                return entry[0]
            return (last(find(produced, reference)),)

        for child in block.children:
            if child.inputs:
                sources = tuple(source for reference in child.inputs for source in read(reference))
                feed = (sources, child.merge if len(sources) > 1 else None)
            if isinstance(child, Op):
                flows.update((source, child.path, feed[1]) for source in feed[0])
                feed = ((child.path,), None)
            else:
                assert child.flow == "sequential"
                feed = sequence(child, feed)
            produced[child.name] = child
        return feed

    sources, merge = sequence(model.body, (("input",), None))
    flows.update((source, "output", merge) for source in sources)
    return flows


def drawn_flows(chart: Chart) -> set[tuple[str, str, str | None]]:
    """The same, read off a diagram: an edge into a merge node stands for one into its consumer."""
    flows = set()
    for source, _, target in chart.edges:
        if chart.boxes[target][0] in MERGE_SHAPES:
            continue
        if chart.boxes[source][0] in MERGE_SHAPES:
            merge = chart.boxes[source][1][0]
            flows.update((chart.boxes[s][1][0], chart.boxes[target][1][0], merge) for s, _ in chart.into(source))
        else:
            flows.add((chart.boxes[source][1][0], chart.boxes[target][1][0], None))
    return flows


@pytest.mark.parametrize("spec", ["unet", "unet_small"])
@pytest.mark.parametrize("form", [mermaid, dot])
def test_graph_specs_show_every_layer_and_every_flow(spec, form):
    model = model_of(spec)
    chart = read_mermaid(form(model)) if form is mermaid else read_dot(form(model))
    ops = [node for node in walk(model.body) if isinstance(node, Op)]
    assert sorted(chart.paths()) == sorted(["input", "output", *(op.path for op in ops)])
    assert drawn_flows(chart) == expected_flows(model)
    assert len(set(chart.edges)) == len(chart.edges)
    shapes = {op.path: op.out_shape for op in ops} | {"input": model.input_shape}
    for source, label, _ in chart.edges:
        kind, lines = chart.boxes[source]
        if kind not in MERGE_SHAPES:
            assert label == fmt_shape(shapes[lines[0]]), (lines, label)
    merges = [box for box, (kind, _) in chart.boxes.items() if kind in MERGE_SHAPES]
    assert len(merges) == sum(len(node.inputs) > 1 for node in walk(model.body))
    for merge in merges:
        assert len(chart.into(merge)) == 2 and chart.boxes[merge][1] == ["concat"]


FROM_INPUT = """
archspec: 1
name: inception
input: [8, 12, 12]
blocks:
  inception:
    params: {width: int}
    layers:
      - conv: {name: b1, out: width, kernel: 1, from: input}
      - conv: {name: b2, out: width, kernel: 3, padding: 1, from: input}
      - maxpool: {name: pool, kernel: 3, stride: 1, padding: 1, from: input}
      - conv: {name: b3, out: width, kernel: 1}
      - identity: {name: cat, from: [b1, b2, b3]}
layers:
  - conv: {name: stem, out: 8, kernel: 3, padding: 1}
  - inception: {name: i1, width: 4}
  - group:
      name: g
      layers:
        - relu: {name: r}
        - group: {name: inner, layers: [{conv: {name: c, out: 12, kernel: 1}}, {identity: {from: [input, c]}}]}
        - identity: {name: sum, from: [input, inner.c], merge: add}
  - identity: {name: top, from: [input, stem, g]}
"""


@pytest.mark.parametrize("form", [mermaid, dot])
def test_from_input_draws_an_edge_from_the_sequences_entry(form):
    model = analyze(FROM_INPUT)
    chart = read_mermaid(form(model)) if form is mermaid else read_dot(form(model))
    assert drawn_flows(chart) == expected_flows(model)
    flows = expected_flows(model)
    assert {("stem", f"i1.{name}", None) for name in ("b1", "b2", "pool")} <= flows  # i1's input: stem's output
    assert {("g.r", "g.inner.c", None), ("g.r", "g.inner.1", "concat"), ("i1.cat", "g.sum", "add")} <= flows
    assert ("input", "top", "concat") in flows  # the model's own input
    closed = read_mermaid(mermaid(model, 1))  # g closed: the edge from input reaches the merge into top
    (join,) = [source for source, _ in closed.into(closed.box_named("top"))]
    assert (closed.box_named("input"), "(B, 8, 12, 12)") in closed.into(join)


def test_a_closed_group_hands_out_its_inner_outputs_by_name():
    model = model_of("unet_small")
    chart = read_mermaid(mermaid(model, 1))
    encoder = chart.box_named("encoder")
    out_of_encoder = sorted(label for source, label, _ in chart.edges if source == encoder)
    assert out_of_encoder == ["(B, 32, 8, 8)", "encoder.enc1 (B, 16, 32, 32)", "encoder.enc2 (B, 32, 16, 16)"]
    opened = read_mermaid(mermaid(model, 2))  # encoder opened: the skips leave enc1 and enc2 themselves
    assert not any(label.startswith("encoder.") for _, label, _ in opened.edges)
    enc2 = opened.box_named("encoder.enc2")
    pool2, skip = [target for source, _, target in opened.edges if source == enc2]
    assert pool2 == opened.box_named("encoder.pool2")
    assert opened.boxes[skip] == ("((", ["concat"]) and (enc2, "(B, 32, 16, 16)") in opened.into(skip)


def test_merges_from_from_are_labelled_with_their_kind():
    text = """
archspec: 1
name: se
input: [8, 6, 6]
layers:
  - conv: {name: features, out: 8, kernel: 3, padding: 1}
  - global_avgpool: {name: squeeze}
  - sigmoid: {name: gate}
  - identity: {name: excite, from: [features, gate], merge: mul}
  - identity: {name: both, from: [features, excite], merge: add}
  - identity: {name: one, from: features}
"""
    chart = read_mermaid(mermaid(analyze(text)))
    excite, both, one = (chart.box_named(name) for name in ("excite", "both", "one"))
    (mul,) = chart.into(excite)
    assert chart.boxes[mul[0]] == ("((", ["mul"]) and mul[1] == "(B, 8, 6, 6)"
    assert sorted(label for _, label in chart.into(mul[0])) == ["(B, 8, 1, 1)", "(B, 8, 6, 6)"]
    assert chart.boxes[chart.into(both)[0][0]][1] == ["add"]
    assert chart.into(one) == [(chart.box_named("features"), "(B, 8, 6, 6)")]  # one source: no merge node


def test_a_from_two_groups_deep_leaves_the_innermost_box_drawn():
    text = """
archspec: 1
name: deep
input: [8, 6, 6]
layers:
  - group:
      name: outer
      layers:
        - group: {name: inner, layers: [{conv: {name: a, out: 8, kernel: 3, padding: 1}}, relu]}
        - conv: {name: b, out: 8, kernel: 1}
  - identity: {name: sum, from: [outer.inner.a, outer], merge: add}
"""
    model = analyze(text)
    for depth, source in ((1, "outer"), (2, "outer.inner"), (3, "outer.inner.a"), (None, "outer.inner.a")):
        chart = read_mermaid(mermaid(model, depth))
        (join,) = [box for box, (kind, lines) in chart.boxes.items() if lines == ["add"]]
        note = "outer.inner.a " if source != "outer.inner.a" else ""
        assert (chart.box_named(source), f"{note}(B, 8, 6, 6)") in chart.into(join), depth


def test_residual_blocks_join_body_and_shortcut_in_an_add():
    model = model_of("resblk")
    chart = read_mermaid(mermaid(model))
    adds = [box for box, (kind, lines) in chart.boxes.items() if kind == "(("]
    assert [chart.boxes[box][1] for box in adds] == [["add"], ["add"], ["add", "then relu"]]
    assert {chart.boxes[s][1][0] for s, _ in chart.into(adds[0])} == {"blk1.bn2", "blk1.extra.1"}
    assert {chart.boxes[s][1][0] for s, _ in chart.into(adds[1])} == {"blk2.bn2", "blk2.extra.1"}  # auto: projected
    body, identity = sorted(chart.into(adds[2]), key=lambda edge: edge[1])
    assert chart.boxes[body[0]][1][0] == "blk3.bn2" and body[1] == "(B, 256, 5, 5)"
    assert identity == (adds[1], "identity (B, 256, 5, 5)")  # from where the block's input comes
    assert "blk1: residual" in chart.clusters.values() and "blk1.extra: shortcut" in chart.clusters.values()
    shallow = read_mermaid(mermaid(model, 2))  # the shortcuts are one level further in: closed
    assert shallow.boxes[shallow.box_named("blk1.extra")] == ("[[", ["blk1.extra", "shortcut", "8,576 params"])


def test_dense_blocks_show_a_running_concatenation():
    model = model_of("densenet")
    block = model.body.children[4]
    chart = read_mermaid(mermaid(model, 2))
    layers = [chart.box_named(child.path) for child in block.children]
    grown = []
    feed = chart.into(layers[0])[0][0]  # the block's input: the maxpool
    for layer, child in zip(layers, block.children):
        assert chart.into(layer) == [(feed, fmt_shape(child.in_shape))]
        (join,) = [t for s, _, t in chart.edges if s == layer]
        assert chart.boxes[join] == ("((", ["concat"])
        assert sorted(s for s, _ in chart.into(join)) == sorted([feed, layer])
        feed = join
        grown.append(next(label for s, label, _ in chart.edges if s == join))
    assert grown == ["(B, 96, 24, 24)", "(B, 128, 24, 24)", "(B, 160, 24, 24)", "(B, 192, 24, 24)"]
    closed = read_mermaid(mermaid(model, 1))  # at depth 1 a dense block is one node
    assert closed.boxes[closed.box_named("4")] == ("[[", ["4", "dense_block", f"{block.params:,} params"])


# ---------------------------------------------------------------- (3) collapsing


def test_resnet50_full_depth_draws_each_repeated_run_once_opened():
    model = model_of("resnet50")
    chart = read_mermaid(mermaid(model))
    runs = sorted(title for title in chart.clusters.values() if "(x" in title)
    assert runs == [
        "layer1.1 .. layer1.2 (x2): bottleneck",
        "layer2.1 .. layer2.3 (x3): bottleneck",
        "layer3.1 .. layer3.5 (x5): bottleneck",
        "layer4.1 .. layer4.2 (x2): bottleneck",
    ]
    paths = set(chart.paths())
    assert {"layer1.0.conv1", "layer1.0.downsample.0", "layer1.1.conv3", "layer3.1.bn2"} <= paths
    assert not any(path.startswith(("layer1.2.", "layer3.2.", "layer3.5.")) for path in paths)
    collapsed = {"layer1.2", "layer2.2", "layer2.3", "layer3.2", "layer3.3", "layer3.4", "layer3.5", "layer4.2"}
    ops = [node.path for node in walk(model.body) if isinstance(node, Op)]
    assert sorted(paths - {"input", "output"}) == sorted(op for op in ops if _block_of(op) not in collapsed)


def _block_of(path: str) -> str:
    """`layer3.2` for `layer3.2.downsample.0`: a ResNet layer's stage and block."""
    return ".".join(path.split(".")[:2])


def test_resnet50_shallower_depths_draw_a_run_as_one_node_with_a_count():
    model = model_of("resnet50")
    chart = read_mermaid(mermaid(model, 2))
    block = model.body.children[4].children[1]  # layer1.1
    assert chart.boxes[chart.box_named("layer1.1 .. layer1.2 (x2)")] == (
        "[[",
        ["layer1.1 .. layer1.2 (x2)", "bottleneck", f"2 x {block.params:,} params"],
    )
    assert chart.paths()[5:8] == ["layer1.0", "layer1.1 .. layer1.2 (x2)", "layer2.0"]
    stage = [source for source, _, _ in chart.edges if source == chart.box_named("layer1.1 .. layer1.2 (x2)")]
    assert len(stage) == 1  # one edge on to layer2.0
    top = read_mermaid(mermaid(model, 1))
    assert not any("(x" in path for path in top.paths())


def test_without_collapsing_every_layer_is_drawn():
    model = model_of("resnet50")
    chart = read_mermaid(mermaid(model, collapse=False))
    ops = [node.path for node in walk(model.body) if isinstance(node, Op)]
    assert sorted(chart.paths()) == sorted(["input", "output", *ops])
    assert not any("(x" in title for title in chart.clusters.values())


def test_a_block_that_from_reads_is_not_collapsed():
    unit = "{layers: [{conv: {out: 8, kernel: 3, padding: 1}}, relu]}"
    text = f"""
archspec: 1
name: runs
input: [8, 6, 6]
layers:
  - group: {{name: g1, {unit[1:-1]}}}
  - group: {{name: g2, {unit[1:-1]}}}
  - group: {{name: g3, {unit[1:-1]}}}
  - group: {{name: g4, {unit[1:-1]}}}
  - identity: {{name: skip, from: [g4, g1], merge: add}}
  - group: {{name: g5, {unit[1:-1]}}}
  - group: {{name: g6, {unit[1:-1]}}}
  - group: {{name: g7, layers: [{{conv: {{out: 8, kernel: 3, padding: 1}}}}, sigmoid]}}
"""
    chart = read_mermaid(mermaid(analyze(text), 1))
    assert chart.paths() == ["input", "g1", "g2 .. g3 (x2)", "g4", "skip", "g5 .. g6 (x2)", "g7", "output"]


# ---------------------------------------------------------------- (4) labels that could break the syntax

# Every name a spec accepts is an identifier (fields._name), so the worst a spec can do is use
# the formats' own keywords; the escaping is then checked with names no spec could give.
KEYWORD_SPEC = """
archspec: 1
name: end
input: [3, 8, 8]
blocks:
  subgraph:
    params: {out: int}
    layers:
      - conv: {name: graph, out: out, kernel: 3, padding: 1}
      - relu: {name: end}
layers:
  - subgraph: {name: digraph, out: 4}
  - group: {name: flowchart, layers: [{conv: {name: node, out: 4, kernel: 1}}, {relu: {name: edge}}]}
  - identity: {name: style, from: [digraph, flowchart.node]}
  - residual: {name: click, body: [{conv: {name: strict, out: 8, kernel: 1}}]}
  - identity: {name: classDef, from: [style, click], merge: concat}
"""
HOSTILE = 'a"b#c;d<e>f|g&h`i\\j\\n{k}[l](m)%%n --> o-->|p|<br>end'


def hostile(node):
    """`node` with its path and kind made of every character the formats treat specially."""
    changes = {"path": f"{node.path}{HOSTILE}", "kind": f"{node.kind}{HOSTILE}"}
    if isinstance(node, Block):
        changes["children"] = tuple(hostile(child) for child in node.children)
        changes["shortcut"] = hostile(node.shortcut) if node.shortcut is not None else None
    return replace(node, **changes)


@pytest.mark.parametrize("depth", DEPTHS)
def test_format_keywords_as_names(depth):
    model = analyze(KEYWORD_SPEC)
    chart = read_mermaid(mermaid(model, depth))
    same_graph(chart, read_dot(dot(model, depth)))
    if depth is None:
        assert {"digraph.end", "flowchart.node", "style", "click.strict", "classDef"} <= set(chart.paths())
        assert "digraph: subgraph" in chart.clusters.values()
    if shutil.which("dot"):
        graphviz_accepts(dot(model, depth))


@pytest.mark.parametrize("depth", DEPTHS)
def test_hostile_labels_are_escaped_and_read_back_unchanged(depth):
    model = analyze(KEYWORD_SPEC)
    model = replace(model, name=f"m{HOSTILE}", body=hostile(model.body))
    paths = {f"{node.path}" for node in walk(model.body) if isinstance(node, Op)}
    for chart in (read_mermaid(mermaid(model, depth)), read_dot(dot(model, depth))):
        if depth is None:
            assert paths <= set(chart.paths())
        assert all(
            lines[0].endswith(HOSTILE)
            for kind, lines in chart.boxes.values()
            if lines[0] not in ("input", "output") and kind not in MERGE_SHAPES
        )
        assert any(title.endswith(HOSTILE) for title in chart.clusters.values()) == (depth != 1)
    if shutil.which("dot"):
        graphviz_accepts(dot(model, depth))


def test_escaping_functions():
    assert mermaid_text('say "hi"; #1 <b> a|b') == "say #quot;hi#quot;#59; #35;1 #lt;b#gt; a#124;b"
    assert mermaid_unescaped(mermaid_text(HOSTILE)) == HOSTILE
    assert mermaid_text("two\nlines\x00") == "two lines "
    assert dot_text('a "b" \\n') == '"a \\"b\\" \\\\n"'
    assert dot_unescaped(dot_text(HOSTILE)) == HOSTILE
    assert dot_text("two\nlines") == '"two lines"'
