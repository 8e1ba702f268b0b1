"""Stage 3: resolve validated spec objects into the IR (archspec.core.ir): names and paths, `from:`
references checked, each layer's validated fields as its read-only args."""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING

from .. import registry
from ..core.errors import BAD_NAME, BAD_REFERENCE, DUPLICATE_NAME, LIMIT, Diagnostic, Location, SpecError, did_you_mean
from ..core.ir import CAPTURED, INPUT, Block, Model, Node, Op, replace
from ..core.limits import current as current_limits
from ..core.limits import ensure_stack, how_to_raise
from ..kinds import merges
from ..kinds.layers import STANDIN
from ..registry.fields import LAYER_FIELDS, declared_fields

if TYPE_CHECKING:
    from .expand import Expanded
    from .validate import Spec


def resolve(spec: Spec, doc: Expanded, standins: frozenset = frozenset(), errors: list | None = None) -> Model:
    """`doc` is the expand.Expanded the spec was validated from; it locates every node. `standins`
    are the paths of layers put in place of wrong ones: their outputs are unknown. With `errors`,
    the problems found (a name used twice, a `from:` that reads nothing) are added to it and the model
    is still made, a wrong reference's layer stood in for, so the shapes of the others are checked
    too; without, they are raised."""
    raising, errors = errors is None, [] if errors is None else errors
    root_loc = doc.locate(("layers",))
    ensure_stack()
    outputs = spec.outputs or ()
    try:
        children = _resolve_list(spec.layers, ("layers",), "", doc, errors, standins=standins, outputs=outputs)
    except RecursionError:  # only with limit depth raised past what Python's stack takes
        message = f"the spec nests too deeply for Python's stack; lower the nesting or {how_to_raise('depth')}"
        raise SpecError([*errors, Diagnostic(message, LIMIT, root_loc)]) from None
    if raising and errors:
        raise SpecError(errors)
    exports = tuple(dict.fromkeys(reference for _, reference in outputs))
    body = Block("model", "", "", root_loc, "sequential", children, exports=exports)
    vars_ = MappingProxyType(dict(doc.vars))
    return Model(spec.name, doc.path, tuple(spec.input), body, vars_, doc.files, outputs)


class _Scope:
    """One sequence being resolved: the layers made so far, by name, and what is asked of them."""

    def __init__(self, path: str, names: list[str], sealed: bool, captures: list[str]):
        self.path = path
        self.names = names  # every layer's name, made or not: a reference to a later one reads too early
        self.sealed = sealed  # a user block's layers: its references stay inside it
        self.built: dict[str, Node] = {}
        self.current = ""  # the name of the layer being made
        self.exports: dict[str, list[str]] = {}  # sibling name -> inner layers a later reference reaches into
        self.captures = captures  # captured references its layers read: its block's, shared by its lists

    def absolute(self, reference: str) -> str:
        return f"{self.path}.{reference}" if self.path else reference


def _resolve_list(
    layers,
    yaml_path: tuple,
    prefix: str,
    doc: Expanded,
    errors,
    reserved=(),
    standins=frozenset(),
    level: int = 1,
    around: tuple[_Scope, ...] = (),
    sealed: bool = False,
    captures: list | None = None,
    outputs: tuple = (),
):
    """The nodes of a list of layers `level` lists deep (expansion bounds that by limit depth; a
    schema.Spec given as such is bounded here), inside the sequences `around` (outermost first)."""
    nodes = []
    seen: dict[str, Location] = {}
    scope = _Scope(
        prefix,
        [layer.name or str(i) for i, layer in enumerate(layers)],
        sealed,
        captures if captures is not None else [],
    )
    scopes = (*around, scope)
    too_deep = level >= current_limits().depth
    for i, layer in enumerate(layers):
        path = yaml_path + (i,)
        name = scope.current = scope.names[i]
        loc, notes = doc.place(path)
        fields_at = path + (layer.kind,)
        references = _references(layer, scopes, doc, fields_at, notes, errors)
        _check_name(name, reserved, seen, doc, fields_at, loc, notes, errors)
        qualified = f"{prefix}.{name}" if prefix else name
        if too_deep and isinstance(registry.KINDS.get(layer.kind), registry.Structure):
            errors.append(
                Diagnostic(
                    f"layers nest more than {current_limits().depth:,} deep here; {how_to_raise('depth')}",
                    LIMIT,
                    loc,
                    notes,
                )
            )
            node = Op(STANDIN, name, qualified, loc, standin=True)
        elif references is None:  # what it reads is unknown: stood in for, so the layers after it are checked
            nodes.append(Op(STANDIN, name, qualified, loc, notes=notes, standin=True))
            scope.built.setdefault(name, nodes[-1])
            continue
        else:
            nested = _Nested(fields_at, doc, errors, standins, level, scopes, path in doc.block_uses)
            node = _resolve(layer, name, qualified, loc, nested)
        changes = _wiring(layer, references, notes)
        if path in standins:
            changes["standin"] = True
        if path in doc.block_uses and isinstance(node, Block):  # not a stand-in for a use that failed
            changes.update(kind=doc.block_uses[path], block_args=doc.block_args[path])
        if changes:  # most layers take their input from the layer before and come from no block
            node = replace(node, **changes)
        nodes.append(node)
        scope.built.setdefault(name, node)
    scope.current = ""
    for key, reference in outputs:
        _reference(reference, scopes, errors, (doc.locate(("outputs", key)), ()), f"output {key}")
    exports = scope.exports
    return tuple(_exporting(node, exports[node.name]) if node.name in exports else node for node in nodes)


