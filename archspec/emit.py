"""Stage 5b: render the shaped IR as a standalone PyTorch source file, through jinja2 templates.

The emitted module must be exactly the live one (same state_dict keys in the same order, same
outputs), so constructor calls come from `calls.layer_call`, the table the live builder uses.
Only validated identifiers and numbers from the spec reach the source: names were checked as
ASCII identifiers at validation, and every value is written by `literal`, which refuses anything
but numbers, booleans, None, the spec's validated option strings, and tuples/lists of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from . import __version__
from .calls import Call, layer_call
from .ir import Block, Model, Node, Op, walk
from .pipeline import SpecSource, analyze
from .shapes import fmt_shape

LINE_LENGTH = 88
INDENT = "    "
BUILTIN_CLASSES = {  # block kind -> (template, class name)
    "basic_block": ("basic_block.py.jinja", "BasicBlock"),
    "bottleneck": ("bottleneck.py.jinja", "Bottleneck"),
    "dense_block": ("dense_block.py.jinja", "DenseBlock"),
    "transition": ("transition.py.jinja", "Transition"),
}
# Names the emitted file defines or imports besides the model class.
TAKEN_NAMES = {name for _, name in BUILTIN_CLASSES.values()} | {"DenseLayer", "Normalize", "F", "nn", "torch"}
# Parameterless layers an emitted forward applies as functions rather than modules.
FUNCTIONAL = {
    "relu": "torch.relu({x})",
    "sigmoid": "torch.sigmoid({x})",
    "tanh": "torch.tanh({x})",
    "flatten": "torch.flatten({x}, 1)",
    "global_avgpool": "F.adaptive_avg_pool{n}d({x}, 1)",
}
ACTIVATIONS = {
    "relu": "torch.relu({x})",
    "sigmoid": "torch.sigmoid({x})",
    "tanh": "torch.tanh({x})",
    "leaky_relu": "F.leaky_relu({x})",
    "gelu": "F.gelu({x})",
    "silu": "F.silu({x})",
    "identity": "{x}",
}


def emit_python(spec: SpecSource, overrides: dict | None = None) -> str:
    """Standalone PyTorch source for `spec`; raises SpecError if the spec is wrong."""
    return render(analyze(spec, overrides))


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
    classes: list[_ClassSource] = field(default_factory=list)
    builtin_names: dict[tuple[str, int], str] = field(default_factory=dict)
    used_names: set[str] = field(default_factory=set)
    uses_functional: bool = False
    classifier: Op | None = None
    user_classes: dict[str, tuple[str, list[str]]] = field(default_factory=dict)

    def class_for_builtin(self, block: Block) -> str:
        nd = len(block.in_shape) - 1
        key = (block.kind, nd)
        if key not in self.builtin_names:
            template, base = BUILTIN_CLASSES[block.kind]
            ranks = {k[1] for k in self.builtin_names if k[0] == block.kind}
            name = self.unique(base if not ranks else f"{base}{nd}d")
            context = {"name": name, "nd": nd}
            if block.kind == "dense_block":
                context["bottleneck"] = any(c.name == "conv1" for c in block.children[0].children)
                context["dropout"] = any(c.kind == "dropout" for c in block.children[0].children)
            self.classes.append(_ClassSource(name, self.env.get_template(template).render(context)))
            self.builtin_names[key] = name
        return self.builtin_names[key]

    def unique(self, name: str) -> str:
        candidate, n = name, 2
        while candidate in self.used_names:
            candidate, n = f"{name}{n}", n + 1
        self.used_names.add(candidate)
        return candidate

    # ---- constructors: the statements that build `node` into `owner`

    def construct(self, node: Node, owner: str, indent: int) -> list[str]:
        target = _attribute(owner, node.name)
        if isinstance(node, Op):
            return self.assign(owner, node.name, *self.op_call(node), indent)
        if node.kind in BUILTIN_CLASSES:
            return self.assign(owner, node.name, *self.builtin_call(node), indent)
        if node.kind in self.user_classes:
            class_name, params = self.user_classes[node.kind]
            values = {**dict(node.block_args), "in_channels": node.in_shape[0]}
            return self.assign(owner, node.name, class_name, [literal(values[p]) for p in params], indent)
        if node.flow == "residual" or node.exports or any(c.inputs or c.exports for c in node.children):
            return self.assign(owner, node.name, self.block_class(node), [], indent)
        if node.flow == "sequential" and all(self.is_inline(c, i) for i, c in enumerate(node.children)):
            return self.assign(owner, node.name, "nn.Sequential", [self.inline(c) for c in node.children], indent)
        if node.flow == "sequential":
            lines = self.assign(owner, node.name, "nn.Sequential", [], indent)
            for child in node.children:
                lines += self.construct(child, target, indent)
            return lines
        raise NotImplementedError(f"Unsupported node kind {node.kind!r}")

    def plan_user_blocks(self, body: Block) -> None:
        """A parameterised class for each user block whose uses differ only in their arguments."""
        uses: dict[str, list[Block]] = {}
        for node in walk(body):
            if isinstance(node, Block) and node.block_args is not None and node.kind not in _OWN_KINDS:
                uses.setdefault(node.kind, []).append(node)
        for kind, blocks in uses.items():
            plan = self.user_block_class(kind, blocks)
            if plan is not None:
                self.user_classes[kind] = plan

    def user_block_class(self, kind: str, uses: list[Block]):
        """(class name, parameter names) for `kind`, or None to write its uses out inline."""
        if any(b.flow != "sequential" or b.exports or any(not isinstance(c, Op) or c.inputs or c is self.classifier
                                                          for c in b.children) for b in uses):  # fmt: skip
            return None
        calls = [[(child.name, layer_call(child)) for child in block.children] for block in uses]
        layout = [[(name, c.func, len(c.args), tuple(k for k, _ in c.kwargs)) for name, c in use] for use in calls]
        if any(other != layout[0] for other in layout):
            return None
        names = [name for name, _ in uses[0].block_args] + ["in_channels"]
        known = [{**dict(block.block_args), "in_channels": block.in_shape[0]} for block in uses]
        used: set[str] = set()
        init = []
        for position, (child_name, first) in enumerate(calls[0]):
            texts = []
            slots = [("args", i) for i in range(len(first.args))] + [("kwargs", k) for k, _ in first.kwargs]
            for where, key in slots:
                values = [_slot(use[position][1], where, key) for use in calls]
                name = next((n for n in names if all(_same_number(v, k.get(n)) for v, k in zip(values, known))), None)
                if name is None and any(v != values[0] for v in values):
                    return None  # the uses differ in a way no parameter explains
                text = name or literal(values[0])
                used |= {name} if name else set()
                texts.append(text if where == "args" else f"{key}={text}")
            init += self.assign("self", child_name, first.func, texts, 8)
        params = [n for n in ["in_channels", *names[:-1]] if n in used]
        class_name = self.unique(pascal_case(kind))
        typed = [f"{n}: {type(known[0][n]).__name__}" for n in params]
        text = self.env.get_template("user_block.py.jinja").render(
            name=class_name, kind=kind, init=init, signature=_signature("__init__", typed, "None")
        )
        self.classes.append(_ClassSource(class_name, text))
        return class_name, params

    def is_inline(self, node: Node, index: int) -> bool:
        """An index-named layer or built-in block: written inline in `nn.Sequential(...)`."""
        return node.name == str(index) and (isinstance(node, Op) or node.kind in BUILTIN_CLASSES)

    def inline(self, node: Node):
        return self.op_call(node) if isinstance(node, Op) else self.builtin_call(node)

    def assign(self, owner: str, name: str, func: str, args: list[str], indent: int) -> list[str]:
        if name.isidentifier():
            return statement(f"{owner}.{name} = ", (func, args), indent)
        return statement("", (f"{owner}.add_module", [f'"{name}"', (func, args)]), indent)

    def op_call(self, op: Op) -> tuple[str, list[str]]:
        override = {1: "num_classes"} if op is self.classifier else None
        return call_source(layer_call(op), override)

    def builtin_call(self, block: Block) -> tuple[str, list[str]]:
        name = self.class_for_builtin(block)
        channels = block.in_shape[0]
        if block.kind == "basic_block":
            args = [literal(channels), literal(block.out_shape[0])] + ([f"stride={block.stride}"] if block.stride != 1 else [])
        elif block.kind == "bottleneck":
            conv2 = block.children[3]
            args = [literal(channels), literal(conv2.args["out"]), literal(block.out_shape[0])]
            args += [f"stride={block.stride}"] if block.stride != 1 else []
            args += [f"groups={conv2.args['groups']}"] if conv2.args["groups"] != 1 else []
        elif block.kind == "dense_block":
            first = block.children[0].children
            convs = [c for c in first if c.kind == "conv"]
            growth = convs[-1].args["out"]
            args = [literal(len(block.children)), literal(channels), f"growth={growth}"]
            if len(convs) == 2:
                args.append(f"bn_size={convs[0].args['out'] // growth}")
            dropout = [c for c in first if c.kind == "dropout"]
            args += [f"dropout={literal(dropout[0].args['p'])}"] if dropout else []
            args += ["bias=True"] if convs[0].args["bias"] else []
        else:  # transition
            conv = block.children[2]
            args = [literal(channels), literal(conv.args["out"])] + (["bias=True"] if conv.args["bias"] else [])
        return name, args

    def block_class(self, block: Block) -> str:
        """A class with an explicit forward, for a residual block or a sequence with `from:` inputs."""
        init = []
        for child in block.children:
            if not self.is_functional(child):
                init += self.construct(child, "self", 8)
        if block.shortcut is not None:
            init += self.construct(block.shortcut, "self", 8)
        forward = []
        if block.shortcut is not None:
            step = f"{_attribute('self', block.shortcut.name)}(x)"
            forward.append(f"identity = {step}  # {fmt_shape(block.shortcut.out_shape)}")
        lines, current = self.sequence_forward(block.children, "x", "out", block.exports)
        forward += lines
        returns = "torch.Tensor"
        if block.exports:  # the output, then the inner outputs a later `from:` reaches for
            result = ", ".join([current, *(_variable(path) for path in block.exports)])
            returns = f"tuple[{', '.join(['torch.Tensor'] * (1 + len(block.exports)))}]"
            doc = f"The sequence {block.path}; also returns {', '.join(block.exports)} for later layers"
        elif block.flow == "residual":
            added = f"{current} + {'identity' if block.shortcut is not None else 'x'}"
            result = ACTIVATIONS[block.activation].format(x=added) if block.activation else added
            doc = f"Residual {block.path}: body + shortcut, then {block.activation or 'no activation'}"
        else:
            result, doc = current, f"The sequence {block.path}, whose layers take inputs from earlier ones"
        self.uses_functional |= result.startswith("F.")
        text_body = self.env.get_template("block.py.jinja").render(
            name="{name}", init=init, forward=forward, result=result, shape=fmt_shape(block.out_shape), doc=doc,
            signature=_signature("forward", ["x: torch.Tensor"], returns),
        )  # fmt: skip
        for existing in self.classes:  # structurally identical blocks share one class
            if existing.text == text_body.replace("{name}", existing.name):
                return existing.name
        name = self.unique(pascal_case(block.name) if not block.name.isdigit() else pascal_case(block.path) + "Block")
        self.classes.append(_ClassSource(name, text_body.replace("{name}", name)))
        return name

    def sequence_forward(self, children, x: str, out: str, exports=()) -> tuple[list[str], str]:
        """Forward lines applying `children` to `x`; tensors a later `from:` needs get their own name."""
        keep = {name for child in children for name in child.inputs} | set(exports)
        lines, current = [], x
        for child in children:
            if child.inputs:
                names = [_variable(name) for name in child.inputs]
                merged = " + ".join(names) if child.merge == "add" else f"torch.cat([{', '.join(names)}], 1)"
                current = names[0] if len(names) == 1 else out
                if len(names) > 1:
                    lines.append(f"{out} = {merged}  # {fmt_shape(child.in_shape)}")
            target = _variable(child.name) if child.name in keep else out
            targets = ", ".join([target, *(_variable(f"{child.name}.{path}") for path in child.exports)])
            lines.append(f"{targets} = {self.step(child, current)}  # {fmt_shape(child.out_shape)}")
            current = target
        return lines, current

    # ---- forward steps

    def is_functional(self, node: Node) -> bool:
        return isinstance(node, Op) and node.kind in FUNCTIONAL and node.name.isdigit()

    def step(self, node: Node, x: str) -> str:
        if self.is_functional(node):
            text = FUNCTIONAL[node.kind].format(x=x, n=len(node.in_shape) - 1)
            self.uses_functional |= text.startswith("F.")
            return text
        return f"{_attribute('self', node.name)}({x})"


def _classifier(block: Block) -> Op | None:
    """The final linear layer, whose out features become the `num_classes` argument."""
    last = block.children[-1]
    if isinstance(last, Op):
        return last if last.kind == "linear" else None
    return _classifier(last) if last.flow == "sequential" and last.kind not in BUILTIN_CLASSES else None


def render(model: Model) -> str:
    env = _environment()
    class_name = pascal_case(model.name)
    if class_name in TAKEN_NAMES:
        class_name += "Model"
    fixed_names = TAKEN_NAMES - {name for _, name in BUILTIN_CLASSES.values()}  # built-ins go through unique()
    emitter = _Emitter(env, used_names={class_name, *fixed_names})
    emitter.classifier = _classifier(model.body)
    emitter.plan_user_blocks(model.body)
    init = []
    for child in model.body.children:
        if not emitter.is_functional(child):
            init += emitter.construct(child, "self", 8)
    forward, result = emitter.sequence_forward(model.body.children, "x", "x")
    uses_normalize = any(isinstance(n, Op) and n.kind == "normalize" for n in walk(model.body))
    if uses_normalize:
        emitter.classes.insert(0, _ClassSource("Normalize", env.get_template("normalize.py.jinja").render()))
    params = [f"num_classes: int = {emitter.classifier.args['out']}"] if emitter.classifier else []
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


_OWN_KINDS = {"group", "shortcut", "dense_layer", "model", *BUILTIN_CLASSES}  # not user blocks


def _slot(call: Call, where: str, key):
    return call.args[key] if where == "args" else dict(call.kwargs)[key]


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


# Names an emitted forward uses itself; a layer's tensor of the same name gets a trailing _.
_FORWARD_NAMES = {"x", "out", "identity", "self", "torch", "nn", "F"}


def _variable(reference: str) -> str:
    """The local name of a layer's output in an emitted forward (`encoder.enc4` -> `encoder__enc4`)."""
    name = reference.replace(".", "__")  # layer names never hold "__" runs next to a dot's place
    return name + "_" if name in _FORWARD_NAMES else name


def _printable(text: str) -> str:
    """A file name made safe for a comment or docstring: printable ASCII, no quotes or backslashes."""
    return "".join(c if c.isascii() and c.isprintable() and c not in "\"'\\" else "?" for c in text)
