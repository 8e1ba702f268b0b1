"""`extends:`: a spec merged over its base (chains allowed, cycles and missing files reported at the
`extends:` line, problems inside a base noted "extended here")."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

from ..core.errors import BAD_EXTENDS, BAD_VALUE, Diagnostic, SpecError, printable
from ..core.limits import current as current_limits
from ..core.limits import how_to_raise
from . import user_blocks
from .load import Document, UnreadableFile, load_file
from .scope import Evaluator, Note, Origin, Part


class Merged(NamedTuple):
    """A spec's top-level parts, vars and overrides, its bases' merged in (base first)."""

    parts: dict[str, Part]
    vars: dict[str, Part]
    patches: list[Part]
    files: list[str]  # the spec's path and its bases', as written


def merged(
    ev: Evaluator, doc: Document, blocks: dict[str, Part], chain: list[str], trace: tuple[Note, ...] = ()
) -> Merged | None:
    """The parts of `doc` over its bases'; its blocks and theirs are added to `blocks`. None where a
    spec or a base is missing or no mapping (reported). `trace` notes, for anything from a base file,
    the `extends:` that brought it in."""
    data = doc.data
    if not isinstance(data, dict):
        message = "a spec is a mapping with archspec, name, input and layers"
        ev.errors.append(Diagnostic(message, BAD_VALUE, doc.locate(()), trace))  # trace: who extended it
        return None
    found = Merged({}, {}, [], [])
    if "extends" in data:
        base = _load_base(ev, doc, data["extends"], chain, trace)
        if base is None:
            return None  # without its base the spec is incomplete: report only that
        extended = ((doc.locate(("extends",)), f"in {base.path}, extended here"), *trace)
        found = merged(ev, base, blocks, chain + [_real_path(doc.path)], extended)
        if found is None:
            return None
    found.files.append(doc.path)
    for key, value in data.items():
        origin = Origin(doc, (key,), tuple(reversed(trace)))
        if key == "vars":
            found.vars.update(ev.var_definitions(value, origin))
        elif key == "blocks":
            user_blocks.definitions(ev, value, origin, blocks)
        elif key == "override":
            found.patches.append(Part(value, origin))
        elif key != "extends":
            found.parts[key] = Part(value, origin)
    return found


def _load_base(ev: Evaluator, doc: Document, target: Any, chain: list[str], trace: tuple[Note, ...]) -> Document | None:
    """The base spec `extends:` names; None, with the problem reported at that line (and, for
    a problem inside the base, noted there: "extended here"), when there is none to merge."""
    origin = Origin(doc, ("extends",))
    if not isinstance(target, str) or not target:
        ev.error("extends takes the path of a base spec, relative to this file", BAD_EXTENDS, origin)
        return None
    written = os.path.normpath(Path(doc.path).parent / target)  # as a person would write it
    path, here = _real_path(written), _real_path(doc.path)
    if path in chain + [here]:
        cycle = " -> ".join(Path(p).name for p in chain + [here, path])
        ev.error(f"extends makes a cycle: {cycle}", BAD_EXTENDS, origin)
        return None
    traced = Origin(doc, ("extends",), tuple(reversed(trace)))  # a base's extends: name who extended it
    if len(chain) + 2 > current_limits().depth:  # the specs above this one, this one and its base
        longer = f"more than {current_limits().depth:,} specs long ({how_to_raise('depth')})"
        ev.error(f"extends: the chain of bases is {longer}", BAD_EXTENDS, traced)
        return None
    try:
        return load_file(written)
    except UnreadableFile as exc:  # missing, a directory, a FIFO, a name the system refuses...
        message = f"extends: no such file {printable(written)}" if exc.missing else f"extends: {exc}"
        ev.error(message, BAD_EXTENDS, traced)
    except SpecError as exc:  # a file, but no spec: too large, not UTF-8 text, not YAML
        note = (doc.locate(("extends",)), f"in {printable(written)}, extended here")
        ev.errors.extend(Diagnostic(d.message, d.code, d.loc, (*d.notes, note, *trace)) for d in exc.diagnostics)
    return None


def _real_path(path: str) -> str:
    """The path with symbolic links resolved, to find cycles; as given where it cannot be (a loop, a NUL byte)."""
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return os.path.abspath(path) if "\0" not in path else path