def _references(layer, scopes, doc: Expanded, fields_at: tuple, notes: tuple, errors) -> dict | None:
    """The layer's references (`from:`, and the tensor whose size it takes) as its node holds them, or
    None where one reads no earlier layer (reported)."""
    found = {}
    located = doc.locate(fields_at + ("from",)), notes
    sources = [_reference(source, scopes, errors, located, "from") for source in layer.sources or ()]
    if None in sources:
        return None
    if sources:
        found["inputs"] = tuple(sources)
    kind = registry.KINDS.get(layer.kind)
    like = kind.like if isinstance(kind, registry.LayerKind) else None
    if like and getattr(layer, like) is not None:
        located = doc.locate(fields_at + (like,)), notes
        found["like"] = _reference(getattr(layer, like), scopes, errors, located, like)
        if found["like"] is None:
            return None
    return found


def _reference(reference: str, scopes: tuple[_Scope, ...], errors, located: tuple, field: str) -> str | None:
    """`reference` as a node holds it: as written where it names a layer of its own sequence (or
    INPUT), else captured from the innermost enclosing sequence that made the layer it names. Every
    sequence it passes through takes it as an argument, and the layer it reaches into exports it.
    None where it reads nothing (reported)."""
    head, _, rest = reference.partition(".")
    scope = _defining(head, scopes)
    problem = _unreachable(reference, scope.built) if scope else _too_early(head, scopes) or _missing(head, scopes)
    if problem:
        errors.append(Diagnostic(f"{field}: {problem}", BAD_REFERENCE, *located))
        return None
    if rest:
        wanted = scope.exports.setdefault(head, [])
        if rest not in wanted:
            wanted.append(rest)
    if scope is scopes[-1]:
        return reference
    captured = CAPTURED + scope.absolute(reference)
    for inner in scopes[scopes.index(scope) + 1 :]:
        if captured not in inner.captures:
            inner.captures.append(captured)
    return captured


def _defining(head: str, scopes: tuple[_Scope, ...]) -> _Scope | None:
    """The innermost sequence, of those a reference may reach, that made the layer `head`."""
    if head == INPUT:
        return scopes[-1]
    for scope in reversed(scopes):
        if head in scope.built:
            return scope
        if scope.sealed:
            return None
    return None


def _too_early(head: str, scopes: tuple[_Scope, ...]) -> str | None:
    """Why a reference to `head` names a layer not yet computed where it is read, or None."""
    for scope in reversed(scopes):
        if head == scope.current:
            return f'"{head}" is the layer this reference is in, which has no output yet'
        if head in scope.names:
            return f'"{head}" comes later in its sequence: its output is not computed yet here'
        if scope.sealed:
            return None
    return None


def _missing(head: str, scopes: tuple[_Scope, ...]) -> str:
    reach = [scopes[-1]]  # the sequences a reference may read: out to the first sealed one
    while not reach[-1].sealed and len(reach) < len(scopes):
        reach.append(scopes[-len(reach) - 1])
    visible = [*scopes[-1].built, INPUT, *(name for scope in reach[1:] for name in scope.built)]
    where = "this sequence" if len(reach) == 1 else "this sequence or one around it"
    if reach[-1].sealed:
        where += "; a block's layers reach only each other"
    return f'no earlier layer named "{head}" in {where}{did_you_mean(head, visible)}'


