"""Stage 5b: render the shaped IR as a standalone PyTorch source file, through jinja2 templates.

The emitted module must be exactly the live one (same state_dict keys in the same order, same
outputs), so constructor calls come from `calls.layer_call`, the table the live builder uses.
Only validated identifiers and numbers from the spec reach the source: names were checked as
ASCII identifiers at validation, and every value is written by `literal`, which refuses anything
but numbers, booleans, None, the spec's validated option strings, and tuples/lists of them.
"""

from __future__ import annotations

import builtins
import keyword
import math
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from . import __version__, registry
from .errors import NO_SOURCE_FORM, Diagnostic, SpecError
from .ir import Block, Model, Node, Op, walk
from .pipeline import SpecSource, analyze
from .registry import Call
from .shapes import fmt_shape

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
            self.of[reference] = self.names.claim(reference.replace(".", "__"))
        return self.of[reference]


def emit_python(spec: SpecSource, overrides: dict | None = None) -> str:
    """Standalone PyTorch source for `spec`; raises SpecError if the spec is wrong."""
    model = analyze(spec, overrides)
    return render(model, num_classes_variant(spec, overrides, model))


@dataclass(frozen=True)
class Variant:
    """The spec analysed again with another `num_classes`: where the two differ is where it flows."""

    value: int
    other: int
    nodes: dict  # path -> node of the other analysis


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
    return Variant(value, other, {node.path: node for node in walk(varied.body)})


class _Unexpressible(Exception):
    """num_classes flows somewhere an argument of the top-level class cannot reach."""


def templates_dir() -> Path:
    """The installed templates (package data, archspec/templates), or the source tree's templates/."""
    package = Path(__file__).resolve().parent
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
        return repr(value)  # an option string the schema validated ('same', 'bilinear', ...)
    if isinstance(value, tuple):
        return "(" + ", ".join(map(literal, value)) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(map(literal, value)) + "]"
    raise ValueError(f"cannot emit {value!r} as a literal")


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
    return "".join(part[:1].upper() + part[1:] for part in name.replace(".", "_").split("_") if part)


def _attribute(owner: str, name: str) -> str:
    return f"{owner}.{name}" if name.isidentifier() else f'getattr({owner}, "{name}")'


# ---------------------------------------------------------------- the plan of the file


@dataclass
class _ClassSource:
    name: str
    text: str


