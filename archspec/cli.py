"""The command line: the one place that turns user errors into messages and exit statuses.

Exit 0: all good; 1: a spec has errors; 2: archspec was called wrongly (no such file, bad flag).
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

from . import DISTRIBUTION, __version__
from .errors import SpecError, UsageError

EXIT_OK, EXIT_SPEC, EXIT_USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser(argv).parse_args(argv)  # exits 2 on a bad flag
    # The collector would walk every object pydantic makes building its models, and every node of a
    # large spec, again and again, to find almost no cycles: 5% of a `check`. A command is short.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for plugin in args.plugin:
            load_plugin(plugin)
        return args.run(args)
    except UsageError as exc:
        print(f"archspec: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `archspec check ... | head`: the reader left; that is not an error
        sys.stdout = None
        return EXIT_OK
    finally:
        if collecting:
            gc.enable()


COMMANDS = {  # name: one line of help
    "check": "check specs statically; print every layer's shape, params, MACs and receptive field (no torch)",
    "build": "compile a spec into a PyTorch module and run it once",
    "diagram": "print the model as a Mermaid flowchart or Graphviz DOT (no torch)",
    "diff": "compare two specs' state_dicts: which weights of OLD would load into NEW",
    "kinds": "list every layer kind, block, activation and merge (plugins too)",
    "schema": "print the JSON Schema of the spec format, for editors (see docs/editor.md)",
}


def _parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; only the command `argv` names gets its options (argparse is a tenth of a quick
    `check` otherwise). Without argv (or with no command in it), every command gets them."""
    parser = argparse.ArgumentParser(
        prog="archspec", description="Check and compile neural-network architecture specs."
    )
    parser.add_argument("--version", action="version", version=f"{DISTRIBUTION} {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    named = next((word for word in (argv or ()) if not word.startswith("-")), None)
    for name, text in COMMANDS.items():
        command = commands.add_parser(name, help=text)
        if named not in COMMANDS or named == name:
            _OPTIONS[name](command)
    return parser


def _check_options(check) -> None:
    check.description = (
        "Check specs statically and print each layer's shape, parameters, multiply-adds (MACs) and "
        "receptive field, with totals and memory. MACs follow torchinfo's convention (its 'Total mult-adds'): "
        "a convolution counts out_elements x (in_channels/groups x kernel volume + 1 with bias); every other "
        "layer with parameters counts its parameter count once per sample; parameter-free layers count 0. "
        "FLOPs are reported as 2 x MACs. See docs/costs.md."
    )
    check.add_argument("specs", nargs="+", metavar="SPEC", help="spec files (.yaml)")
    check.add_argument("--depth", type=_positive, default=None, help="show layers nested at most this deep")
    check.add_argument(
        "--format",
        choices=("table", "markdown", "json", "sarif", "github"),
        default="table",
        help="how to print: a table (default), markdown, json (reports and errors, docs/costs.md), or only the "
        "errors for CI: sarif (SARIF 2.1.0, for GitHub code scanning) or github (Actions annotations)",
    )
    check.add_argument(
        "--columns",
        type=_columns,
        default=None,
        metavar="LIST",
        help="comma-separated columns of the table: input, output, params, macs, field, memory "
        "(default: output,params,macs,field)",
    )
    check.add_argument("--batch", type=_positive, default=1, help="batch size of the memory totals (default 1)")
    check.add_argument(
        "--dtype", choices=("float32", "float16", "bfloat16", "float64"), default="float32", help="for the memory sizes"
    )
    check.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    _add_input_option(check)
    _add_set_option(check)
    check.set_defaults(run=_check)


def _build_options(build) -> None:
    build.add_argument("spec", metavar="SPEC")
    build.add_argument("--emit-python", action="store_true", help="write standalone PyTorch source instead (no torch)")
    build.add_argument("-o", "--output", metavar="FILE", help="with --emit-python: the file to write (default stdout)")
    build.add_argument("--weights", metavar="FILE", help="load this state_dict file (strictly) before the test run")
    build.add_argument(
        "--partial",
        action="store_true",
        help="with --weights: load only the tensors that fit by name, shape and dtype, and say which",
    )
    _add_input_option(build)
    _add_set_option(build)
    build.set_defaults(run=_build)


def _diagram_options(diagram) -> None:
    diagram.add_argument("spec", metavar="SPEC")
    diagram.add_argument("--format", choices=("mermaid", "dot"), default="mermaid", help="default: mermaid")
    diagram.add_argument("--depth", type=_positive, default=None, help="open blocks at most this deep")
    _add_input_option(diagram)
    _add_set_option(diagram)
    diagram.set_defaults(run=_diagram)


def _diff_options(diff) -> None:
    diff.description = (
        "Compare the state_dicts of two specs, key by key: the tensors kept with the same shape (their "
        "weights transfer), kept with a new shape, removed and added, and the parameter difference. "
        "Keys are layer names, so inserting a layer moves no other key. Builds on torch's meta device: "
        "nothing is allocated. `build --weights FILE --partial` loads what transfers."
    )
    diff.add_argument("old", metavar="OLD", help="the spec the weights were trained for")
    diff.add_argument("new", metavar="NEW", help="the changed spec (may be OLD again, with --set-new)")
    diff.add_argument("--format", choices=("text", "json"), default="text", help="default: text")
    diff.add_argument("--all", action="store_true", help="list every key, the kept ones too")
    for side in ("old", "new"):
        diff.add_argument(
            f"--set-{side}",
            action="append",
            default=[],
            metavar="VAR=VALUE",
            type=_override,
            help=f"override a var of {side.upper()} only (repeatable)",
        )
    _add_input_option(diff)
    _add_set_option(diff)
    diff.set_defaults(run=_diff)


def _kinds_options(kinds) -> None:
    kinds.add_argument("--plugin", action="append", default=[], metavar="MODULE", help="import this plugin first")
    kinds.set_defaults(run=_kinds)


def _schema_options(schema) -> None:
    schema.description = (
        "Print the JSON Schema (draft 2020-12) of the spec format, generated from the registered kinds "
        "(plugins too): point an editor's YAML extension at it for completion and checks while typing. "
        "The schema of the built-in kinds ships as archspec/spec.schema.json."
    )
    schema.add_argument("-o", "--output", metavar="FILE", help="write it to FILE (default stdout)")
    schema.add_argument("--plugin", action="append", default=[], metavar="MODULE", help="import this plugin first")
    schema.set_defaults(run=_schema)


_OPTIONS = {
    "check": _check_options,
    "build": _build_options,
    "diagram": _diagram_options,
    "diff": _diff_options,
    "kinds": _kinds_options,
    "schema": _schema_options,
}


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _columns(text: str) -> tuple[str, ...]:
    from .report import COLUMNS

    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in COLUMNS]
    if unknown or not names:
        named = unknown[0] if unknown else text
        raise argparse.ArgumentTypeError(f"unknown column {named!r}; choose from {', '.join(COLUMNS)}")
    return names


