"""Stage 5b: render the shaped IR as a standalone PyTorch source file, through jinja2 templates.

The emitted module must be exactly the live one (same state_dict keys in the same order, same
outputs), so constructor calls come from each kind's registry entry, as the live builder's do.
Only validated identifiers and numbers from the spec reach the source: names were checked as
ASCII identifiers at validation, every other name comes from one allocator (`Names`), and every
value is written by `literal`, which refuses anything but numbers, booleans, None, the spec's
validated option strings, and tuples/lists of them.

A class written once for several uses (a user block's, a residual block's, or the top-level class
with `num_classes` as an argument) is written from its first use; `_Context` holds the other uses,
and a value that differs between them is written as the parameter whose values it has, or the
class cannot be shared (`_Unexpressible`) and each use is written out.
"""

from __future__ import annotations

import builtins
import keyword
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import jinja2

from .. import registry
from ..analyses.analyze import SpecSource, analyze
from ..analyses.dataflow import Dataflow, is_plain
from ..core.errors import BAD_VALUE, NO_SOURCE_FORM, Diagnostic, SpecError, show_value
from ..core.ir import CAPTURED, INPUT, Block, Model, Node, Op, walk
from ..core.shape_rules import fmt_shape
from ..core.version import __version__
from ..registry import Call

LINE_LENGTH = 88
INDENT = "    "


class Names:
    """Hands out identifiers that collide with nothing: keywords, builtins, the names an emitted
    file uses itself (self, torch, nn, F), the names given in `taken`, and each other."""

    RESERVED = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset(dir(builtins))
    RESERVED |= {"self", "torch", "nn", "F"}

    def __init__(self, taken=()):
        self.taken = set(self.RESERVED) | set(taken)

    def claim(self, wanted: str, fallback: str = "value") -> str:
        base = wanted if wanted.isascii() and wanted.isidentifier() else fallback
        candidate = base if base not in self.taken else base + "_"
        n = 2
        while candidate in self.taken:
            candidate, n = f"{base}{n}", n + 1
        self.taken.add(candidate)
        return candidate


class Locals:
    """The local variable of each tensor an emitted forward keeps: `encoder.enc2` -> `encoder__enc2`."""

    def __init__(self, *own: str):
        self.names = Names(own)
        self.of: dict[str, str] = {}

    def __call__(self, reference: str) -> str:
        if reference not in self.of:
            wanted = reference.removeprefix(CAPTURED).replace(".", "__").replace("-", "_")
            self.of[reference] = self.names.claim(wanted if wanted.isidentifier() else f"x_{wanted}")
        return self.of[reference]


def emit_python(spec: SpecSource, overrides: dict | None = None, memory_efficient: bool | None = None) -> str:
    """Standalone PyTorch source for `spec`; raises SpecError if the spec is wrong.

    `memory_efficient` True or False sets it on every dense block (None: each block's own field)."""
    from ..kinds.blocks import memory_efficient as dense_memory_efficient

    model = dense_memory_efficient(analyze(spec, overrides), memory_efficient)
    variant = num_classes_variant(spec, overrides, model)
    return render(model, variant and dense_memory_efficient(variant, memory_efficient))


class Variant(NamedTuple):
    """The spec analysed again with another `num_classes`: where the two differ is where it flows.
    A NamedTuple like the IR's records, so what changes a model's body changes a variant's alike."""

    value: int
    other: int
    body: Block  # the other analysis


def num_classes_variant(spec: SpecSource, overrides: dict | None, model: Model) -> Variant | None:
    """For a spec with an integer var `num_classes`, the emitted model takes it as an argument."""
    value = model.vars.get("num_classes")
    if type(value) is not int:
        return None
    other = value * 7 + 1009  # a value no other field is likely to share
    try:
        varied = analyze(spec, {**(overrides or {}), "num_classes": other})
    except SpecError:
        return None
    return Variant(value, other, varied.body)


class _Unexpressible(Exception):
    """num_classes flows somewhere an argument of the top-level class cannot reach."""


