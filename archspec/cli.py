"""The command line: the one place that turns user errors into messages and exit statuses.

Exit 0: all good; 1: a spec has errors (a limit it would exceed too), or a weights file does not
load; 2: archspec was called wrongly (no such file, bad flag, an output it must not write), or its
output cannot be written (a full disk). docs/limits.md says what each hostile input ends in.
"""

from __future__ import annotations

import argparse
import gc
import os
import stat
import sys
from pathlib import Path

from .core.errors import SpecError, UsageError, printable, terminal_safe
from .core.limits import applied, parse
from .core.version import DISTRIBUTION, __version__

EXIT_OK, EXIT_SPEC, EXIT_USAGE = 0, 1, 2


def run() -> None:
    """The `archspec` command: main(), then a hard exit, as mypy's `hard_exit`: the interpreter's own
    teardown of every module a command imported (pydantic's models, torch's) adds tens of
    milliseconds to each command, for memory the system takes back at once."""
    status = main()
    for stream in (sys.stdout, sys.stderr):  # what os._exit would not write
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that left, a closed stream: main() has said so already
            pass
    os._exit(status)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # The collector would walk every object pydantic makes building its models, and every node of a
    # large spec, again and again, to find almost no cycles: 5% of a `check`. A command is short.
    collecting = gc.isenabled()
    gc.disable()
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Output(stdout), _Safe(stderr)
    try:
        args = _parser(argv).parse_args(argv)  # exits 2 on a bad flag, which it names as written
        plugins = {os.path.realpath(p) if p.endswith(".py") else p: p for p in args.plugin}  # each once, as imports
        args.protected = tuple((path, "the plugin") for path in map(load_plugin, plugins.values()) if path)
        with applied(parse(args.limit) if getattr(args, "limit", None) else None):
            status = args.run(args)
        sys.stdout.flush()  # here, not at exit: a full disk is reported like any other error
        return status
    except UsageError as exc:
        print(f"archspec: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except OutputError as exc:  # stdout is a full disk, a broken device...
        print(f"archspec: error: cannot write output: {exc}", file=sys.stderr)
        _discard(stdout)
        return EXIT_USAGE
    except BrokenPipeError:  # `archspec check ... | head`: the reader left; that is not an error
        _discard(stdout)
        return EXIT_OK
    finally:
        if isinstance(sys.stdout, _Output):
            sys.stdout = stdout
        if isinstance(sys.stderr, _Safe):
            sys.stderr = stderr
        if collecting:
            gc.enable()


class OutputError(Exception):
    """Writing to stdout failed (not because its reader left): the message is the system's reason."""


class _Safe:
    """sys.stderr while a command runs: what is written has every terminal control escaped, so no
    path, key or name from outside can clear the screen, recolour or reorder it, or forge a line."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        return _encodable(self._stream, terminal_safe(text))

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


class _Output(_Safe):
    """sys.stdout while a command runs: escaped as stderr is, and a failed write becomes OutputError,
    so that it is reported as the output's (a closed pipe stays a BrokenPipeError, which ends a
    command quietly)."""

    def write(self, text: str) -> int:
        try:
            return _encodable(self._stream, terminal_safe(text))
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(exc.strerror or str(exc)) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(exc.strerror or str(exc)) from None


def _encodable(stream, text: str) -> int:
    """Write `text`, what the stream's encoding cannot hold escaped (`\\xe9` under PYTHONIOENCODING=ascii)."""
    try:
        return stream.write(text)
    except UnicodeEncodeError:
        encoding = getattr(stream, "encoding", None) or "ascii"
        return stream.write(text.encode(encoding, "backslashreplace").decode(encoding))


