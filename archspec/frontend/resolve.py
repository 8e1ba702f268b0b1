"""Stage 3: resolve validated spec objects into the IR (archspec.core.ir): names and paths, `from:`
references checked, each layer's validated fields as its read-only args."""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING

from .. import registry
from ..core.errors import BAD_NAME, BAD_REFERENCE, DUPLICATE_NAME, LIMIT, Diagnostic, Location, SpecError, did_you_mean
from ..core.ir import INPUT, Block, Model, Node, Op, replace
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
    try:
        children = _resolve_list(spec.layers, ("layers",), "", doc, errors, standins=standins)
    except RecursionError:  # only with limit depth raised past what Python's stack takes
        message = f"the spec nests too deeply for Python's stack; lower the nesting or {how_to_raise('depth')}"
        raise SpecError([*errors, Diagnostic(message, LIMIT, root_loc)]) from None
    if raising and errors:
        raise SpecError(errors)
    body = Block("model", "", "", root_loc, "sequential", children)
    return Model(spec.name, doc.path, tuple(spec.input), body, MappingProxyType(dict(doc.vars)), doc.files)


def _resolve_list(
    layers, yaml_path: tuple, prefix: str, doc: Expanded, errors, reserved=(), standins=frozenset(), level: int = 1
):
    """The nodes of a list of layers `level` lists deep (expansion bounds that by limit depth; a
    schema.Spec given as such is bounded here)."""
    nodes = []
    seen: dict[str, Location] = {}
    built: dict[str, Node] = {}
    exports: dict[str, list[str]] = {}  # sibling name -> inner layers a later `from:` reaches into
    too_deep = level >= current_limits().depth
    for i, layer in enumerate(layers):
        path = yaml_path + (i,)
        name = layer.name or str(i)
        loc, notes = doc.place(path)
        fields_at = path + (layer.kind,)
        reachable = _check_references(layer, built, exports, doc, fields_at, notes, errors)
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
        elif not reachable:  # what it reads is unknown: stood in for, so the layers after it are checked
            nodes.append(Op(STANDIN, name, qualified, loc, notes=notes, standin=True))
            built.setdefault(name, nodes[-1])
            continue
        else:
            node = _resolve(layer, path, name, qualified, loc, doc, errors, standins, level)
        changes = _wiring(layer, notes) if layer.sources or layer.merge or notes else {}
        if path in standins:
            changes["standin"] = True
        if path in doc.block_uses and isinstance(node, Block):  # not a stand-in for a use that failed
            changes.update(kind=doc.block_uses[path], block_args=doc.block_args[path])
        if changes:  # most layers take their input from the layer before and come from no block
            node = replace(node, **changes)
        nodes.append(node)
        built.setdefault(name, node)
    return tuple(_exporting(node, exports[node.name]) if node.name in exports else node for node in nodes)


def _check_references(layer, built: dict, exports: dict, doc: Expanded, fields_at: tuple, notes: tuple, errors) -> bool:
    """Report the `from:` references that read no earlier layer; record the inner layers the others
    reach into (`enc.conv2`), which that sibling must then export. Whether all read one."""
    reachable = True
    for source in layer.sources or ():
        problem = _unreachable(source, built)
        if problem:
            errors.append(Diagnostic(f"from: {problem}", BAD_REFERENCE, doc.locate(fields_at + ("from",)), notes))
            reachable = False
        elif "." in source:
            head, _, rest = source.partition(".")
            wanted = exports.setdefault(head, [])
            if rest not in wanted:
                wanted.append(rest)
    return reachable


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


def _wiring(layer, notes: tuple) -> dict:
    """The fields of a layer's node that say where its input comes from and how it was made, where
    they differ from the defaults."""
    wiring = {}
    if layer.sources:
        wiring["inputs"] = layer.sources
        wiring["merge"] = layer.merge or (merges.DEFAULT if len(layer.sources) > 1 else None)
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


def _resolve(layer, entry_path, name, path, loc, doc, errors, standins, level) -> Node:
    """The node of `layer`, the entry at `entry_path` of its expanded list."""
    kind = registry.kind(layer.kind)
    if isinstance(kind, registry.Structure):
        return kind.resolve(layer, name, path, loc, _Nested(entry_path + (layer.kind,), doc, errors, standins, level))
    args = MappingProxyType({field: getattr(layer, field) for field in _fields(type(layer))})
    if isinstance(kind, registry.BlockKind):
        return Block(layer.kind, name, path, loc, "sequential", (), args=args, expanded=False)
    return Op(layer.kind, name, path, loc, args)


def _fields(model: type) -> list[str]:
    """A kind's own fields: not kind, name, from or merge."""
    return [f.name for f in declared_fields(model) if f.name not in ("kind", *LAYER_FIELDS)]


class _Nested:
    """What a structure's resolve rule (registry.Structure.resolve) is handed: the lists of layers its
    fields hold, resolved one level deeper, and its fields' positions."""

    def __init__(self, yaml_path: tuple, doc: Expanded, errors: list, standins: frozenset, level: int):
        self.yaml_path, self.doc, self.errors, self.standins, self.level = yaml_path, doc, errors, standins, level

    def layers(self, items, field: str, prefix: str, reserved: tuple = ()) -> tuple[Node, ...]:
        at = self.yaml_path + (field,)
        return _resolve_list(items, at, prefix, self.doc, self.errors, reserved, self.standins, self.level + 1)

    def locate(self, field: str) -> Location:
        return self.doc.locate(self.yaml_path + (field,))
