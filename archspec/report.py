"""Formatting only: the per-layer table and totals `archspec check` prints."""

from __future__ import annotations

from .ir import Model, walk
from .shapes import fmt_shape


def table(model: Model, max_depth: int | None = None) -> str:
    rows = [("layer", "kind", "output", "params")]
    for node in walk(model.body):
        depth = node.path.count(".") + 1 if node.path else 0
        if depth == 0 or (max_depth is not None and depth > max_depth):
            continue
        rows.append((node.path, node.kind, fmt_shape(node.out_shape), f"{node.params:,}"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [f"{model.name} ({model.source})", f"input {fmt_shape(model.input_shape)}"]
    for row in rows:
        lines.append(f"  {row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]:>{widths[3]}}")
    total = model.body.params
    lines.append(f"output {fmt_shape(model.body.out_shape)}")
    lines.append(f"Total params: {total:,}")
    lines.append(f"Trainable params: {total:,}")
    return "\n".join(lines)