def _discard(stream) -> None:
    """Point stdout's file descriptor at the null device, so the output still buffered is dropped at
    exit instead of failing again there ("Exception ignored ... BrokenPipeError")."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, stream.fileno())
        finally:
            os.close(null)
    except (OSError, ValueError, AttributeError):  # no file descriptor (a test's capture): nothing buffered there
        pass


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
    _add_max_errors_option(check, machine_formats=True)
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
    build.add_argument(
        "--memory-efficient",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="checkpoint every dense block as torchvision's memory_efficient=True does (--no-memory-efficient: "
        "none); default: each block's own memory_efficient field",
    )
    _add_max_errors_option(build)
    _add_input_option(build)
    _add_set_option(build)
    build.set_defaults(run=_build)


def _diagram_options(diagram) -> None:
    diagram.add_argument("spec", metavar="SPEC")
    diagram.add_argument("--format", choices=("mermaid", "dot"), default="mermaid", help="default: mermaid")
    diagram.add_argument("--depth", type=_positive, default=None, help="open blocks at most this deep")
    _add_max_errors_option(diagram)
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
    _add_max_errors_option(diff)
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


def _count(text: str) -> int:
    """A whole number >= 0 (--max-errors, where 0 means no bound)."""
    cleaned = text.strip()
    if not cleaned.isdigit() or len(cleaned) > 18:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(cleaned)


def _columns(text: str) -> tuple[str, ...]:
    from .reports.table import COLUMNS

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


MAX_ERRORS = 20  # errors shown per file unless --max-errors says otherwise


def _add_max_errors_option(command, machine_formats: bool = False) -> None:
    command.add_argument(
        "--max-errors",
        type=_count,
        default=MAX_ERRORS,
        metavar="N",
        help=f"show at most N errors per file (default {MAX_ERRORS}; 0: all); the count at the end counts them all"
        + ("; json and sarif always carry every error" if machine_formats else ""),
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
    command.add_argument(
        "--limit",
        action="append",
        default=[],
        type=_limit,
        metavar="NAME=VALUE",
        help="raise (or lower) a bound on the work a spec may cause, e.g. --limit layers=5000000 or "
        "--limit memory=64G (repeatable; the limits and their defaults: docs/limits.md)",
    )


def load_plugin(name: str) -> str | None:
    """Import a plugin the user named on the command line, a module path or a .py file; its file,
    which no output may replace."""
    import importlib.util

    try:
        if name.endswith(".py"):
            path = Path(name)
            if not path.is_file():
                raise UsageError(f"no such plugin file: {printable(name)}")
            spec = importlib.util.spec_from_file_location(f"archspec_plugin_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
            return name
        return getattr(importlib.import_module(name), "__file__", None)
    except UsageError:
        raise
    except (Exception, SystemExit) as exc:  # the plugin's own code failed, or exited: say which, no traceback
        why = printable(f"{type(exc).__name__}: {exc}", 500)
        raise UsageError(f"plugin {printable(name)} failed to load: {why}") from None


def _limit(text: str) -> str:
    """One --limit NAME=VALUE, checked here (exit 2 on a bad one); main folds them into Limits."""
    from .core.limits import parse

    try:
        parse([text])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _override(text: str) -> tuple[str, object]:
    """`--set VAR=VALUE`: VALUE read as a spec's values are (the same reader, limits and YAML 1.1 checks)."""
    from .frontend.load import load_text

    name, sep, value = text.partition("=")
    if not sep or not name.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"expected VAR=VALUE, got {text!r}")
    try:
        parsed = load_text(value, "--set").data if value.strip() else None
    except SpecError as exc:
        raise argparse.ArgumentTypeError(f"{name.strip()}: {exc.diagnostics[0].message}") from None
    numbers = parsed if isinstance(parsed, list) else [parsed]
    if not numbers or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
        raise argparse.ArgumentTypeError(f"the value of {name.strip()} must be a number or a list of numbers")
    return name.strip(), parsed


def _analyze(path: str, overrides: list[tuple[str, object]] = (), input_shape: tuple[int, ...] | None = None):
    """The shaped IR, or the errors of the spec. A path that names no regular file (missing, a
    directory, a FIFO, a device, a name the system refuses) is a UsageError (load.UnreadableFile)."""
    from .analyses.analyze import analyze
    from .core.errors import printable
    from .frontend.load import UnreadableFile

    try:
        return analyze(Path(path), dict(overrides), input_shape), None
    except SpecError as exc:
        return None, exc
    except UnreadableFile:
        raise
    except UsageError as exc:  # a --set for no var of this spec: say which, when several are checked
        raise UsageError(f"{printable(path)}: {exc}") from None