def _input_shape(text: str) -> tuple[int, ...]:
    parts = text.lower().replace(",", "x").split("x")
    if not 2 <= len(parts) <= 4 or not all(part.strip().isdigit() and int(part) >= 1 for part in parts):
        raise argparse.ArgumentTypeError(f"expected CxHxW (channels, then 1 to 3 sizes >= 1), got {text!r}")
    return tuple(int(part) for part in parts)


def _add_input_option(command) -> None:
    command.add_argument(
        "--input",
        type=_input_shape,
        default=None,
        metavar="CxHxW",
        help="use this input shape instead of the spec's (one sample, e.g. 3x512x512)",
    )


def _add_set_option(command) -> None:
    command.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="VAR=VALUE",
        type=_override,
        help="override a var of the spec (repeatable), e.g. --set num_classes=10",
    )
    command.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import this module or .py file first: it registers layer kinds of its own "
        "(repeatable; see docs/extending.md). Specs never import code.",
    )


def load_plugin(name: str) -> None:
    """Import a plugin the user named on the command line: a module path, or a .py file."""
    import importlib
    import importlib.util

    try:
        if name.endswith(".py"):
            path = Path(name)
            if not path.is_file():
                raise UsageError(f"no such plugin file: {name}")
            spec = importlib.util.spec_from_file_location(f"archspec_plugin_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            importlib.import_module(name)
    except UsageError:
        raise
    except Exception as exc:  # the plugin's own code failed: say which plugin, without our traceback
        raise UsageError(f"plugin {name} failed to load: {type(exc).__name__}: {exc}") from None


def _override(text: str) -> tuple[str, object]:
    import yaml

    name, sep, value = text.partition("=")
    if not sep or not name.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"expected VAR=VALUE, got {text!r}")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        parsed = None
    numbers = parsed if isinstance(parsed, list) else [parsed]
    if not numbers or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
        raise argparse.ArgumentTypeError(f"the value of {name.strip()} must be a number or a list of numbers")
    return name.strip(), parsed