def templates_dir() -> Path:
    """The installed templates (package data, archspec/templates), or the source tree's templates/."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "templates"
    return installed if (installed / "model.py.jinja").is_file() else package.parent / "templates"


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


# ---------------------------------------------------------------- literals and lines


def literal(value) -> str:
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot emit the number {value!r}")
        return repr(value)
    if isinstance(value, str) and value.isascii() and value.replace("_", "").isalnum():
        return f'"{value}"'  # an option string the schema validated ("same", "bilinear", ...), as ruff writes it
    if isinstance(value, tuple):
        return "(" + ", ".join(map(literal, value)) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(map(literal, value)) + "]"
    raise ValueError(f"cannot emit {show_value(value)} as a literal")


def call_source(call: Call, override: dict[int, str] | None = None) -> tuple[str, list[str]]:
    """The function name and argument texts of a constructor call."""
    override = override or {}
    args = [override.get(i, literal(a)) for i, a in enumerate(call.args)]
    args += [f"{key}={literal(value)}" for key, value in call.kwargs]
    return call.func, args


def flat(expr) -> str:
    """An expression: source text, or (function, [argument expressions]) for a call."""
    if isinstance(expr, str):
        return expr
    func, args = expr
    return f"{func}({', '.join(map(flat, args))})"


def statement(prefix: str, expr, indent: int, suffix: str = "") -> list[str]:
    """`prefix + expr + suffix`, split the way ruff format splits a call that is too long."""
    one = f"{prefix}{flat(expr)}{suffix}"
    if indent + len(one) <= LINE_LENGTH or isinstance(expr, str) or not expr[1]:
        return [one]
    func, args = expr
    hugged = ", ".join(map(flat, args))
    if indent + len(INDENT) + len(hugged) <= LINE_LENGTH:
        return [f"{prefix}{func}(", INDENT + hugged, f"){suffix}"]
    lines = [f"{prefix}{func}("]
    for arg in args:
        lines += [INDENT + line for line in statement("", arg, indent + len(INDENT), ",")]
    return lines + [f"){suffix}"]


def pascal_case(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[._-]", name) if part)


def _attribute(owner: str, name: str) -> str:
    return f"{owner}.{name}" if name.isidentifier() else f'getattr({owner}, "{name}")'


# ---------------------------------------------------------------- the plan of the file


@dataclass
class _ClassSource:
    name: str
    text: str


@dataclass
class _Context:
    """What the code being written stands for: one node of each use (the first is written out),
    and the names in scope with their value in each use. Where the uses' values differ, the code
    says the name whose values they are; where no name fits, it cannot be written (_Unexpressible)."""

    roots: list[Node]
    params: dict[str, list]  # emitted name -> value in each use
    in_channels: str | None = None  # the emitted name of a user block's input channel count (not written by the user)
    index: list[dict[str, Node]] = field(default_factory=list)

    def __post_init__(self):
        self.index = [{_relative(node, root): node for node in walk(root)} for root in self.roots]

    def peers(self, node: Node) -> list[Node]:
        """The nodes that `node` (of the first use) stands for in the other uses."""
        at = _relative(node, self.roots[0])
        found = []
        for index in self.index[1:]:
            peer = index.get(at)
            if peer is None or type(peer) is not type(node) or peer.kind != node.kind:
                raise _Unexpressible
            found.append(peer)
        return found


def _is_parameter(node: Node) -> bool:
    return isinstance(node, Op) and registry.layer_kind(node.kind).parameter


def _relative(node: Node, root: Node) -> str:
    if node.path == root.path:
        return ""
    return node.path[len(root.path) + 1 :] if root.path else node.path


def _structure(root: Node) -> list:
    """What must agree between uses that share one class, besides the values it takes as arguments."""
    use_site = lambda n: () if n is root else (n.name, n.inputs, n.merge)  # the root's are its use's own
    return [
        (_relative(n, root), type(n).__name__, n.kind, n.exports, n.out_shape is None, *use_site(n))
        + ((n.flow, n.shortcut_mode, n.shortcut is None, n.activation, len(n.children)) if isinstance(n, Block) else ())
        for n in walk(root)
    ]


def _same(values: list) -> bool:
    return all(type(v) is type(values[0]) and v == values[0] for v in values)


@dataclass
class _Emitter:
    env: jinja2.Environment
    names: Names  # every class name of the file comes from here
    context: _Context
    flow: Dataflow  # which layer reads which: the first use's, which every use shares
    classes: list[_ClassSource] = field(default_factory=list)
    builtin_names: dict[tuple, str] = field(default_factory=dict)
    helper_classes: set[str] = field(default_factory=set)
    uses_functional: bool = False
    classifier: Op | None = None
    uses_of: dict[str, list[Block]] = field(default_factory=dict)  # user block kind -> its uses
    user_classes: dict[tuple, tuple | None] = field(default_factory=dict)  # (kind, structure) -> its plan
    structures: dict[int, tuple] = field(default_factory=dict)  # id of a use -> _structure(use)
    used: list[set[str]] = field(default_factory=lambda: [set()])  # names the class being written takes
    parameter_names: set[str] = field(default_factory=set)  # user block classes' parameters: no class's name

    # ---- values: a literal, or the name in scope whose value it is in every use

    def values(self, values: list, node: Node, remake, channels=None) -> list[str]:
        """Texts for `values` of `node`; `remake(peer)` gives the same values for a peer node.
        `channels`: the indices of values that are channel counts (None: any may be)."""
        columns = [[value] for value in values]
        for peer in self.context.peers(node):
            others = remake(peer)
            if len(others) != len(values):
                raise _Unexpressible
            for column, other in zip(columns, others):
                column.append(other)
        return [self.value(column, channels is None or i in channels) for i, column in enumerate(columns)]

    def value(self, column: list, channel: bool = True) -> str:
        """The first name in scope with these values in every use, else the literal they all share.
        A user block's input channel count stands only for channel counts: a kernel of 3 in a block
        on RGB input stays 3."""
        for name, known in self.context.params.items():
            if name == self.context.in_channels and not channel:
                continue
            if len(known) == len(column) and all(type(a) is type(b) and a == b for a, b in zip(column, known)):
                self.used[-1].add(name)
                return name
        if _same(column):
            return literal(column[0])
        raise _Unexpressible

    def same(self, node: Node, *fields: str) -> None:
        """Code written once for every use says these fields of `node` as the first use has them."""
        if any(getattr(peer, f) != getattr(node, f) for peer in self.context.peers(node) for f in fields):
            raise _Unexpressible

    def shape_note(self, node: Node, which: str = "out_shape") -> str:
        """The shape comment of a forward step, when every use has the same shape there."""
        try:
            peers = self.context.peers(node)
        except _Unexpressible:
            return ""
        shapes = [getattr(n, which) for n in (node, *peers)]
        return f"  # {fmt_shape(shapes[0])}" if all(s == shapes[0] for s in shapes) else ""

    # ---- classes

    def class_for_builtin(self, block: Block) -> str:
        kind = registry.block_kind(block.kind)
        nd = len(block.in_shape) - 1
        variant = _variant(block)
        key = (block.kind, nd, tuple(sorted(variant.items())))
        if key not in self.builtin_names:
            ranks = [k[1] for k in self.builtin_names if k[0] == block.kind]
            wanted = kind.class_name if not ranks or nd in ranks else f"{kind.class_name}{nd}d"
            if nd in ranks:  # another variant of the same rank: SqueezeExcitation2, not SqueezeExcitation_
                wanted += str(ranks.count(nd) + 1)
            name = self.names.claim(wanted)
            helpers = {
                f"{h}_class": self.names.claim(pascal_case(f"{block.kind.split('_')[0]}_{h}")) for h in kind.helpers
            }
            switches = {
                key: flat(call_source(value)) if isinstance(value, Call) else value for key, value in variant.items()
            }
            context = {"name": name, "nd": nd, **switches, **helpers}
            self.classes.append(_ClassSource(name, self.env.get_template(kind.template).render(context)))
            self.builtin_names[key] = name
        return self.builtin_names[key]

    def add_class(self, wanted: str, text: str) -> str:
        """Add a class whose source is `text` with `{name}` for its name; an identical one is reused."""
        for existing in self.classes:
            if existing.text == text.replace("{name}", existing.name):
                return existing.name
        name = self.names.claim(wanted, fallback="Block")
        self.classes.append(_ClassSource(name, text.replace("{name}", name)))
        return name

    def user_class(self, block: Block):
        """(class name, [(parameter, emitted name)]) shared by the uses of a user block that have
        this use's structure, or None when they differ in a value no parameter explains. Uses of
        another structure (a RegNet stage's first block, which projects its input) get a class of
        their own."""
        key = (block.kind, self.structure(block))
        if key not in self.user_classes:
            uses = [use for use in self.uses_of[block.kind] if self.structure(use) == key[1]]
            plan = None
            saved = (list(self.classes), self.uses_functional, set(self.helper_classes), set(self.names.taken))
            known = (dict(self.user_classes), dict(self.builtin_names))  # classes written meanwhile
            try:
                plan = self.write_user_class(block.kind, uses)
            except _Unexpressible:
                # all it added undone, the class names it claimed included
                self.classes, self.uses_functional, self.helper_classes, self.names.taken = saved
                self.user_classes, self.builtin_names = known  # and the plans that named those classes
            self.user_classes[key] = plan
        return self.user_classes[key]

    def structure(self, use: Block) -> tuple:
        if id(use) not in self.structures:
            self.structures[id(use)] = tuple(_structure(use))
        return self.structures[id(use)]

    def write_user_class(self, kind: str, uses: list[Block]):
        # The parameters' names in source: a block parameter may be called `self`, `nn` or like a class of
        # the file (`Normalize`), which it would hide inside the class; no class written later takes one.
        emitted = Names(self.names.taken - self.parameter_names)
        signature = [("in_channels", emitted.claim("in_channels"))]
        signature += [(name, emitted.claim(name)) for name, _ in uses[0].block_args if name != "in_channels"]
        self.parameter_names |= {text for _, text in signature}
        self.names.taken |= self.parameter_names
        params = {text: [_argument(use, name) for use in uses] for name, text in signature}
        outer, self.context = self.context, _Context(list(uses), params, signature[0][1])
        self.used.append(set())
        try:
            first = uses[0]
            if first.flow == "sequential" and is_plain(first):
                init = [line for child in first.children for line in self.construct(child, "self", 8)]
                template, forward = "user_block.py.jinja", None
            else:
                init, forward = self.class_body(first)
                template = "block.py.jinja"
            taken = [(name, text) for name, text in signature if text in self.used[-1]]
        finally:
            self.context = outer
            self.used.pop()
        typed = [f"{text}: {type(params[text][0]).__name__}" for _, text in taken]
        init_signature = _signature("__init__", typed, "None")
        if forward is None:
            text = self.env.get_template(template).render(name="{name}", kind=kind, init=init, signature=init_signature)
        else:
            text = self.env.get_template(template).render(init_signature=init_signature, init=init, **forward)
        return self.add_class(pascal_case(kind), text), taken

    def block_class(self, block: Block) -> tuple[str, list[str]]:
        """A class with an explicit forward, for a residual block or a sequence with `from:` inputs;
        (its name, the names in scope its constructor takes)."""
        self.used.append(set())
        try:
            init, forward = self.class_body(block)
            taken = [name for name in self.context.params if name in self.used[-1]]
        finally:
            used = self.used.pop()
        self.used[-1] |= used
        text = self.env.get_template("block.py.jinja").render(
            init_signature=_signature("__init__", [f"{name}: int" for name in taken], "None"), init=init, **forward
        )
        wanted = pascal_case(block.kind if block.name.isdigit() else block.name)
        return self.add_class(wanted, text), taken

    def class_body(self, block: Block) -> tuple[list[str], dict]:
        init = []
        for child in block.children:
            if not self.is_functional(child):
                init += self.construct(child, "self", 8)
        if block.shortcut is not None:
            shortcut = self.construct(block.shortcut, "self", 8)
            init = shortcut + init if block.args.get("shortcut_first") else init + shortcut
        forward = []
        local = Locals("x", "out", "identity")
        captured = [local(reference) for reference in block.captures]  # its arguments after x
        if block.shortcut is not None:
            handed = [local(r) for r in self.flow.of(block).passes.get(block.shortcut.name, ())]
            step = f"{_attribute('self', block.shortcut.name)}({', '.join(['x', *handed])})"
            forward.append(f"identity = {step}{self.shape_note(block.shortcut)}")
        lines, current = self.sequence_forward(block, "x", "out", local)
        forward += lines
        returns = "torch.Tensor"
        if block.exports:  # the output, then the inner outputs a later `from:` reaches for
            result = [current, *(local(path) for path in block.exports)]
            returns = f"tuple[{', '.join(['torch.Tensor'] * (1 + len(block.exports)))}]"
            doc = f"The sequence {block.kind if block.block_args is not None else block.path}; also returns "
            doc += f"{', '.join(block.exports)} for later layers"
        elif block.flow == "residual":
            self.same(block, "inplace_add", "inplace_activation", "args")
            identity = "identity" if block.shortcut is not None else "x"
            added = f"{current} + {identity}"
            if block.inplace_add:  # onto the body's fresh output, as torchvision's `out += identity`
                forward.append(f"{current} += {identity}")
                added = current
            activation = registry.ACTIVATIONS[block.activation] if block.activation else None
            if activation is not None and block.inplace_activation:
                result = f"{activation.inplace}({added}, inplace=True)"
            else:
                result = _apply(activation.function, added) if activation is not None else added
            doc = f"Residual block: body + shortcut, then {block.activation or 'no activation'}"
        else:
            result, doc = current, "A sequence whose layers take inputs from earlier ones"
            if not any(child.inputs for child in block.children):
                doc = "A sequence that applies a parameter of its own (nn.Sequential would only hold it)"
        result = result if isinstance(result, list) else [result]
        self.uses_functional |= any("F." in item for item in result)
        params = [f"{name}: torch.Tensor" for name in ["x", *captured]]
        signature = _signature("forward", params, returns)
        if any(len(INDENT + line) > LINE_LENGTH for line in signature):  # many tensors handed out
            signature = _signature("forward", params, "tuple[torch.Tensor, ...]")
        forward_info = dict(
            name="{name}", forward=forward, result=_return(result, self.shape_note(block)), doc=doc,
            signature=signature,
        )  # fmt: skip
        return init, forward_info

    # ---- constructors: the statements that build `node` into `owner`

    def construct(self, node: Node, owner: str, indent: int) -> list[str]:
        target = _attribute(owner, node.name)
        if _is_parameter(node):
            return self.parameter(owner, node, indent)
        if isinstance(node, Op):
            return self.assign(owner, node.name, *self.op_call(node), indent)
        if registry.is_block(node.kind):
            return self.assign(owner, node.name, *self.builtin_call(node), indent)
        plan = self.user_class(node) if node.block_args is not None else None
        if plan is not None:
            class_name, signature = plan
            remake = lambda block: [_argument(block, name) for name, _ in signature]
            arguments = self.values(remake(node), node, remake, channels={0})  # its own in_channels first
            return self.assign(owner, node.name, class_name, arguments, indent)
        if node.flow == "residual" or not is_plain(node):
            class_name, taken = self.block_class(node)
            return self.assign(owner, node.name, class_name, taken, indent)
        if node.flow == "sequential" and all(self.is_inline(c, i) for i, c in enumerate(node.children)):
            return self.assign(owner, node.name, "nn.Sequential", [self.inline(c) for c in node.children], indent)
        if node.flow == "sequential":
            lines = self.assign(owner, node.name, "nn.Sequential", [], indent)
            for child in node.children:
                lines += self.construct(child, target, indent)
            return lines
        raise NotImplementedError(f"Unsupported node kind {node.kind!r} (flow {node.flow!r})")

    def parameter(self, owner: str, op: Op, indent: int) -> list[str]:
        """`owner.name = nn.Parameter(torch.full((C, 1, 1), value))`: a bare parameter (layer_scale)."""

        def remake(peer: Op) -> list:
            size, value = registry.layer_kind(peer.kind).build(peer).args
            return [*size, value]

        *size, value = self.values(remake(op), op, remake, channels={0})
        made = ("nn.Parameter", [("torch.full", [f"({', '.join(size)}{',' if len(size) == 1 else ''})", value])])
        if op.name.isidentifier():
            return statement(f"{owner}.{op.name} = ", made, indent)
        return statement("", (f"{owner}.register_parameter", [f'"{op.name}"', made]), indent)

    def is_inline(self, node: Node, index: int) -> bool:
        """An index-named layer or built-in block: written inline in `nn.Sequential(...)`."""
        return node.name == str(index) and (
            (isinstance(node, Op) and not _is_parameter(node)) or registry.is_block(node.kind)
        )

    def inline(self, node: Node):
        return self.op_call(node) if isinstance(node, Op) else self.builtin_call(node)

    def assign(self, owner: str, name: str, func: str, args: list[str], indent: int) -> list[str]:
        if name.isidentifier():
            return statement(f"{owner}.{name} = ", (func, args), indent)
        return statement("", (f"{owner}.add_module", [f'"{name}"', (func, args)]), indent)

    def layer_call(self, op: Op) -> Call:
        kind = registry.layer_kind(op.kind)
        call = kind.build(op)
        if not call.func.startswith("nn.") and call.func not in self.helper_classes:
            self.helper_classes.add(call.func)
            if kind.template is not None:
                text = self.env.get_template(kind.template).render()
                self.uses_functional |= "F." in text
                self.classes.insert(0, _ClassSource(call.func, text))
            elif kind.source is not None:
                self.classes.insert(0, _ClassSource(call.func, kind.source))
            else:
                message = f"layer {op.path} ({op.kind}): the kind gives no source form, so it cannot be emitted"
                raise SpecError([Diagnostic(message, NO_SOURCE_FORM, op.loc, op.notes)])
        for value in (*call.args, *(value for _, value in call.kwargs)):
            try:
                literal(value)
            except ValueError as exc:  # a plugin's str field holding any text: it never reaches source
                message = f"layer {op.path} ({op.kind}): {exc}; emitted code holds only numbers, booleans and words"
                raise SpecError([Diagnostic(message, BAD_VALUE, op.loc, op.notes)]) from None
        return call

    def op_call(self, op: Op) -> tuple[str, list[str]]:
        call = self.layer_call(op)
        if op is self.classifier and len(self.used) == 1:  # the top-level class's own constructor
            self.used[0].add("num_classes")
            return call_source(call, {registry.layer_kind(op.kind).classes_arg: "num_classes"})
        return call.func, self.call_arguments(op, call, self.layer_call)

    def builtin_call(self, block: Block) -> tuple[str, list[str]]:
        kind = registry.block_kind(block.kind)
        if any(_variant(peer) != _variant(block) for peer in self.context.peers(block)):
            raise _Unexpressible  # the uses need different classes
        return self.class_for_builtin(block), self.call_arguments(block, kind.arguments(block), kind.arguments)

    def call_arguments(self, node: Node, call: Call, remake) -> list[str]:
        """Argument texts of `call`; `remake(peer)` gives the peer nodes' calls. A keyword argument
        is left out where every use has it at its default."""
        calls = [call, *(remake(peer) for peer in self.context.peers(node))]
        keys = [key for key, _ in call.kwargs + call.omitted]
        if any(
            len(c.args) != len(call.args) or sorted(k for k, _ in c.kwargs + c.omitted) != sorted(keys) for c in calls
        ):
            raise _Unexpressible
        keys = [key for key in keys if not all(key in dict(c.omitted) for c in calls)]

        def values(made: Call) -> list:
            given = dict(made.kwargs + made.omitted)
            return [*made.args, *(given[key] for key in keys)]

        texts = self.values(values(call), node, lambda peer: values(remake(peer)), _channels(node, call, keys))
        return texts[: len(call.args)] + [f"{key}={text}" for key, text in zip(keys, texts[len(call.args) :])]

    def sequence_forward(self, block: Block, x: str, out: str, local: Locals) -> tuple[list[str], str]:
        """Forward lines applying `block`'s layers to `x`; tensors a later `from:` needs get their own name."""
        sequence = self.flow.of(block)
        children, keep = block.children, sequence.kept
        if INPUT in keep:  # `from: input`: the caller passes an `out` other than `x`, so `x` stays the input
            local.of[INPUT] = x
        lines, current = [], x
        for child in children:
            if child.inputs:
                names = [local(name) for name in child.inputs]
                current = names[0] if len(names) == 1 else out
                if len(names) > 1:
                    merged = registry.merge(child.merge).source(names)
                    self.uses_functional |= "F." in merged
                    lines += _statement(out, merged, self.shape_note(child, "in_shape"))
            target = local(child.name) if child.name in keep else out
            targets = ", ".join([target, *(local(f"{child.name}.{path}") for path in child.exports)])
            like = (child.like,) if isinstance(child, Op) and child.like else ()
            handed = [local(reference) for reference in sequence.passes.get(child.name, ()) + like]
            lines += _assign(targets, self.step(child, current, handed), self.shape_note(child))
            current = target
        return lines, current

    # ---- forward steps

    def is_functional(self, node: Node) -> bool:
        return isinstance(node, Op) and node.name.isdigit() and registry.layer_kind(node.kind).functional is not None

    def step(self, node: Node, x: str, handed: list[str]):
        """The expression applying `node` to `x` (and the tensors it is `handed`): text, or a call."""
        if self.is_functional(node):
            self.same(node, "inplace")
            if node.inplace:
                text = f"{registry.ACTIVATIONS[node.kind].inplace}({x}, inplace=True)"
            else:
                text = registry.layer_kind(node.kind).functional.format(x=x, n=len(node.in_shape) - 1)
            self.uses_functional |= text.startswith("F.")
            return text
        if _is_parameter(node):
            factor = _attribute("self", node.name)
            if node.args.get("flat") and len(node.in_shape) > 1:  # a (C,) parameter on a (C, H, W) input
                factor += f".view(-1{', 1' * (len(node.in_shape) - 1)})"
            return f"{factor} * {x}"
        return _attribute("self", node.name), [x, *handed]


LINE_LENGTH = 88  # ruff format's default, which emitted files keep (tests/test_emit.py checks)


def _statement(target: str, expression: str, note: str, indent: int = 8) -> list[str]:
    """`target = expression  # note` in a forward (`indent` deep) as ruff format writes it: one line,
    else the brackets' or operators' contents on a line of their own, else one item per line."""
    line = f"{target} = {expression}{note}"
    if indent + len(line) <= LINE_LENGTH:
        return [line]
    inner_fits = indent + 4 + len(expression) <= LINE_LENGTH
    if expression.startswith("torch.cat([") and expression.endswith("], 1)"):
        arguments = expression[len("torch.cat(") : -1]
        if indent + 4 + len(arguments) <= LINE_LENGTH:
            return [f"{target} = torch.cat(", f"    {arguments}", f"){note}"]
        names = arguments[1 : -len("], 1")].split(", ")
        return [f"{target} = torch.cat(", "    [", *(f"        {n}," for n in names), "    ],", "    1,", f"){note}"]
    for operator in (" + ", " * "):
        if operator in expression:
            if inner_fits:
                return [f"{target} = (", f"    {expression}", f"){note}"]
            first, *rest = expression.split(operator)
            return [f"{target} = (", f"    {first}", *(f"    {operator.strip()} {n}" for n in rest), f"){note}"]
    return [line]


def _channels(node: Node, call: Call, keys: list[str]) -> set[int] | None:
    """The indices of a call's values ([*args, *values of `keys`]) that are channel counts (the kind's
    `channels`), where a user block's in_channels may stand; None: any may be (a plugin's)."""
    where = registry.kind(node.kind).channels
    if where is None:  # a torch.nn constructor takes none unless its kind says so
        return set() if call.func.startswith("nn.") else None
    return {p for p in where if isinstance(p, int)} | {len(call.args) + i for i, key in enumerate(keys) if key in where}


def _variant(block: Block) -> dict:
    """A built-in block's template switches: its kind's, and `inplace`: whether its template writes its
    activations and residual add in place. archspec.inplace decided each; the template has one switch,
    so it is on only where every one of them was decided in place (out of place is always correct)."""
    sites = []
    for node in walk(block):
        if isinstance(node, Op) and "inplace" in node.args:
            sites.append(node.inplace)
        elif isinstance(node, Block) and node.flow == "residual":
            sites.append(node.inplace_add)
            if node.activation and registry.ACTIVATIONS[node.activation].function is not None:
                sites.append(node.inplace_activation)
    return {**registry.block_kind(block.kind).variant(block), "inplace": bool(sites) and all(sites)}


def _argument(block: Block, name: str):
    return block.in_shape[0] if name == "in_channels" else dict(block.block_args)[name]


def _apply(function: str | None, x: str) -> str:
    return x if function is None else f"{function}({x})"


def _classifier(block: Block) -> Op | None:
    """The final layer whose class count (its kind's `classes_arg`: a linear's out features) becomes
    the `num_classes` argument."""
    last = block.children[-1]
    if isinstance(last, Op):
        return last if registry.layer_kind(last.kind).classes_arg is not None else None
    return _classifier(last) if last.flow == "sequential" and not registry.is_block(last.kind) else None


def _classes(classifier: Op) -> int:
    """The class count the classifier's constructor call gives it."""
    kind = registry.layer_kind(classifier.kind)
    return kind.build(classifier).args[kind.classes_arg]


def render(model: Model, variant: Variant | None = None) -> str:
    """The source of `model`; with a `variant`, num_classes is an argument of the top-level class
    wherever it flows (and where it flows into a value no argument can carry, it is not one)."""
    if variant is not None:
        try:
            return _render(model, variant)
        except _Unexpressible:  # then no argument: Model(num_classes=n) would differ from the spec with n
            return _render(model, None, classifier=False)
    return _render(model, None)


def _render(model: Model, variant: Variant | None, classifier: bool = True) -> str:
    env = _environment()
    helpers = {registry.layer_kind(n.kind).build(n).func for n in walk(model.body) if isinstance(n, Op)}
    names = Names(func for func in helpers if not func.startswith("nn."))  # classes the kinds define themselves
    class_name = names.claim(pascal_case(model.name), fallback="Model")
    roots = [model.body] + ([variant.body] if variant else [])
    params = {"num_classes": [variant.value, variant.other]} if variant else {}
    emitter = _Emitter(env, names, _Context(roots, params), Dataflow(model.body))
    emitter.classifier = _classifier(model.body) if variant is None and classifier else None
    for root in roots:
        for node in walk(root):
            if isinstance(node, Block) and node.block_args is not None:
                emitter.uses_of.setdefault(node.kind, []).append(node)
    init = []
    for child in model.body.children:
        if not emitter.is_functional(child):
            init += emitter.construct(child, "self", 8)
    out = "out" if INPUT in emitter.flow.of(model.body).kept else "x"  # keep x for `from: input`
    local = Locals("x", out)
    forward, result = emitter.sequence_forward(model.body, "x", out, local)
    returns = "torch.Tensor"
    result = [f"return {result}"]
    if model.outputs:  # an ordered dict, written as torchvision's segmentation models write theirs
        returned = [f'result["{name}"] = {local(reference)}' for name, reference in model.outputs]
        forward = [*_unassigned(forward, returned), "result = OrderedDict()", *returned]
        result, returns = ["return result"], "dict[str, torch.Tensor]"
    params = []
    if "num_classes" in emitter.used[0]:
        params = [f"num_classes: int = {variant.value if variant else _classes(emitter.classifier)}"]
    return env.get_template("model.py.jinja").render(
        version=__version__,
        source=_printable(model.source),
        class_name=class_name,
        description=f"{model.name}, compiled by archspec from {_printable(Path(model.source).name)}",
        input_shape=literal(tuple(model.input_shape)),
        classes=emitter.classes,
        init=init,
        forward=forward,
        result=result,
        returns=returns,
        outputs=[name for name, _ in model.outputs],
        params=params,
        uses_functional=emitter.uses_functional,
        uses_checkpoint=any("cp.checkpoint(" in cls.text for cls in emitter.classes),  # memory-efficient dense
        output_shape=_outputs_text(model),
        params_count=f"{model.body.params:,}",
    )


def _unassigned(forward: list[str], after: list[str]) -> list[str]:
    """The forward with each result no line reads left unassigned: layers an output does not need
    still run, as in the live module, but an unread `out = ...` is an error to linters (F841)."""
    code = [re.sub(r'"[^"]*"', '""', line).partition("  #")[0] for line in forward + after]  # not its words
    unread = []
    for line in forward:
        target, equals, _ = line.partition(" = ")
        if equals and target.isidentifier():  # one statement on one line: `out = self.head(x)  # ...`
            loads = sum(len(re.findall(rf"\b{target}\b", other)) for other in code)
            assigns = sum(other.startswith(f"{target} = ") for other in code)
            if loads == assigns:
                unread.append(target)
    return [line[line.index(" = ") + 3 :] if line.partition(" = ")[0] in unread else line for line in forward]


def _return(items: list[str], note: str) -> list[str]:
    """`return a, b  # note`, its items one per line where that is too long, as ruff formats it."""
    line = f"return {', '.join(items)}{note}"
    if len(items) == 1 or 2 * len(INDENT) + len(line) <= LINE_LENGTH:
        return [line]
    return ["return (", *(f"{INDENT}{item}," for item in items), f"){note}"]


def _assign(targets: str, expr, note: str, indent: int = 8) -> list[str]:
    """`targets = expr  # note` as ruff formats it: one line; else the call's arguments on a line of
    their own; else the call in parentheses; else the targets one per line."""
    lines = statement(f"{targets} = ", expr, indent, note)
    if isinstance(expr, str) or all(indent + len(line) <= LINE_LENGTH for line in lines):
        return lines
    if indent + len(f"{targets} = (") <= LINE_LENGTH:
        inner = statement("", expr, indent + len(INDENT))
        return [f"{targets} = (", *(INDENT + line for line in inner), f"){note}"]
    exploded = [f"{INDENT}{target}," for target in targets.split(", ")]
    return ["(", *exploded, *statement(") = ", expr, indent, note)]


def _outputs_text(model: Model) -> str:
    """What the model returns, for its docstring: a shape, or each named output's."""
    if not model.outputs:
        return fmt_shape(model.body.out_shape)
    shapes = {child.path: child.out_shape for child in walk(model.body)}
    return "{" + ", ".join(f"{name}: {fmt_shape(shapes[reference])}" for name, reference in model.outputs) + "}"


def _signature(name: str, params: list[str], returns: str) -> list[str]:
    """The `def` line(s) of a method, split as ruff format splits a long signature."""
    params = ["self", *params]
    line = f"def {name}({', '.join(params)}) -> {returns}:"
    if len(INDENT) + len(line) <= LINE_LENGTH:
        return [line]
    hugged = ", ".join(params)
    if 2 * len(INDENT) + len(hugged) <= LINE_LENGTH:
        return [f"def {name}(", INDENT + hugged, f") -> {returns}:"]
    return [f"def {name}(", *(f"{INDENT}{p}," for p in params), f") -> {returns}:"]


def _printable(text: str) -> str:
    """A file name made safe for a comment or docstring: printable ASCII, no quotes or backslashes."""
    return "".join(c if c.isascii() and c.isprintable() and c not in "\"'\\" else "?" for c in text)