def _report_errors(exc: SpecError, summary: bool = True, shown: int = MAX_ERRORS) -> None:
    """The diagnostics on stderr, at most `shown` of them (0: all), then how many there were."""
    for diagnostic in exc.diagnostics[: shown or None]:
        print(diagnostic.format(), file=sys.stderr)
    _more(len(exc.diagnostics), shown)
    if summary:
        _summary(len(exc.diagnostics))


def _more(count: int, shown: int) -> None:
    """After the first `shown` of a file's `count` errors: how many more there are (0 shows all)."""
    if shown and count > shown:
        more = count - shown
        print(
            f"... and {more:,} more error{'s' if more != 1 else ''} (--max-errors N or --max-errors 0 for all)",
            file=sys.stderr,
        )


def _summary(count: int) -> None:
    print(f"found {count} error{'s' if count != 1 else ''}", file=sys.stderr)


def _check(args) -> int:
    from .analyses.costs import measure
    from .reports import table as report

    worst, error_count, files, found = EXIT_OK, 0, [], []
    unchecked: list[tuple[str, str]] = []  # (path, why) of the files not checked at all
    for path in args.specs:
        try:
            model, exc = _analyze(path, args.set, args.input)
        except UsageError as usage:  # the file is left out of the report: say so in it too
            print(f"archspec: error: {usage}", file=sys.stderr)
            worst = max(worst, EXIT_USAGE)
            unchecked.append((path, str(usage)))
            if args.format == "json":
                files.append({"file": path, "errors": [report.unchecked_json(path, str(usage))]})
            elif args.format == "github":
                print(report.github_unchecked(path, str(usage)))
            continue
        costs = None
        if exc is None and not (args.format in ("sarif", "github") or (args.quiet and args.format != "json")):
            try:
                costs = measure(model, args.batch, args.dtype)
            except SpecError as failed:  # a plugin's rule that failed while costing
                exc = failed
        if exc is not None:
            found += exc.diagnostics
            if args.format == "json":
                files.append({"file": path, "errors": [report.diagnostic_json(d) for d in exc.diagnostics]})
            elif args.format == "github":
                print("\n".join(report.github(d) for d in exc.diagnostics[: args.max_errors or None]))
                _more(len(exc.diagnostics), args.max_errors)
            elif args.format != "sarif":
                _report_errors(exc, summary=False, shown=args.max_errors)
            error_count += len(exc.diagnostics)
            worst = max(worst, EXIT_SPEC)
            continue
        if costs is None:
            continue  # errors only: no costs to compute
        if args.format == "json":
            files.append({**report.as_json(costs, path, args.depth), "errors": []})
        elif not args.quiet:
            form = report.markdown if args.format == "markdown" else report.table
            print(form(costs, path, args.depth, args.columns or report.DEFAULT_COLUMNS))
            print()
    if args.format in ("json", "sarif"):
        import json

        document = report.document(files) if args.format == "json" else report.sarif(found, __version__, unchecked)
        print(json.dumps(document, indent=1))
    elif error_count and args.format != "github":
        _summary(error_count)
    return worst


def _diagram(args) -> int:
    from .reports import diagram

    model, exc = _analyze(args.spec, args.set, args.input)
    if exc is not None:
        _report_errors(exc, shown=args.max_errors)
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
            _report_errors(exc, shown=args.max_errors)
    if any(exc is not None for _, exc in analyzed):
        return EXIT_SPEC
    _quiet_torch_import()
    from .backends import statedicts as diff

    (old, _), (new, _) = analyzed
    try:
        found = diff.compare(diff.manifest(old), diff.manifest(new))
    except SpecError as exc:  # a plugin's build rule that failed
        _report_errors(exc, shown=args.max_errors)
        return EXIT_SPEC
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
    from .reports.editor_schema import render

    text = render()
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    write_atomically(args.output, text, protect=args.protected)
    return EXIT_OK


