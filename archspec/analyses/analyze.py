"""The front half every backend shares: load -> validate -> resolve -> infer shapes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ..core.errors import SpecError, in_file_order
from ..core.ir import Model
from ..core.limits import Limits, applied
from ..frontend import expand, load, resolve
from ..frontend import validate as schema
from ..registry import fields
from . import inplace, shapes

SpecSource = Any  # a path, YAML text, or already parsed data (dict or schema.Spec)


def analyze(
    source: SpecSource,
    overrides: dict[str, Any] | None = None,
    input_shape: tuple[int, ...] | None = None,
    limits: Limits | None = None,
) -> Model:
    """The shaped IR of a spec; raises SpecError with every problem found.

    `overrides` replace the values of the spec's vars (UsageError for a var it doesn't have);
    `input_shape` (channels, *spatial) replaces the spec's input, to try another size; `limits`
    bound the work (archspec.Limits; the defaults, or those of an enclosing `limits.applied`).
    """
    with applied(limits):
        return _analyze(source, overrides, input_shape)


def _analyze(source: SpecSource, overrides: dict[str, Any] | None, input_shape: tuple[int, ...] | None) -> Model:
    doc = read(source)
    errors: list = []
    if schema.is_spec(source) and input_shape is None:
        located = expand.Expanded(doc.path, doc.data, {(): expand.Origin(doc, ())})
        spec, standins = source, frozenset()
    else:
        located = expand.expand(doc, overrides)
        if input_shape is not None and isinstance(located.data, dict):
            located = replace(located, data={**located.data, "input": list(input_shape)})
        spec, errors, standins = schema.validate_partially(located)
        if spec is None:
            raise SpecError(in_file_order(errors))
    try:  # with wrong layers stood in for, every layer that does not depend on them is still checked
        model = inplace.decide(shapes.infer(resolve.resolve(spec, located, standins, errors)))
    except SpecError as exc:
        errors += exc.diagnostics
    if errors:
        raise SpecError(in_file_order(errors))
    return model


def read(source: SpecSource) -> load.Document:
    if isinstance(source, load.Document):
        return source
    if schema.is_spec(source):
        return load.Document("<spec>", fields.dump(source))
    if isinstance(source, dict):
        return load.Document("<dict>", source)
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and _looks_like_path(source)):
        return load.load_file(source)
    if isinstance(source, str):
        return load.load_text(source)
    raise TypeError(f"a spec is a path, YAML text, a dict or a schema.Spec, not {type(source).__name__}")


def _looks_like_path(text: str) -> bool:
    """One line of text is a path if it names a .yaml file or an existing file; a flow mapping
    (`{archspec: 1, ...}`) is YAML text, and a name the system refuses (a component over 255 bytes,
    a NUL byte) is no file."""
    if text.lstrip().startswith("{"):
        return False
    if text.endswith((".yaml", ".yml")):
        return True
    try:
        return Path(text).is_file()
    except (OSError, ValueError):
        return False