@dataclass
class _Emitter:
    env: jinja2.Environment
    names: Names  # every class name of the file comes from here
    classes: list[_ClassSource] = field(default_factory=list)
    builtin_names: dict[tuple, str] = field(default_factory=dict)
    helper_classes: set[str] = field(default_factory=set)
    uses_functional: bool = False
    classifier: Op | None = None
    user_classes: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    variant: Variant | None = None
    uses_num_classes: bool = False
    in_class: int = 0  # > 0 while writing a class body, where num_classes is not in scope

    def values(self, values: list, node: Node, others) -> list[str]:
        """Literals for `values` of `node`; `others` gives the same values in the variant's node."""
        if self.variant is None:
            return [literal(v) for v in values]
        other = self.variant.nodes.get(node.path)
        if other is None or type(other) is not type(node) or other.kind != node.kind:
            raise _Unexpressible
        alternatives = others(other)
        if len(alternatives) != len(values):
            raise _Unexpressible
        return [self.value(v, a) for v, a in zip(values, alternatives)]

    def value(self, value, alternative) -> str:
        if type(value) is type(alternative) and value == alternative:
            return literal(value)
        if self.in_class == 0 and (value, alternative) == (self.variant.value, self.variant.other):
            self.uses_num_classes = True
            return "num_classes"
        raise _Unexpressible

    def class_for_builtin(self, block: Block) -> str:
        kind = registry.block_kind(block.kind)
        nd = len(block.in_shape) - 1
        variant = kind.variant(block)
        key = (block.kind, nd, tuple(sorted(variant.items())))
        if key not in self.builtin_names:
            ranks = {k[1] for k in self.builtin_names if k[0] == block.kind}
            name = self.names.claim(kind.class_name if not ranks or nd in ranks else f"{kind.class_name}{nd}d")
            helpers = {
                f"{h}_class": self.names.claim(pascal_case(f"{block.kind.split('_')[0]}_{h}")) for h in kind.helpers
            }
            context = {"name": name, "nd": nd, **variant, **helpers}
            self.classes.append(_ClassSource(name, self.env.get_template(kind.template).render(context)))
            self.builtin_names[key] = name
        return self.builtin_names[key]

    # ---- constructors: the statements that build `node` into `owner`

    def construct(self, node: Node, owner: str, indent: int) -> list[str]:
        target = _attribute(owner, node.name)
        if isinstance(node, Op):
            return self.assign(owner, node.name, *self.op_call(node), indent)
        if registry.is_block(node.kind):
            return self.assign(owner, node.name, *self.builtin_call(node), indent)
        if node.kind in self.user_classes:
            class_name, params = self.user_classes[node.kind]

            def arguments(block):
                values = {**dict(block.block_args), "in_channels": block.in_shape[0]}
                return [values[p] for p, _ in params]

            return self.assign(owner, node.name, class_name, self.values(arguments(node), node, arguments), indent)
        if node.flow == "residual" or node.exports or any(c.inputs or c.exports for c in node.children):
            return self.assign(owner, node.name, self.block_class(node), [], indent)
        if node.flow == "sequential" and all(self.is_inline(c, i) for i, c in enumerate(node.children)):
            return self.assign(owner, node.name, "nn.Sequential", [self.inline(c) for c in node.children], indent)
        if node.flow == "sequential":
            lines = self.assign(owner, node.name, "nn.Sequential", [], indent)
            for child in node.children:
                lines += self.construct(child, target, indent)
            return lines
        raise NotImplementedError(f"Unsupported node kind {node.kind!r} (flow {node.flow!r})")

    def plan_user_blocks(self, body: Block) -> None:
        """A parameterised class for each user block whose uses differ only in their arguments."""
        uses: dict[str, list[Block]] = {}
        for node in walk(body):
            if isinstance(node, Block) and node.block_args is not None:
                uses.setdefault(node.kind, []).append(node)
        for kind, blocks in uses.items():
            plan = self.user_block_class(kind, blocks)
            if plan is not None:
                self.user_classes[kind] = plan

    def user_block_class(self, kind: str, uses: list[Block]):
        """(class name, [(parameter, emitted name)]) for `kind`, or None to write its uses out inline."""
        self.in_class += 1
        try:
            return self._user_block_class(kind, uses)
        finally:
            self.in_class -= 1

    def _user_block_class(self, kind: str, uses: list[Block]):
        if any(
            b.flow != "sequential"
            or b.exports
            or any(not isinstance(c, Op) or c.inputs or c is self.classifier for c in b.children)
            for b in uses
        ):
            return None
        calls = [[(child.name, self.layer_call(child)) for child in block.children] for block in uses]
        layout = [[(name, c.func, len(c.args), tuple(k for k, _ in c.kwargs)) for name, c in use] for use in calls]
        if any(other != layout[0] for other in layout):
            return None
        params = Names()  # the emitted parameter names: a block parameter may be called `self` or `nn`
        emitted = {"in_channels": params.claim("in_channels")}
        emitted.update((name, params.claim(name)) for name, _ in uses[0].block_args if name != "in_channels")
        known = [{**dict(block.block_args), "in_channels": block.in_shape[0]} for block in uses]
        used: set[str] = set()
        init = []
        for position, (child_name, first) in enumerate(calls[0]):
            texts = []
            slots = [("args", i) for i in range(len(first.args))] + [("kwargs", k) for k, _ in first.kwargs]
            for where, key in slots:
                values = [_slot(use[position][1], where, key) for use in calls]
                name = next((n for n in emitted if all(_same_number(v, k.get(n)) for v, k in zip(values, known))), None)
                if name is None and any(v != values[0] for v in values):
                    return None  # the uses differ in a way no parameter explains
                if name is None and self.variant is not None:  # a literal must not vary with num_classes
                    for use, value in zip(uses, values):
                        remade = lambda other: [_slot(self.layer_call(other), where, key)]  # noqa: B023
                        self.values([value], use.children[position], remade)
                text = emitted[name] if name else literal(values[0])
                used |= {name} if name else set()
                texts.append(text if where == "args" else f"{key}={text}")
            init += self.assign("self", child_name, first.func, texts, 8)
        signature = [(name, emitted[name]) for name in emitted if name in used]
        class_name = self.names.claim(pascal_case(kind), fallback="Block")
        typed = [f"{text}: {type(known[0][name]).__name__}" for name, text in signature]
        text = self.env.get_template("user_block.py.jinja").render(
            name=class_name, kind=kind, init=init, signature=_signature("__init__", typed, "None")
        )
        self.classes.append(_ClassSource(class_name, text))
        return class_name, signature

    def is_inline(self, node: Node, index: int) -> bool:
        """An index-named layer or built-in block: written inline in `nn.Sequential(...)`."""
        return node.name == str(index) and (isinstance(node, Op) or registry.is_block(node.kind))

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
                self.classes.insert(0, _ClassSource(call.func, self.env.get_template(kind.template).render()))
            elif kind.source is not None:
                self.classes.insert(0, _ClassSource(call.func, kind.source))
            else:
                message = (
                    f"layer {op.path} ({op.kind}): the kind gives no source form, so it cannot be emitted as Python"
                )
                raise SpecError([Diagnostic(message, NO_SOURCE_FORM, op.loc, op.notes)])
        return call

    def op_call(self, op: Op) -> tuple[str, list[str]]:
        call = self.layer_call(op)
        if op is self.classifier:
            return call_source(call, {1: "num_classes"})
        return call.func, self.call_arguments(op, call.args, dict(call.kwargs), lambda o: self.layer_call(o))

    def builtin_call(self, block: Block) -> tuple[str, list[str]]:
        arguments = registry.block_kind(block.kind).arguments
        positional, keywords = arguments(block)
        return self.class_for_builtin(block), self.call_arguments(block, positional, keywords, arguments)

    def call_arguments(self, node: Node, positional, keywords: dict, remake) -> list[str]:
        """Argument texts; `remake(node)` gives the same call for the variant's node."""

        def keyed(made) -> list:  # the keywords must match; their values are compared below
            args, kwargs = (made.args, dict(made.kwargs)) if isinstance(made, Call) else made
            return [*args, *(kwargs[key] if key in keywords else object() for key in sorted(kwargs))]

        texts = self.values([*positional, *(keywords[k] for k in sorted(keywords))], node, lambda o: keyed(remake(o)))
        named = dict(zip(sorted(keywords), texts[len(positional) :]))
        return texts[: len(positional)] + [f"{key}={named[key]}" for key in keywords]

    def block_class(self, block: Block) -> str:
        """A class with an explicit forward, for a residual block or a sequence with `from:` inputs."""
        self.in_class += 1
        try:
            return self._block_class(block)
        finally:
            self.in_class -= 1

    def _block_class(self, block: Block) -> str:
        init = []
        for child in block.children:
            if not self.is_functional(child):
                init += self.construct(child, "self", 8)
        if block.shortcut is not None:
            init += self.construct(block.shortcut, "self", 8)
        forward = []
        local = Locals("x", "out", "identity")
        if block.shortcut is not None:
            step = f"{_attribute('self', block.shortcut.name)}(x)"
            forward.append(f"identity = {step}  # {fmt_shape(block.shortcut.out_shape)}")
        lines, current = self.sequence_forward(block.children, "x", "out", local, block.exports)
        forward += lines
        returns = "torch.Tensor"
        if block.exports:  # the output, then the inner outputs a later `from:` reaches for
            result = ", ".join([current, *(local(path) for path in block.exports)])
            returns = f"tuple[{', '.join(['torch.Tensor'] * (1 + len(block.exports)))}]"
            doc = f"The sequence {block.path}; also returns {', '.join(block.exports)} for later layers"
        elif block.flow == "residual":
            added = f"{current} + {'identity' if block.shortcut is not None else 'x'}"
            result = _apply(registry.ACTIVATIONS[block.activation].function, added) if block.activation else added
            doc = f"Residual {block.path}: body + shortcut, then {block.activation or 'no activation'}"
        else:
            result, doc = current, f"The sequence {block.path}, whose layers take inputs from earlier ones"
        self.uses_functional |= "F." in result
        text_body = self.env.get_template("block.py.jinja").render(
            name="{name}",
            init=init,
            forward=forward,
            result=result,
            shape=fmt_shape(block.out_shape),
            doc=doc,
            signature=_signature("forward", ["x: torch.Tensor"], returns),
        )
        for existing in self.classes:  # structurally identical blocks share one class
            if existing.text == text_body.replace("{name}", existing.name):
                return existing.name
        wanted = pascal_case(block.kind if block.name.isdigit() else block.name)
        name = self.names.claim(wanted, fallback="Block")
        self.classes.append(_ClassSource(name, text_body.replace("{name}", name)))
        return name

    def sequence_forward(self, children, x: str, out: str, local: Locals, exports=()) -> tuple[list[str], str]:
        """Forward lines applying `children` to `x`; tensors a later `from:` needs get their own name."""
        keep = {name for child in children for name in child.inputs} | set(exports)
        lines, current = [], x
        for child in children:
            if child.inputs:
                names = [local(name) for name in child.inputs]
                current = names[0] if len(names) == 1 else out
                if len(names) > 1:
                    merged = registry.merge(child.merge).source(names)
                    self.uses_functional |= "F." in merged
                    lines.append(f"{out} = {merged}  # {fmt_shape(child.in_shape)}")
            target = local(child.name) if child.name in keep else out
            targets = ", ".join([target, *(local(f"{child.name}.{path}") for path in child.exports)])
            lines.append(f"{targets} = {self.step(child, current)}  # {fmt_shape(child.out_shape)}")
            current = target
        return lines, current

    # ---- forward steps

    def is_functional(self, node: Node) -> bool:
        return isinstance(node, Op) and node.name.isdigit() and registry.layer_kind(node.kind).functional is not None

    def step(self, node: Node, x: str) -> str:
        if self.is_functional(node):
            text = registry.layer_kind(node.kind).functional.format(x=x, n=len(node.in_shape) - 1)
            self.uses_functional |= text.startswith("F.")
            return text
        return f"{_attribute('self', node.name)}({x})"