def _kinds(args) -> int:
    from . import registry
    from .frontend import validate as schema

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
    _check_build_options(args)
    model, exc = _analyze(args.spec, args.set, args.input)
    if exc is not None:
        _report_errors(exc, shown=args.max_errors)
        return EXIT_SPEC
    if args.emit_python:
        try:
            bases = [(base, "a base of the spec,") for base in model.files if base != model.source]
            protect = ((args.spec, "the spec"), *bases, *args.protected)
            return _emit(model, args.output, args.spec, dict(args.set), args.memory_efficient, protect)
        except SpecError as exc:  # a kind the emitter cannot write
            _report_errors(exc, shown=args.max_errors)
            return EXIT_SPEC
    return _build_live(args, model)


def _check_build_options(args) -> None:
    """UsageError for options that do not go together or name an output or weights that cannot be."""
    if args.output and not args.emit_python:
        raise UsageError("-o/--output goes with --emit-python")
    if args.weights and args.emit_python:
        raise UsageError("--weights goes with a live build, not --emit-python")
    if args.partial and not args.weights:
        raise UsageError("--partial goes with --weights")
    if args.output:
        _output_target(args.output, ((args.spec, "the spec"), *args.protected))  # before the work: a usage error now
    if args.weights:
        try:
            os.stat(args.weights)  # what it is (a FIFO, a device, no state_dict) weights.py says, naming it
        except FileNotFoundError:
            raise UsageError(f"no such weights file: {args.weights}") from None
        except OSError as exc:
            raise UsageError(f"cannot read weights file {args.weights}: {exc.strerror or exc}") from None


def _build_live(args, model) -> int:
    """Build the module (loading --weights) and run it once on zeros."""
    _quiet_torch_import()
    import torch

    from .backends.live import build_model
    from .core.errors import WeightsError
    from .core.shape_rules import fmt_shape

    try:
        from .kinds.blocks import memory_efficient as dense_memory_efficient

        module = build_model(dense_memory_efficient(model, args.memory_efficient)).eval()  # SpecError: no room
        if args.weights:
            from .backends.weights import load_weights

            transfer = load_weights(module, args.weights, strict=not args.partial)
            if transfer is not None:
                from .backends.statedicts import text

                print(text(transfer, args.weights, args.spec), file=sys.stderr)
        with torch.no_grad():
            out = module(torch.zeros(1, *model.input_shape))
    except SpecError as exc:
        _report_errors(exc, shown=args.max_errors)
        return EXIT_SPEC
    except WeightsError as exc:
        print(f"archspec: error: {exc}", file=sys.stderr)
        return EXIT_SPEC
    except (MemoryError, RuntimeError) as exc:
        if not _out_of_memory(exc):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"archspec: error: building {args.spec} ran out of memory: {first}", file=sys.stderr)
        return EXIT_SPEC
    print(
        f"built {model.name}: input {fmt_shape(model.input_shape)} -> output {fmt_shape(tuple(out.shape[1:]))}, "
        f"{model.body.params:,} params"
        + (f", {'some ' if args.partial else ''}weights from {args.weights}" if args.weights else "")
    )
    return EXIT_OK


