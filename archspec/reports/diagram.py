"""Formatting only: a picture of a shaped model, as Mermaid (`flowchart TD`) or Graphviz DOT text.

What the diagram shows, for the IR that `archspec.analyze` returns:

- an `input` and an `output` node; one node per layer, labelled with its state_dict path, its
  kind and its parameter count when it has parameters;
- every edge labelled with the shape of the tensor on it, `(B, 64, 56, 56)`; an edge that carries
  an inner output out of a closed group (`from: encoder.enc2`) names it: `encoder.enc2 (B, ...)`;
- joins as nodes of their own: a `from:` with several sources feeds a `concat`/`add`/`mul` node;
  a residual block's body and shortcut meet in an `add` node (`add` / `then relu` when the block
  applies an activation after the sum; an identity shortcut is an edge labelled `identity`);
  a dense block grows one running `concat` node per layer (block input + every layer's output);
- a block opened up (see `depth`) as a Mermaid subgraph / DOT cluster titled `path: kind`; a
  block left closed as one node labelled like a layer.

`depth` limits how far blocks are opened: the model's own layers are at depth 1, a block's
layers (and a residual's shortcut) one deeper; a block at depth d is opened when d < depth.
`depth=1` draws the top-level layers only, `None` opens everything.

Collapsing: two or more consecutive sibling blocks that are the same up to their names (same
kind, the same layers with the same settings and parameter counts, input shape == output shape,
no `from:` into or out of them) are drawn once, labelled `layer3.1 .. layer3.5 (x5)` with
`5 x 1,117,184 params`. Where the depth would open them, the first of the run is drawn opened,
under that title, standing for all of them; otherwise the run is one node. So ResNet-50's stage
`layer3` at full depth shows `layer3.0` (which strides and projects) and one opened `layer3.1`
marked (x5). `collapse=False` draws every block.

Mermaid refuses a chart of more than 500 edges unless its renderer is configured otherwise
(`maxEdges`, which a chart cannot set for itself): DenseNet-161/169/201 at full depth exceed it,
so pass a smaller `depth` for them; `len(draw(model, depth).edges)` counts a chart's edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..analyses.dataflow import Dataflow
from ..core.ir import CAPTURED, INPUT, JOINS, Block, Model, Node, Op, is_captured
from ..core.shape_rules import fmt_shape
from ..kinds import merges

# ---------------------------------------------------------------- the drawing, format-free


@dataclass(frozen=True)
class Box:
    id: str
    lines: tuple[str, ...]
    style: str  # io, layer, block (closed), repeat (a collapsed run), merge


@dataclass
class Cluster:
    id: str
    title: str
    items: list = field(default_factory=list)  # Box and Cluster, in drawing order


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str


@dataclass(frozen=True)
class Port:
    """A tensor in the drawing: the box that produces it, its shape, and what to call it on an
    edge when the box alone does not say (an inner output of a closed group, an identity)."""

    box: str
    shape: tuple | None
    note: str = ""


@dataclass(frozen=True)
class Drawn:
    """A drawn IR node: its output, and for an opened sequence its children by name (`from:`
    reaches into them); None when closed or not a sequence."""

    node: Node
    out: Port
    inner: dict | None = None


@dataclass
class Drawing:
    name: str
    root: Cluster
    edges: list[Edge]


def draw(model: Model, depth: int | None = None, collapse: bool = True) -> Drawing:
    """The format-free drawing that `mermaid` and `dot` write out."""
    return _Drawer(depth, collapse, Dataflow(model.body)).model(model)


class _Drawer:
    def __init__(self, depth: int | None, collapse: bool, flow: Dataflow):
        self.depth, self.collapse, self.flow = depth, collapse, flow
        self.edges: list[Edge] = []
        self.count = 0
        self.around: list[tuple[str, dict]] = []  # (path, drawn layers) of the sequences being drawn, outermost first

    def model(self, model: Model) -> Drawing:
        root = Cluster("root", model.name)
        start = self.box(root, ("input",), "io")
        out, produced = self.sequence(model.body, Port(start, model.input_shape), 1, root)
        for name, reference in model.outputs or (("output", None),):  # named outputs: a box each
            self.connect(_source(produced, reference) if reference else out, self.box(root, (name,), "io"))
        return Drawing(model.name, root, self.edges)

    def new_id(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count - 1}"

    def box(self, cluster: Cluster, lines: tuple[str, ...], style: str) -> str:
        box = Box(self.new_id("n"), lines, style)
        cluster.items.append(box)
        return box.id

    def connect(self, port: Port, target: str) -> None:
        label = fmt_shape(port.shape)
        self.edges.append(Edge(port.box, target, f"{port.note} {label}" if port.note else label))

    def opened(self, level: int) -> bool:
        return self.depth is None or level < self.depth

    # ------------------------------------------------ one node

    def node(self, node: Node, port: Port, level: int, cluster: Cluster) -> Drawn:
        if isinstance(node, Block) and self.opened(level):
            return self.block(node, port, level, cluster, f"{node.path}: {node.kind}")
        style = "block" if isinstance(node, Block) else "layer"
        box = self.box(cluster, _describe(node), style)
        self.connect(port, box)
        return Drawn(node, Port(box, node.out_shape))

    def block(self, block: Block, port: Port, level: int, cluster: Cluster, title: str) -> Drawn:
        inside = Cluster(self.new_id("s"), title)
        cluster.items.append(inside)
        if block.flow == "residual":
            return Drawn(block, self.residual(block, port, level + 1, inside))
        if block.flow == "dense":
            return Drawn(block, self.dense(block, port, level + 1, inside))
        out, inner = self.sequence(block, port, level + 1, inside)
        return Drawn(block, out, inner)

    def run(self, run: list[Block], port: Port, level: int, cluster: Cluster) -> Drawn:
        """Identical blocks, drawn once (see the module's docstring)."""
        first = run[0]
        title = f"{first.path} .. {run[-1].path} (x{len(run)})"
        if self.opened(level):
            drawn = self.block(first, port, level, cluster, f"{title}: {first.kind}")
            return Drawn(run[-1], Port(drawn.out.box, run[-1].out_shape))
        lines = (title, first.kind) + ((f"{len(run)} x {first.params:,} params",) if first.params else ())
        box = self.box(cluster, lines, "repeat")
        self.connect(port, box)
        return Drawn(run[-1], Port(box, run[-1].out_shape))

    # ------------------------------------------------ the three flows (shapes.py's)

    def sequence(self, block: Block, port: Port, level: int, cluster: Cluster) -> tuple[Port, dict]:
        produced: dict[str, Drawn] = {INPUT: Drawn(block, port)}  # `from: input`: an edge from the entry
        current = port
        self.around.append((block.path, produced))
        for run in self.runs(block):
            child = run[0]
            if child.inputs:
                current = self.gather(child, produced, cluster)
            if len(run) > 1:
                drawn = self.run(run, current, level, cluster)
            else:
                drawn = self.node(child, current, level, cluster)
            for each in run:
                produced[each.name] = drawn
            current = drawn.out
        self.around.pop()
        return current, produced

    def gather(self, child: Node, produced: dict[str, Drawn], cluster: Cluster) -> Port:
        """The input of a layer with `from:`: one source, or several joined in a merge node."""
        sources = [self.source(produced, reference) for reference in child.inputs]
        if len(sources) == 1:
            return sources[0]
        join = self.box(cluster, (child.merge or merges.DEFAULT,), "merge")
        for source in sources:
            self.connect(source, join)
        return Port(join, child.in_shape)

    def source(self, produced: dict[str, Drawn], reference: str) -> Port:
        """The port a reference reads: in this sequence, or captured from the innermost sequence
        around it that drew the layer (as resolve found it)."""
        if not is_captured(reference):
            return _source(produced, reference)
        path = reference[len(CAPTURED) :]
        for scope, drawn in reversed(self.around[:-1]):
            local = path[len(scope) + 1 :] if scope else path
            if (not scope or path.startswith(f"{scope}.")) and local.partition(".")[0] in drawn:
                return _source(drawn, local)
        raise KeyError(reference)  # resolve made sure it names a layer drawn before

    def residual(self, block: Block, port: Port, level: int, cluster: Cluster) -> Port:
        body, _ = self.sequence(block, port, level, cluster)
        if block.shortcut is not None:
            shortcut = self.node(block.shortcut, port, level, cluster).out
        else:
            shortcut = Port(port.box, port.shape, f"identity of {port.note}" if port.note else "identity")
        label = (JOINS["residual"], f"then {block.activation}") if block.activation else (JOINS["residual"],)
        join = self.box(cluster, label, "merge")
        self.connect(body, join)
        self.connect(shortcut, join)
        return Port(join, block.out_shape)

    def dense(self, block: Block, port: Port, level: int, cluster: Cluster) -> Port:
        running = port
        for i, child in enumerate(block.children):
            out = self.node(child, running, level, cluster).out
            join = self.box(cluster, (JOINS["dense"],), "merge")
            self.connect(running, join)
            self.connect(out, join)
            following = block.children[i + 1].in_shape if i + 1 < len(block.children) else block.out_shape
            running = Port(join, following)
        return running

    # ------------------------------------------------ collapsing

    def runs(self, block: Block) -> list[list[Node]]:
        """The children of a sequence in order, identical neighbours grouped (one-element lists
        for the rest)."""
        # children whose outputs something besides the next sibling reads: kept out of runs
        pinned = {reference.partition(".")[0] for reference in self.flow.of(block).kept}
        runs: list[list[Node]] = []
        for child in block.children:
            last = runs[-1] if runs else None
            if self.collapse and last and _repeats(last[0], child) and not {last[0].name, child.name} & pinned:
                last.append(child)
            else:
                runs.append([child])
        return runs


def _repeats(first: Node, other: Node) -> bool:
    return (
        isinstance(first, Block)
        and first.in_shape == first.out_shape == other.in_shape
        and not (first.exports or other.exports or other.inputs or first.inputs)
        and _signature(first) == _signature(other)
    )


def _signature(node: Node) -> tuple:
    """What makes two nodes the same layers up to their own names (their children's names count)."""
    own = (type(node).__name__, node.kind, repr(dict(node.args)), node.inputs, node.merge, node.in_shape, node.params)
    if isinstance(node, Op):
        return own
    children = tuple((child.name, _signature(child)) for child in node.children)
    shortcut = _signature(node.shortcut) if node.shortcut is not None else None
    return (*own, node.flow, node.shortcut_mode, node.activation, node.block_args, children, shortcut)


def _source(produced: dict[str, Drawn], reference: str) -> Port:
    """The port a `from:` name reads (shapes._find, over the drawing): the inner layer's own box
    where its group is opened, else the closed group's box, noted with the name."""
    head, *rest = reference.split(".")
    drawn = produced[head]
    for i, part in enumerate(rest):
        if drawn.inner is None:
            return Port(drawn.out.box, _inner(drawn.node, rest[i:]).out_shape, reference)
        drawn = drawn.inner[part]
    return drawn.out


def _inner(node: Block, names: list[str]) -> Node:
    for name in names:
        node = next(child for child in node.children if child.name == name)
    return node


def _describe(node: Node) -> tuple[str, ...]:
    return (node.path, node.kind) + ((f"{node.params:,} params",) if node.params else ())


# ---------------------------------------------------------------- Mermaid

_MERMAID_SHAPES = {  # style: (open, close) around the quoted label
    "io": ('(["', '"])'),
    "layer": ('["', '"]'),
    "block": ('[["', '"]]'),
    "repeat": ('[["', '"]]'),
    "merge": ('(("', '"))'),
}
# Entity codes Mermaid turns back into characters (`#quot;` -> `"`), replaced in one pass: the
# codes themselves hold `#` and `;`.
_MERMAID_CODES = {
    "#": "#35;",
    '"': "#quot;",
    "&": "#amp;",
    "<": "#lt;",
    ">": "#gt;",
    ";": "#59;",
    "|": "#124;",
    "`": "#96;",
    "\\": "#92;",
}


def mermaid(model: Model, depth: int | None = None, collapse: bool = True) -> str:
    """A Mermaid flowchart of `model` (it renders in GitHub markdown in a ```mermaid block)."""
    drawing = draw(model, depth, collapse)
    lines = ["flowchart TD"]
    _mermaid_items(drawing.root.items, lines, "  ")
    lines += [f'  {e.source} -->|"{mermaid_text(e.label)}"| {e.target}' for e in drawing.edges]
    return "\n".join(lines) + "\n"


def _mermaid_items(items: list, lines: list[str], indent: str) -> None:
    for item in items:
        if isinstance(item, Cluster):
            lines.append(f'{indent}subgraph {item.id}["{mermaid_text(item.title)}"]')
            _mermaid_items(item.items, lines, indent + "  ")
            lines.append(f"{indent}end")
        else:
            opening, closing = _MERMAID_SHAPES[item.style]
            label = "<br>".join(mermaid_text(line) for line in item.lines)
            lines.append(f"{indent}{item.id}{opening}{label}{closing}")


def mermaid_text(text: str) -> str:
    """`text` safe inside a double-quoted Mermaid label: one line, no quote, no markup."""
    return "".join(" " if ch < " " or ch == "\x7f" else _MERMAID_CODES.get(ch, ch) for ch in text)


# ---------------------------------------------------------------- Graphviz DOT

_DOT_SHAPES = {
    "io": 'shape=oval, style=""',
    "layer": "",
    "block": "shape=box3d",
    "repeat": "shape=box3d, peripheries=2",
    "merge": 'shape=circle, style="", margin=0',
}


def dot(model: Model, depth: int | None = None, collapse: bool = True) -> str:
    """Graphviz DOT text for `model` (`dot -Tsvg` draws it)."""
    drawing = draw(model, depth, collapse)
    lines = [
        f"digraph {dot_text(drawing.name)} {{",
        f"  graph [rankdir=TB, label={dot_text(drawing.name)}, labelloc=t, fontname=Helvetica];",
        "  node [shape=box, style=rounded, fontname=Helvetica];",
        "  edge [fontname=Helvetica, fontsize=10];",
    ]
    _dot_items(drawing.root.items, lines, "  ")
    lines += [f"  {e.source} -> {e.target} [label={dot_text(e.label)}];" for e in drawing.edges]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_items(items: list, lines: list[str], indent: str) -> None:
    for item in items:
        if isinstance(item, Cluster):
            lines.append(f"{indent}subgraph cluster_{item.id} {{")
            lines.append(f"{indent}  label={dot_text(item.title)};")
            _dot_items(item.items, lines, indent + "  ")
            lines.append(f"{indent}}}")
        else:
            label = "\\n".join(dot_text(line)[1:-1] for line in item.lines)
            shape = _DOT_SHAPES[item.style]
            lines.append(f'{indent}{item.id} [label="{label}"' + (f", {shape}" if shape else "") + "];")


def dot_text(text: str) -> str:
    """`text` as a DOT double-quoted string, on one line."""
    text = "".join(" " if ch < " " or ch == "\x7f" else ch for ch in text)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


__all__ = ["Drawing", "dot", "dot_text", "draw", "mermaid", "mermaid_text"]
