"""The front half every backend shares: load -> validate -> resolve -> infer shapes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import ir, load, schema, shapes

SpecSource = Any  # a path, YAML text, or already parsed data (dict or schema.Spec)


def analyze(source: SpecSource) -> ir.Model:
    """The shaped IR of a spec; raises SpecError with every problem found."""
    doc = read(source)
    spec = source if isinstance(source, schema.Spec) else schema.validate(doc)
    model = ir.resolve(spec, doc)
    return shapes.infer(model)


def read(source: SpecSource) -> load.Document:
    if isinstance(source, load.Document):
        return source
    if isinstance(source, schema.Spec):
        return load.Document("<spec>", source.model_dump())
    if isinstance(source, dict):
        return load.Document("<dict>", source)
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and _looks_like_path(source)):
        return load.load_file(source)
    if isinstance(source, str):
        return load.load_text(source)
    raise TypeError(f"a spec is a path, YAML text, a dict or a schema.Spec, not {type(source).__name__}")


def _looks_like_path(text: str) -> bool:
    return text.endswith((".yaml", ".yml")) or Path(text).is_file()