def _out_of_memory(exc: BaseException) -> bool:
    """Whether torch's (or Python's) allocator refused: the CPU allocator's "can't allocate memory",
    CUDA's "out of memory"; any other RuntimeError is a fault of archspec's, with its traceback."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return any(words in text for words in ("out of memory", "allocate", "not enough memory"))


def _emit(model, output: str | None, spec: str, overrides: dict, memory_efficient: bool | None, protect=()) -> int:
    from .backends.emit import num_classes_variant, render
    from .kinds.blocks import memory_efficient as dense_memory_efficient

    model = dense_memory_efficient(model, memory_efficient)
    variant = num_classes_variant(Path(spec), overrides, model)
    source = render(model, variant and dense_memory_efficient(variant, memory_efficient))
    if output is None:
        sys.stdout.write(source)
    else:
        write_atomically(output, source, protect=protect)
    return EXIT_OK


_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def _output_target(written: str, protect: tuple = ()) -> tuple[Path, os.stat_result | None] | object | None:
    """Where writing `written` puts the text: (the regular file to replace, its stat) or (a new path,
    None); STDOUT or STDERR for the very file that stream is open on (`-o /dev/stderr 2>>log` appends
    to the log, as the shell opened it). UsageError for anything else: a directory (or a name ending
    in a slash), a FIFO, a device, a missing folder, a name the system refuses, a file the user may
    not write (as a shell's `>` refuses it), or a file of `protect` (the spec, its bases, the plugins:
    never overwritten, through a symbolic or a hard link either), given as (path, what it is)."""
    path = Path(written)
    if written.endswith(("/", os.sep)) and not os.path.isdir(path):
        raise UsageError(f"cannot write {printable(written)}: it names a folder; give a file name to write to")
    try:
        info = os.stat(path)  # through symbolic links: the file that would be written
    except FileNotFoundError:
        if os.path.islink(path):
            raise UsageError(f"cannot write {printable(path)}: it is a symbolic link to a missing file") from None
        if not os.path.isdir(path.parent):
            raise UsageError(
                f"cannot write {printable(path)}: the folder {printable(path.parent)} does not exist"
            ) from None
        return Path(os.path.realpath(path)), None  # absolute: a writer beside us may create it meanwhile
    except ValueError:
        raise UsageError(f"cannot write {printable(path)}: a path cannot hold a NUL byte") from None
    except OSError as exc:  # too long a name, a symlink loop, a file where a folder should be, no permission
        raise UsageError(f"cannot write {printable(path)}: {exc.strerror or exc}") from None
    for stream, which in ((sys.stdout, STDOUT), (sys.stderr, STDERR)):
        if _is_open_on(stream, info):
            return which
    if stat.S_ISDIR(info.st_mode):
        raise UsageError(f"{printable(path)} is a directory; give a file name to write the model to")
    if not stat.S_ISREG(info.st_mode):
        kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
        message = f"it is {kind}; archspec writes only a regular file or a new path"
        raise UsageError(f"cannot write {printable(path)}: {message}")
    for other, what in protect:
        try:
            same = os.path.samestat(info, os.stat(other))
        except (OSError, ValueError):
            continue
        if same:
            itself = f"it is {what} {printable(other)} itself; choose another output file"
            raise UsageError(f"cannot write {printable(path)}: {itself}")
    if not os.access(path, os.W_OK):
        raise UsageError(f"cannot write {printable(path)}: Permission denied (it is read-only)")
    return Path(os.path.realpath(path)), info  # through a symlink: replace the file, keep the link


STDOUT, STDERR = object(), object()  # _output_target's answers for a path that is a stream's own file


def _is_open_on(stream, info: os.stat_result) -> bool:
    try:
        return os.path.samestat(info, os.fstat(stream.fileno()))
    except (OSError, ValueError, AttributeError):
        return False


def write_atomically(path: str, text: str, protect: tuple = ()) -> None:
    """Replace `path` only by a complete new file: write a temporary file beside it, then rename.

    Only a regular file or a new path is written (see _output_target; a path naming stdout's own
    file writes to stdout). A replaced file keeps its mode (and, where allowed, its owner); a new one
    gets the mode the umask gives. UsageError for every failure, the system's reason in it."""
    target = _output_target(path, protect)
    if target in (STDOUT, STDERR):
        (sys.stdout if target is STDOUT else sys.stderr).write(text)
        return
    target, info = target
    temporary = None
    try:
        for _ in range(100):
            temporary = target.parent / f".{target.name}.{os.urandom(4).hex()}.tmp"
            try:  # 0o666: the umask decides, as for any new file
                fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
                break
            except FileExistsError:
                continue
        else:
            raise FileExistsError(f"no free temporary name in {target.parent}")
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            if info is not None:
                _keep_mode(file.fileno(), info)
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        again = _output_target(path, protect)  # it may have changed while we wrote
        if again in (STDOUT, STDERR) or again[0] != target:
            raise UsageError(f"cannot write {path}: it changed while the output was written")
        os.replace(temporary, target)
        temporary = None
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if temporary is not None:
            try:
                os.unlink(temporary)
            except OSError:
                pass


def _keep_mode(fd: int, info: os.stat_result) -> None:
    """Give the new file the replaced one's permissions and, where the system allows, its owner."""
    if hasattr(os, "fchmod"):
        os.fchmod(fd, stat.S_IMODE(info.st_mode))
    if hasattr(os, "fchown"):
        try:
            os.fchown(fd, info.st_uid, info.st_gid)
        except OSError:
            pass
