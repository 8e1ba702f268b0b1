"""Formatting only: what `archspec check` prints, as a table, as markdown or as JSON.

The table and markdown show one row per layer (blocks too, down to `depth`) and end with totals
the way torchinfo's summary does. The JSON layout is versioned (JSON_VERSION) and documented in
docs/costs.md.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from itertools import starmap
from operator import itemgetter

from ..analyses.costs import Costs, Field, Layer, number_text
from ..core.errors import Diagnostic, printable
from ..core.shape_rules import fmt_shape

JSON_VERSION = 1


_shape_text = lru_cache(maxsize=4096)(fmt_shape)  # a network repeats few shapes many times


def _field_texts(fields: list[Field | None]) -> list[str]:
    """Each field described. Layers without a window share their input's Field object: each object
    is described once, and the rows are filled in without a call each."""
    distinct = {id(field): field for field in fields}
    texts = {key: "-" if field is None else field.describe() for key, field in distinct.items()}
    return [texts[id(field)] for field in fields]


def _cells(attribute: str, text: Callable) -> Callable[[list[Layer]], list[str]]:
    """A column's cells: the text of one field of each row (a column at a time: a spec may have
    100,000 layers, and a call per cell costs more than the cell)."""
    value = itemgetter(Layer._fields.index(attribute))
    return lambda rows: list(map(text, map(value, rows)))


def _column(attribute: str, texts: Callable) -> Callable[[list[Layer]], list[str]]:
    """A column whose cells `texts` makes from all the rows' values at once."""
    value = itemgetter(Layer._fields.index(attribute))
    return lambda rows: texts(list(map(value, rows)))


_PATH, _KIND = itemgetter(Layer._fields.index("path")), itemgetter(Layer._fields.index("kind"))
COLUMNS = {  # name: (heading, right-aligned, the cells of rows)
    "input": ("input", False, _cells("in_shape", _shape_text)),
    "output": ("output", False, _cells("out_shape", _shape_text)),
    "params": ("params", True, _cells("params", "{:,}".format)),
    "macs": ("MACs", True, _cells("macs", "{:,}".format)),
    "field": ("receptive field", False, _column("field", _field_texts)),
    "memory": ("activations", True, _cells("activation_bytes", lambda count: _bytes(count))),  # (defined below)
}
DEFAULT_COLUMNS = ("output", "params", "macs", "field")


def table(costs: Costs, source: str, depth: int | None = None, columns=DEFAULT_COLUMNS) -> str:
    shown = _shown(costs, depth)
    header = ["layer", "kind", *(COLUMNS[c][0] for c in columns)]
    right = [False, False, *(COLUMNS[c][1] for c in columns)]
    # Column by column, and each line by one format string: a spec may have 100,000 layers.
    cells = [list(map(_PATH, shown)), list(map(_KIND, shown))]
    cells += [COLUMNS[c][2](shown) for c in columns]
    widths = [max(len(heading), max(map(len, column), default=0)) for heading, column in zip(header, cells)]
    line = "  " + "  ".join(f"{{:{'>' if r else '<'}{w}}}" for w, r in zip(widths, right))
    lines = [f"{costs.model} ({printable(source)})", f"input {fmt_shape(costs.input_shape)}"]
    lines += map(str.rstrip, starmap(line.format, (header, *zip(*cells))))
    lines += _outputs_table(costs) if costs.outputs else [f"output {fmt_shape(costs.output_shape)}"]
    lines += totals(costs)
    return "\n".join(lines)


OUTPUT_HEADER = ("output", "layer", "shape", "channels", "stride", "receptive field")


def _output_cells(output) -> tuple[str, ...]:
    """An output's row: its name, layer, shape, channels, stride (its reduction against the input,
    per spatial dim where they differ) and receptive field."""
    field, shape = output.field, output.shape
    stride = size = "-"
    if field is not None and field.size and not field.whole:
        jumps = dict.fromkeys(map(number_text, field.jump))
        stride, size = "x".join(jumps), "x".join(map(number_text, field.size))
    elif field is not None and field.whole:
        size = "all"
    channels = f"{shape[0]:,}" if shape else "?"
    return (output.name, output.path, fmt_shape(shape), channels, stride, size)


def _outputs_table(costs: Costs) -> list[str]:
    rows = [OUTPUT_HEADER, *map(_output_cells, costs.outputs)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(OUTPUT_HEADER))]
    right = (False, False, False, True, True, False)
    line = "  " + "  ".join(f"{{:{'>' if r else '<'}{w}}}" for w, r in zip(widths, right))
    return ["outputs", *(line.format(*row).rstrip() for row in rows)]