def _apply(function: str | None, x: str) -> str:
    return x if function is None else f"{function}({x})"


def _classifier(block: Block) -> Op | None:
    """The final linear layer, whose out features become the `num_classes` argument."""
    last = block.children[-1]
    if isinstance(last, Op):
        return last if last.kind == "linear" else None
    return _classifier(last) if last.flow == "sequential" and not registry.is_block(last.kind) else None


def render(model: Model, variant: Variant | None = None) -> str:
    """The source of `model`; with a `variant`, num_classes is an argument of the top-level class
    wherever it flows (and where it flows into a value no argument can carry, it is not one)."""
    if variant is not None:
        try:
            return _render(model, variant)
        except _Unexpressible:
            pass
    return _render(model, None)


def _render(model: Model, variant: Variant | None) -> str:
    env = _environment()
    helpers = {registry.layer_kind(n.kind).build(n).func for n in walk(model.body) if isinstance(n, Op)}
    names = Names(func for func in helpers if not func.startswith("nn."))  # classes the kinds define themselves
    class_name = names.claim(pascal_case(model.name), fallback="Model")
    emitter = _Emitter(env, names, variant=variant)
    emitter.classifier = _classifier(model.body) if variant is None else None
    emitter.plan_user_blocks(model.body)
    init = []
    for child in model.body.children:
        if not emitter.is_functional(child):
            init += emitter.construct(child, "self", 8)
    forward, result = emitter.sequence_forward(model.body.children, "x", "x", Locals("x"))
    params = [f"num_classes: int = {emitter.classifier.args['out']}"] if emitter.classifier else []
    if emitter.uses_num_classes:
        params = [f"num_classes: int = {variant.value}"]
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
        params=params,
        uses_functional=emitter.uses_functional,
        output_shape=fmt_shape(model.body.out_shape),
        params_count=f"{model.body.params:,}",
    )


def _slot(call: Call, where: str, key):
    if where == "args":
        return call.args[key] if key < len(call.args) else None
    return dict(call.kwargs).get(key)


def _same_number(value, known) -> bool:
    number = (int, float)
    return isinstance(value, number) and not isinstance(value, bool) and type(value) is type(known) and value == known


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
