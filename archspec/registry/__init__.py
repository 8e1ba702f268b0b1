"""One place per kind: every layer kind, built-in block, activation and merge is declared once.

A declaration holds everything archspec knows of the kind: its fields (a pydantic model), its
one-line description, its shape rule and parameter count, its torch constructor (as data, so the
live builder and the emitter read the same call), and its emitted form. schema, shapes, the live
builder and the emitter are generic and dispatch through these tables; a kind that is not here
fails loudly in every stage. The built-in kinds live in archspec/kinds/; a plugin registers its
own with `register` (see docs/extending.md).

Imports no torch. The tables themselves are in tables.py, which field types read too.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from ..core.errors import Location, show_value
from ..core.ir import Op
from . import plugin_rules
from .fields import declaration_problem, defaults_of
from .tables import ACTIVATIONS, KINDS, MERGES


class Call(NamedTuple):
    """A constructor call as data: `func(*args, **kwargs)`."""

    func: str  # "nn.Conv2d", or the name of a class the kind defines itself ("Normalize")
    args: tuple = ()
    kwargs: tuple[tuple[str, object], ...] = ()
    omitted: tuple[tuple[str, object], ...] = ()  # keyword arguments left out, being at their defaults


def call(func: str, *args, defaults: Mapping | None = None, **kwargs) -> Call:
    """A Call keeping only the keyword arguments that differ from `defaults` (PyTorch's)."""
    defaults = defaults or {}
    at_default = {k for k, v in kwargs.items() if k in defaults and type(defaults[k]) is type(v) and defaults[k] == v}
    kept = tuple((k, v) for k, v in kwargs.items() if k not in at_default)
    return Call(func, args, kept, tuple((k, kwargs[k]) for k in kwargs if k in at_default))


class LayerKind(NamedTuple):
    """A layer that is one torch module."""

    name: str
    doc: str
    fields: type | None  # its fields: a pydantic model (a fields.Layer) or a fields.Fields declaration; None: none
    shape: Callable  # (op, input shape) -> (output shape, parameter count); raises shapes.ShapeError
    build: Callable  # (shaped op) -> Call: the torch constructor both backends use
    functional: str | None = None  # an emitted forward applies an unnamed one as this: "torch.relu({x})"
    stride: Callable | None = None  # (op) -> its stride, int or per dim: a residual's shortcut samples alike
    macs: Callable | None = None  # (shaped op) -> multiply-adds per sample; None: its parameter count (costs.py)
    window: Callable | None = None  # (shaped op) -> one Window per spatial dim; None: it works position by position
    buffers: Callable | None = None  # (shaped op) -> ((element count, "float" or "int64"), ...): its buffers
    # What its backward keeps from a training step's forward: "input", "output", "indices" (int64,
    # one per output element: max pooling), "mask" (a byte per output element: dropout). ("view",):
    # its output is its input's memory (flatten). Memory estimates read it (costs.py). A kind whose
    # backward keeps more or less by its fields gives (shaped op) -> such a tuple instead.
    saves: tuple[str, ...] | Callable = ("input",)
    # A bare nn.Parameter, not a module: `build` gives torch.full(shape, value), registered on the
    # enclosing module under the layer's name (ConvNeXt's `layer_scale` key) and applied as parameter * input.
    parameter: bool = False
    module: Callable | None = None  # () -> the nn.Module class of a Call whose func is not in torch.nn
    template: str | None = None  # the jinja template that defines that class in emitted source
    source: str | None = None  # ... or its source text (plugins); neither: the emitter refuses the kind
    # Its output is a new tensor its own backward does not read (a conv's, a norm's): the layer after
    # it may overwrite it in place (analyses/inplace.py).
    fresh: bool = False
    # Which of its Call's arguments are channel counts (positions, keyword names): the emitter writes
    # a user block's input channels only there. None: any (a torch.nn constructor's: none).
    channels: tuple | None = None
    # Where the model ends in it, the position of its Call's argument the emitted class takes as
    # `num_classes` (a linear's out_features); None: it is no classifier.
    classes_arg: int | None = None
    # Its output has its input's shape whatever its fields say (an activation, a norm, dropout): a wrong
    # one stands in for itself with its shape known, so the layers after it are still checked.
    keeps_shape: bool = False
    # The field naming a tensor (a `from:`-style reference) whose spatial size its output takes:
    # upsample's size_of. Resolved like `from:` into the op's `like`; its shape rule reads `like_shape`.
    like: str | None = None


class BlockKind(NamedTuple):
    """A built-in block: expanded into layers once its input shape is known, emitted as one class."""

    name: str
    doc: str
    fields: type
    expand: Callable  # (unexpanded ir.Block, input shape) -> the Block of its layers
    template: str  # the jinja template of its emitted class
    class_name: str
    arguments: Callable  # (shaped block) -> Call: the constructor call of the emitted class
    # (shaped block) -> template switches: uses that differ here get their own class. A Call among
    # them reaches the template as its constructor's source (`nn.SiLU(inplace=True)`).
    variant: Callable = lambda block: {}
    helpers: tuple[str, ...] = ()  # further classes the template defines, passed in as {name}_class
    channels: tuple | None = None  # as LayerKind's, of the emitted class's constructor
    # (fields as written) -> the layers it makes besides itself that count against limit layers
    # before its expansion exists (a dense block's num_layers); None: none are counted in advance
    count: Callable | None = None


class Structure(NamedTuple):
    """A kind whose fields hold layers (group, residual): resolved into a Block by its own rule."""

    name: str
    doc: str
    fields: type
    # (validated layer, name, path, location, nested) -> its Block; `nested.layers(items, field,
    # prefix, reserved=())` resolves the layers a field holds (`nested.captured[field]`: the references
    # of sequences around them they read), `nested.locate(field)` places a field
    resolve: Callable


class Activation(NamedTuple):
    """An activation a residual block may apply after its add."""

    name: str
    function: str | None  # "torch.relu", "F.hardswish"; None: the identity
    inplace: str | None = None  # the function that takes `inplace=True` ("F.relu"); None: no in-place form
    # (layer fields, auto) -> why a layer of these fields is not applied in place, or None. `auto`:
    # archspec is deciding by itself (a kind may be in place only when the user asks for it).
    inplace_refusal: Callable | None = None
    doc: str | None = None  # what it does, where no layer kind of its name says (identity's)


class Merge(NamedTuple):
    """How the outputs of several `from:` layers combine into one input."""

    name: str
    doc: str
    shape: Callable  # ([(layer name, shape), ...]) -> shape; raises shapes.ShapeError naming the layers
    source: Callable  # ([variable names]) -> the emitted expression
    live: Callable  # (tensors, torch) -> tensor
    fresh: bool = False  # its result is a new tensor (not a view of an input): the layer after may overwrite it
    keeps_inputs: bool = False  # its backward keeps its inputs (a product's: each factor is the other's gradient)
    broadcasts: bool = False  # a size of 1 meets any size (PyTorch's broadcasting)


Kind = LayerKind | BlockKind | Structure


# Words a spec's layer entries use themselves: a kind of that name would take their place.
SYNTAX = {
    "repeat": "copies, or a flat repeat",
    "first": "changes to its first copy",
    "name": "name",
    "from": "inputs",
    "merge": "merge of its inputs",
}


def register(entry: Kind | Activation | Merge) -> Any:
    """Add a kind, activation or merge; a name already taken is an error. Returns `entry`."""
    table = ACTIVATIONS if isinstance(entry, Activation) else MERGES if isinstance(entry, Merge) else KINDS
    if not isinstance(entry, (LayerKind, BlockKind, Structure, Activation, Merge)):
        raise TypeError(f"cannot register {entry!r}: not a LayerKind, BlockKind, Activation or Merge")
    name = entry.name
    if not (isinstance(name, str) and name.isascii() and name.isidentifier()) or keyword.iskeyword(name):
        raise ValueError(f"cannot register {show_value(name)}: a name is an ASCII identifier, not a Python keyword")
    if name in SYNTAX:
        raise ValueError(f"cannot register {name!r}: `{name}:` is spec syntax (a layer's {SYNTAX[name]})")
    if name in table:
        raise ValueError(f"{type(entry).__name__} {name!r} is already registered")
    fields = getattr(entry, "fields", None)
    problem = declaration_problem(fields) if fields is not None else None
    if problem is not None:
        raise TypeError(f"cannot register {entry.name!r}: {problem}")
    table[entry.name] = _guarded(entry) if isinstance(entry, LayerKind) else entry
    return entry


def _guarded(entry: LayerKind) -> LayerKind:
    """A kind whose plugin rules go through plugin_rules' guard (archspec's own are left as they are)."""
    checks = {**plugin_rules.CHECKS, "build": lambda value: None if isinstance(value, Call) else "not a registry.Call"}
    rules = {rule: getattr(entry, rule) for rule in checks if callable(getattr(entry, rule))}
    return entry._replace(
        **{rule: plugin_rules.guarded(entry.name, rule, func, checks[rule]) for rule, func in rules.items()}
    )


def unregister(name: str, table: dict | None = None) -> None:
    """Remove a registered entry (tests and plugins that clean up after themselves)."""
    (KINDS if table is None else table).pop(name, None)


def _lookup(table: dict, name: str, what: str):
    found = table.get(name)
    if found is None:
        raise NotImplementedError(f"Unsupported {what} {name!r}: nothing is registered under that name")
    return found


def kind(name: str) -> Kind:
    return KINDS.get(name) or _lookup(KINDS, name, "node kind")


def layer_kind(name: str) -> LayerKind:
    found = KINDS.get(name) or kind(name)
    if not isinstance(found, LayerKind):
        raise NotImplementedError(f"Unsupported node kind {name!r}: it is a {type(found).__name__}, not a layer")
    return found


def block_kind(name: str) -> BlockKind:
    found = kind(name)
    if not isinstance(found, BlockKind):
        raise NotImplementedError(f"Unsupported node kind {name!r}: it is a {type(found).__name__}, not a block")
    return found


def is_block(name: str) -> bool:
    return name in KINDS and isinstance(KINDS[name], BlockKind)


def merge(name: str) -> Merge:
    return _lookup(MERGES, name, "merge")


def defaults(name: str) -> dict[str, Any]:
    """A kind's field defaults, as its fields declare them (the one place they are spelled)."""
    return defaults_of(kind(name).fields)


def op(kind: str, name: str, path: str, loc: Location, **given) -> Op:
    """An Op made by archspec itself (a block's layer), its other fields at the kind's defaults."""
    return Op(kind, name, path, loc, MappingProxyType({**defaults(kind), **given}))