def markdown(costs: Costs, source: str, depth: int | None = None, columns=DEFAULT_COLUMNS) -> str:
    header = ["layer", "kind", *(COLUMNS[c][0] for c in columns)]
    align = ["---", "---", *("---:" if COLUMNS[c][1] else "---" for c in columns)]
    lines = [f"### {costs.model} (`{printable(source)}`)", "", f"input `{fmt_shape(costs.input_shape)}`", ""]
    lines += ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    shown = _shown(costs, depth)
    cells = [[f"`{row.path}`" for row in shown], [row.kind for row in shown], *(COLUMNS[c][2](shown) for c in columns)]
    for row in zip(*cells):
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    if costs.outputs:
        lines += ["", "| " + " | ".join(OUTPUT_HEADER) + " |", "| --- | --- | --- | ---: | ---: | --- |"]
        lines += ["| " + " | ".join(_output_cells(output)) + " |" for output in costs.outputs]
        lines.append("")
    else:
        lines += ["", f"output `{fmt_shape(costs.output_shape)}`", ""]
    lines += [f"- {line}" for line in totals(costs)]
    return "\n".join(lines)


def totals(costs: Costs) -> list[str]:
    per = "per sample" if costs.batch == 1 else f"at batch {costs.batch}"
    batch = costs.batch
    lines = [
        f"Total params: {costs.params:,}",
        f"Trainable params: {costs.trainable:,}",
        f"Non-trainable params: {costs.params - costs.trainable:,}",
        f"Total mult-adds: {_count(costs.macs * batch)} {per} (FLOPs = 2 x MACs: {_count(costs.flops * batch)})",
        f"Params size ({costs.dtype}): {_bytes(costs.param_bytes)}; buffers: {_bytes(costs.buffer_bytes)}",
        f"Forward activations kept for backward: {_bytes(costs.activation_bytes * batch)} {per}",
        f"Estimated training peak at batch {batch}: {_bytes(costs.peak_training_bytes)} "
        f"(weights + gradients + buffers + input and activations; no optimizer state)",
    ]
    if costs.input_sizes:
        lines.append("Input sizes it accepts: " + "; ".join(sizes.describe() for sizes in costs.input_sizes))
    return lines + [f"note: {note}" for note in costs.notes]


def _shown(costs: Costs, depth: int | None) -> list[Layer]:
    if depth is None:
        return list(costs.layers)
    return [row for row in costs.layers if row.depth <= depth]


def _per(value: int, size: int) -> str:
    """value / size to two decimals; by integers past a float's range (a --batch of 400 digits)."""
    try:
        return f"{value / size:.2f}"
    except OverflowError:
        hundredths = (value * 100 + size // 2) // size
        return f"{hundredths // 100}.{hundredths % 100:02d}"


def _count(value: int) -> str:
    for size, unit in ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "K")):
        if value >= size:
            return f"{value:,} ({_per(value, size)} {unit})"
    return f"{value:,}"


def _bytes(value: int) -> str:
    for size, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if value >= size:
            return f"{_per(value, size)} {unit}"
    return f"{value} B"


# ---------------------------------------------------------------- JSON


def as_json(costs: Costs, source: str, depth: int | None = None) -> dict:
    """One model's report: per-layer rows and totals (docs/costs.md describes every field)."""
    return {
        "file": source,
        "model": costs.model,
        "input": list(costs.input_shape),
        "output": _shape(costs.output_shape),
        "dtype": costs.dtype,
        "batch": costs.batch,
        "layers": [_layer(row) for row in _shown(costs, depth)],
        "totals": {
            "params": costs.params,
            "trainable_params": costs.trainable,
            "macs": costs.macs,
            "flops": costs.flops,
            "param_bytes": costs.param_bytes,
            "buffer_bytes": costs.buffer_bytes,
            "input_bytes": costs.input_bytes,
            "activation_bytes": costs.activation_bytes,
            "peak_training_bytes": costs.peak_training_bytes,
        },
        "input_sizes": [_sizes(sizes) for sizes in costs.input_sizes],
        "notes": list(costs.notes),
        "outputs": [_output(output) for output in costs.outputs],
    }


def _output(output) -> dict:
    field = output.field
    stride = [_number(v) for v in field.jump] if field is not None and not field.whole else None
    return {
        "name": output.name,
        "layer": output.path,
        "shape": _shape(output.shape),
        "channels": output.shape[0] if output.shape else None,
        "stride": stride,
        "receptive_field": _field(field),
    }


def _sizes(sizes) -> dict:
    return {
        "dim": sizes.dim,
        "smallest": sizes.smallest,
        "period": sizes.period,
        "residues": list(sizes.residues),
        "largest": sizes.largest,
        "text": sizes.describe(),
    }