def _analyze(path: str, overrides: list[tuple[str, object]] = (), input_shape: tuple[int, ...] | None = None):
    """The shaped IR, or the errors of the spec as formatted text."""
    file = Path(path)
    if not file.exists():
        raise UsageError(f"no such file: {path}")
    if file.is_dir():
        raise UsageError(f"{path} is a directory, not a spec file")
    from .pipeline import analyze

    try:
        return analyze(file, dict(overrides), input_shape), None
    except SpecError as exc:
        return None, exc


def _report_errors(exc: SpecError, summary: bool = True) -> None:
    for diagnostic in exc.diagnostics:
        print(diagnostic.format(), file=sys.stderr)
    if summary:
        _summary(len(exc.diagnostics))


def _summary(count: int) -> None:
    print(f"found {count} error{'s' if count != 1 else ''}", file=sys.stderr)


def _check(args) -> int:
    from . import report
    from .costs import measure

    worst, error_count, files, found = EXIT_OK, 0, [], []
    for path in args.specs:
        try:
            model, exc = _analyze(path, args.set, args.input)
        except UsageError as usage:
            print(f"archspec: error: {usage}", file=sys.stderr)
            worst = max(worst, EXIT_USAGE)
            continue
        if exc is not None:
            found += exc.diagnostics
            if args.format == "json":
                files.append({"file": path, "errors": [report.diagnostic_json(d) for d in exc.diagnostics]})
            elif args.format == "github":
                print("\n".join(report.github(d) for d in exc.diagnostics))
            elif args.format != "sarif":
                _report_errors(exc, summary=False)
            error_count += len(exc.diagnostics)
            worst = max(worst, EXIT_SPEC)
            continue
        if args.format in ("sarif", "github") or (args.quiet and args.format != "json"):
            continue  # errors only: no costs to compute
        costs = measure(model, args.batch, args.dtype)
        if args.format == "json":
            files.append({**report.as_json(costs, path, args.depth), "errors": []})
        elif not args.quiet:
            form = report.markdown if args.format == "markdown" else report.table
            print(form(costs, path, args.depth, args.columns or report.DEFAULT_COLUMNS))
            print()
    if args.format in ("json", "sarif"):
        import json

        document = report.document(files) if args.format == "json" else report.sarif(found, __version__)
        print(json.dumps(document, indent=1))
    elif error_count and args.format != "github":
        _summary(error_count)
    return worst


def _diagram(args) -> int:
    from . import diagram

    model, exc = _analyze(args.spec, args.set, args.input)
    if exc is not None:
        _report_errors(exc)
        return EXIT_SPEC
    if args.format == "dot":
        sys.stdout.write(diagram.dot(model, args.depth) + "\n")
        return EXIT_OK
    edges = len(diagram.draw(model, args.depth).edges)
    if edges > MERMAID_MAX_EDGES:
        print(
            f"archspec: warning: {edges} edges; Mermaid renders at most {MERMAID_MAX_EDGES} by default (GitHub "
            f"refuses larger charts): try --depth {_depth_within(diagram, model)} or --format dot",
            file=sys.stderr,
        )
    sys.stdout.write(diagram.mermaid(model, args.depth) + "\n")
    return EXIT_OK


MERMAID_MAX_EDGES = 500  # Mermaid's default maxEdges


def _depth_within(diagram, model) -> int:
    """The largest depth whose chart Mermaid renders with its default limits (at least 1)."""
    depth = 1
    while depth < 16 and len(diagram.draw(model, depth + 1).edges) <= MERMAID_MAX_EDGES:
        depth += 1
    return depth


def _diff(args) -> int:
    sides = [(args.old, [*args.set, *args.set_old]), (args.new, [*args.set, *args.set_new])]
    analyzed = [_analyze(path, overrides, args.input) for path, overrides in sides]
    for _, exc in analyzed:
        if exc is not None:
            _report_errors(exc)
    if any(exc is not None for _, exc in analyzed):
        return EXIT_SPEC
    _quiet_torch_import()
    from . import diff

    (old, _), (new, _) = analyzed
    found = diff.compare(diff.manifest(old), diff.manifest(new))
    if args.format == "json":
        import json

        described = [
            {"file": path, "name": model.name, "set": dict(overrides)}
            for (path, overrides), (model, _) in zip(sides, analyzed)
        ]
        print(json.dumps(diff.as_json(found, *described), indent=1))
    else:
        print(diff.text(found, *(_label(path, overrides) for path, overrides in sides), show_all=args.all))
    return EXIT_OK