def _check_name(name: str, reserved, seen: dict, doc: Expanded, fields_at: tuple, loc: Location, notes, errors) -> None:
    """Report a layer name that is reserved in its scope or already used there."""
    if name == INPUT:
        message = f'the name "{INPUT}" is reserved: `from: {INPUT}` means the input of the sequence; rename the layer'
        errors.append(Diagnostic(message, BAD_NAME, doc.locate(fields_at + ("name",)), notes))
    elif name in reserved:
        message = f'the name "{name}" is this residual block\'s shortcut_name; rename the layer or set shortcut_name'
        errors.append(Diagnostic(message, DUPLICATE_NAME, loc))
    elif name in seen:
        first = ((seen[name], "first used here"),)
        errors.append(Diagnostic(f'the name "{name}" is already used in this scope', DUPLICATE_NAME, loc, first))
    seen.setdefault(name, loc)


def _wiring(layer, references: dict, notes: tuple) -> dict:
    """The fields of a layer's node that say where its input comes from and how it was made, where
    they differ from the defaults."""
    wiring = dict(references)
    if "inputs" in wiring:
        wiring["merge"] = layer.merge or (merges.DEFAULT if len(wiring["inputs"]) > 1 else None)
    elif layer.merge:
        wiring["merge"] = layer.merge
    if notes:
        wiring["notes"] = notes
    return wiring


def _unreachable(source: str, built: dict[str, Node]) -> str | None:
    """Why `source` names no earlier layer of this sequence (or of a group in it), or None."""
    head, *rest = source.split(".")
    if head == INPUT:
        return f'"{INPUT}" is the input of this sequence, which has no layers to reach into' if rest else None
    if head not in built:
        return f'no earlier layer named "{head}" in this sequence{did_you_mean(head, [*built, INPUT])}'
    node = built[head]
    for part in rest:
        if not (isinstance(node, Block) and node.flow == "sequential" and node.expanded):
            return f"{node.path} is a {node.kind}; from: reaches only into groups and user blocks"
        inner = {child.name: child for child in node.children}
        if part not in inner:
            return f'{node.path} has no layer named "{part}"{did_you_mean(part, inner)}'
        node = inner[part]
    return None


def _exporting(block: Block, paths: list[str]) -> Block:
    """`block`, made to hand out the outputs of the inner layers at `paths` besides its own."""
    inner: dict[str, list[str]] = {}
    for path in paths:
        head, _, rest = path.partition(".")
        if rest and rest not in inner.setdefault(head, []):
            inner[head].append(rest)
    children = tuple(_exporting(c, inner[c.name]) if inner.get(c.name) else c for c in block.children)
    return replace(block, children=children, exports=tuple(paths))


def _resolve(layer, name, path, loc, nested: _Nested) -> Node:
    """The node of `layer`, the entry at `nested`'s path of its expanded list."""
    kind = registry.kind(layer.kind)
    if isinstance(kind, registry.Structure):
        block = kind.resolve(layer, name, path, loc, nested)
        return replace(block, captures=tuple(nested.captures)) if nested.captures else block
    args = MappingProxyType({field: getattr(layer, field) for field in _fields(type(layer))})
    if isinstance(kind, registry.BlockKind):
        return Block(layer.kind, name, path, loc, "sequential", (), args=args, expanded=False)
    return Op(layer.kind, name, path, loc, args)


def _fields(model: type) -> list[str]:
    """A kind's own fields: not kind, name, from or merge."""
    return [f.name for f in declared_fields(model) if f.name not in ("kind", *LAYER_FIELDS)]


class _Nested:
    """What a structure's resolve rule (registry.Structure.resolve) is handed: the lists of layers its
    fields hold, resolved one level deeper inside the sequences around it, and its fields' positions."""

    def __init__(self, yaml_path: tuple, doc: Expanded, errors: list, standins: frozenset, level: int, around, sealed):
        self.yaml_path, self.doc, self.errors, self.standins, self.level = yaml_path, doc, errors, standins, level
        self.around, self.sealed = around, sealed  # sealed: a user block's use, whose layers reach only each other
        self.captures: list[str] = []  # what its lists' layers capture from the sequences around it
        self.captured: dict[str, tuple[str, ...]] = {}  # the same, by the field holding the list

    def layers(self, items, field: str, prefix: str, reserved: tuple = ()) -> tuple[Node, ...]:
        at, captures = self.yaml_path + (field,), []
        nodes = _resolve_list(
            items,
            at,
            prefix,
            self.doc,
            self.errors,
            reserved,
            self.standins,
            self.level + 1,
            self.around,
            self.sealed,
            captures,
        )
        self.captured[field] = tuple(captures)
        self.captures += [reference for reference in captures if reference not in self.captures]
        return nodes

    def locate(self, field: str) -> Location:
        return self.doc.locate(self.yaml_path + (field,))