def _layer(row: Layer) -> dict:
    return {
        "path": row.path,
        "kind": row.kind,
        "depth": row.depth,
        "input": _shape(row.in_shape),
        "output": _shape(row.out_shape),
        "params": row.params,
        "macs": row.macs,
        "activation_bytes": row.activation_bytes,
        "receptive_field": _field(row.field),
    }


def _field(field: Field | None) -> dict | None:
    if field is None:
        return None
    return {
        "whole_input": field.whole,
        "size": [_number(v) for v in field.size],
        "jump": [_number(v) for v in field.jump],
        "padding": [_number(v) for v in field.padding],
    }


def _number(value) -> int | float:
    return value.numerator if value.denominator == 1 else float(value)


def _shape(shape) -> list[int] | None:
    return None if shape is None else list(shape)


def diagnostic_json(diagnostic: Diagnostic) -> dict:
    loc = diagnostic.loc
    return {
        "severity": "error",
        "code": str(diagnostic.code),
        "message": diagnostic.message,
        "file": loc.path if loc else None,
        "line": loc.line if loc else None,
        "column": loc.col if loc else None,
        "notes": [_note(at, text) for at, text in diagnostic.notes],
    }


def _note(at, text: str) -> dict:
    return {"file": at and at.path, "line": at and at.line, "column": at and at.col, "message": text}


def unchecked_json(path: str, why: str) -> dict:
    """The error of a file `check` could not check at all (missing, unreadable, a --set for no var
    of it): no line, code `unchecked`; the exit status is 2."""
    return {
        "severity": "error",
        "code": "unchecked",
        "message": why,
        "file": None,
        "line": None,
        "column": None,
        "notes": [],
    }


def document(files: list[dict]) -> dict:
    """The whole of `check --format json`: one entry per spec file, each a report or its errors."""
    return {"format": "archspec-check", "version": JSON_VERSION, "files": files}


# ---------------------------------------------------------------- CI formats


def sarif(diagnostics: list[Diagnostic], version: str, unchecked: list[tuple[str, str]] = ()) -> dict:
    """A SARIF 2.1.0 log of `diagnostics` (GitHub code scanning reads it): one rule per error code.
    The files not checked at all, (path, why), are the invocation's notifications."""
    from ..core.errors import CODES

    rules = list(CODES)
    results = [
        {
            "ruleId": str(d.code),
            "ruleIndex": rules.index(str(d.code)),
            "level": "error",
            "message": {"text": d.message},
            "locations": [_sarif_location(d.loc)] if d.loc else [],
            "relatedLocations": [
                {**_sarif_location(at), "id": i, "message": {"text": text}}
                for i, (at, text) in enumerate(d.notes)
                if at
            ],
        }
        for d in diagnostics
    ]
    driver = {
        "name": "archspec",
        "version": version,
        "rules": [
            {"id": code, "shortDescription": {"text": text}, "defaultConfiguration": {"level": "error"}}
            for code, text in CODES.items()
        ],
    }
    run = {"tool": {"driver": driver}, "results": results, "columnKind": "unicodeCodePoints"}
    if unchecked:
        notifications = [
            {
                "level": "error",
                "message": {"text": why},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": _uri(path)}}}],
            }
            for path, why in unchecked
        ]
        run["invocations"] = [{"executionSuccessful": False, "toolExecutionNotifications": notifications}]
    return {"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0", "runs": [run]}


def _sarif_location(loc) -> dict:
    region = {"startLine": loc.line, "startColumn": loc.col}
    return {"physicalLocation": {"artifactLocation": {"uri": _uri(loc.path)}, "region": region}}


def _uri(path: str) -> str:
    """A file URI for an absolute path; a relative path stays relative (to the repository root in CI)."""
    from pathlib import Path
    from urllib.parse import quote

    file = Path(path)
    return file.as_uri() if file.is_absolute() else quote(file.as_posix())


def github_unchecked(path: str, why: str) -> str:
    """A GitHub Actions error for a file not checked at all: on the file, without a line."""
    return f"::error file={_property(printable(path))},title={_property('archspec [unchecked]')}::{_data(why)}"


def github(diagnostic: Diagnostic) -> str:
    """A GitHub Actions workflow command: the error appears on the spec's line in the pull request."""
    loc = diagnostic.loc
    where = f"file={_property(printable(loc.path))},line={loc.line},col={loc.col}," if loc else ""
    notes = "".join(f"\n{at}: note: {text}" if at else f"\nnote: {text}" for at, text in diagnostic.notes)
    title = _property(f"archspec [{diagnostic.code}]")
    return f"::error {where}title={title}::{_data(diagnostic.message + notes)}"


def _data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")