def _label(path: str, overrides) -> str:
    settings = ", ".join(f"{name}={value}" for name, value in overrides)
    return f"{path} ({settings})" if settings else path


def _quiet_torch_import() -> None:
    import warnings

    with warnings.catch_warnings():  # torch's "Failed to initialize NumPy" where numpy is absent: not needed here
        warnings.filterwarnings("ignore", message="Failed to initialize NumPy", category=UserWarning)
        import torch  # noqa: F401


def _schema(args) -> int:
    from .editor_schema import render

    text = render()
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        write_atomically(Path(args.output), text)
    except OSError as exc:
        raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    return EXIT_OK


def _kinds(args) -> int:
    from . import registry, schema

    rows = [("kind", "fields (primary first)", "what it is")]
    for name, kind in registry.KINDS.items():
        fields = schema.fields_of(name)
        primary = getattr(kind.fields, "primary", None)
        fields = ([primary] if primary else []) + [f for f in fields if f not in (primary, "name", "from", "merge")]
        rows.append((name, ", ".join(fields) or "-", kind.doc))
    rows += [(f"merge: {name}", "-", merge.doc) for name, merge in registry.MERGES.items()]
    width = [max(len(row[i]) for row in rows) for i in range(2)]
    for row in rows:
        print(f"{row[0]:<{width[0]}}  {row[1]:<{width[1]}}  {row[2]}")
    print(f"\nresidual activations: {', '.join(registry.ACTIVATIONS)}")
    return EXIT_OK


def _build(args) -> int:
    if args.output and not args.emit_python:
        raise UsageError("-o/--output goes with --emit-python")
    if args.weights and args.emit_python:
        raise UsageError("--weights goes with a live build, not --emit-python")
    if args.partial and not args.weights:
        raise UsageError("--partial goes with --weights")
    if args.output:
        _check_writable(Path(args.output))
    if args.weights and not Path(args.weights).is_file():
        raise UsageError(f"no such weights file: {args.weights}")
    model, exc = _analyze(args.spec, args.set, args.input)
    if exc is not None:
        _report_errors(exc)
        return EXIT_SPEC
    if args.emit_python:
        try:
            return _emit(model, args.output, args.spec, dict(args.set))
        except SpecError as exc:  # a kind the emitter cannot write
            _report_errors(exc)
            return EXIT_SPEC
    _quiet_torch_import()
    import torch

    from .shapes import fmt_shape
    from .torch_builder import build_model

    module = build_model(model).eval()
    if args.weights:
        from .errors import WeightsError
        from .weights import load_weights

        try:
            transfer = load_weights(module, args.weights, strict=not args.partial)
        except WeightsError as exc:
            print(f"archspec: error: {exc}", file=sys.stderr)
            return EXIT_SPEC
        if transfer is not None:
            from .diff import text

            print(text(transfer, args.weights, args.spec), file=sys.stderr)
    with torch.no_grad():
        out = module(torch.zeros(1, *model.input_shape))
    print(
        f"built {model.name}: input {fmt_shape(model.input_shape)} -> output {fmt_shape(tuple(out.shape[1:]))}, "
        f"{model.body.params:,} params"
        + (f", {'some ' if args.partial else ''}weights from {args.weights}" if args.weights else "")
    )
    return EXIT_OK


def _emit(model, output: str | None, spec: str, overrides: dict) -> int:
    from .emit import num_classes_variant, render

    source = render(model, num_classes_variant(Path(spec), overrides, model))
    if output is None:
        sys.stdout.write(source)
    else:
        try:
            write_atomically(Path(output), source)
        except OSError as exc:
            raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None
    return EXIT_OK


def _check_writable(path: Path) -> None:
    if path.is_dir():
        raise UsageError(f"{path} is a directory; give a file name to write the model to")
    if not path.parent.is_dir():
        raise UsageError(f"cannot write {path}: the folder {path.parent} does not exist")


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` only by a complete new file: write a temporary file beside it, then rename."""
    import os
    import tempfile

    _check_writable(path)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
