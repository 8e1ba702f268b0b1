"""Hostile and careless input, round 3 (issue 29): each class closed where it arises, with generated cases.

- Numbers YAML 1.1 reads unlike a person (and YAML 1.2): base 60 (`1:30` is 90) and a leading zero
  (`010` is octal 8), in a spec or in `--set`, are located errors; every other number is read as
  written or refused (`048`, text to YAML 1.1), never read as another.
- `--set` values are read by the spec's own reader: its limits (nesting), tags and number checks.
- Terminal and log injection: paths, weights keys and names from outside reach stdout and stderr
  with every terminal control escaped (one sanitiser, core.errors.terminal_safe, in cli), a newline
  in a path never splits the `path:line:col` prefix, and a long key is shortened.
- Reports of numbers past a float's range (`--batch` of hundreds of digits): every format prints
  them exactly, with no OverflowError.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest
from conftest import examples
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from archspec import SpecError, analyze
from archspec.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def registry_as_it_was():
    """The plugins these tests load leave no kind behind for the tests after them."""
    from archspec.registry import tables

    saved = [(table, dict(table)) for table in (tables.KINDS, tables.ACTIVATIONS, tables.MERGES)]
    yield
    for table, entries in saved:
        table.clear()
        table.update(entries)
ERROR_LINE = re.compile(r"^(?P<path>.+?):(?P<line>\d+):(?P<col>\d+): error: (?P<message>.*) \[(?P<code>[a-z-]+)\]$")


def conv_spec(out: str) -> str:
    return f"archspec: 1\nname: n\ninput: [3, 8, 8]\nvars: {{n: 4}}\nlayers:\n  - conv: {{out: {out}, kernel: 1}}\n"


def sexagesimal():
    parts = st.lists(st.integers(0, 59).map(str), min_size=1, max_size=3)
    return st.tuples(st.sampled_from(["", "+", "-"]), st.integers(1, 999), parts).map(
        lambda t: f"{t[0]}{t[1]}:" + ":".join(t[2])
    )


def leading_zero():
    """Octal-looking integers whose octal value is not their decimal one (`010`, not `07`)."""
    return (
        st.from_regex(r"\A0[0-7]{1,6}\Z", fullmatch=True)
        .filter(lambda text: int(text, 8) != int(text))
    )


@settings(max_examples=examples(200), deadline=None)
@given(written=st.one_of(sexagesimal(), leading_zero()))
def test_numbers_yaml_11_reads_otherwise_are_located_errors(written):
    with pytest.raises(SpecError) as caught:
        analyze(conv_spec(written))
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.code == "yaml-tag" and "YAML 1.1 reads" in diagnostic.message
    assert (diagnostic.loc.line, diagnostic.loc.col) == (6, 17)


@settings(max_examples=examples(200), deadline=None)
@given(value=st.integers(1, 10**12), zeros=st.integers(0, 2), sep=st.booleans())
def test_other_numbers_are_read_as_written_or_refused(value, zeros, sep):
    """Plain decimals (with `_` separators) and leading zeros that change nothing (`07`) are the
    numbers written; a leading zero before an 8 or 9 (`048`), which YAML 1.1 reads as text, is
    refused where it stands: never a number other than the one written."""
    text = "0" * zeros + (f"{value:_}" if sep else str(value))
    digits = text.replace("_", "")
    assume(not zeros or set(digits) - set("01234567") or int(digits, 8) == value)
    if zeros and set(digits) - set("01234567"):
        with pytest.raises(SpecError) as caught:
            analyze(conv_spec(text))
        assert [(d.code, d.loc.line) for d in caught.value.diagnostics] == [("bad-value", 6)]
    else:
        assert analyze(conv_spec(text)).body.children[0].out_shape[0] == value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1:30", "YAML 1.1 reads 1:30 as a base-60 number (90)"),
        ("010", "YAML 1.1 reads 010 as an octal number (8)"),
        ("[" * 900 + "]" * 900, "nested more than"),
        ("!!python/object:os.system x", "the YAML tag !!python/object:os.system is not allowed"),
        ("[1, [2, 3]]", "must be a number or a list of numbers"),
        ("", "must be a number or a list of numbers"),
    ],
    ids=["sexagesimal", "octal", "deep", "tag", "nested-list", "empty"],
)
def test_set_values_are_read_as_spec_values(value, expected, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["check", str(ROOT / "specs/resnet18.yaml"), "--set", f"n={value}"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and len(err) < 2_000


def test_set_reads_numbers_and_lists(tmp_path, capsys):
    spec = tmp_path / "n.yaml"
    spec.write_text(conv_spec("n").replace("{n: 4}", "{n: 4, k: [1, 1]}").replace("kernel: 1", "kernel: k"))
    assert main(["check", str(spec), "--set", "n=7", "--set", "k=[3, 1]", "--columns", "output"]) == 0
    assert "(B, 7, 6, 8)" in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["table", "json", "markdown", "sarif", "github"])
@pytest.mark.parametrize("digits", [20, 400])
def test_counts_past_a_floats_range_are_printed_exactly(fmt, digits, capsys):
    batch = int("9" * digits)
    assert main(["check", str(ROOT / "specs/resnet18.yaml"), "--batch", str(batch), "--format", fmt]) == 0
    out = capsys.readouterr().out
    macs = analyze(ROOT / "specs/resnet18.yaml").body.macs
    if fmt == "json":
        json.loads(out)
    if fmt in ("table", "markdown"):
        assert f"{macs * batch:,}" in out


# ---------------------------------------------------------------- output formats

SARIF_SCHEMA = Path(__file__).parent / "data" / "sarif-schema-2.1.0.json"  # OASIS SARIF 2.1.0 (sarif-spec repo)


def sarif_errors(document: dict) -> list[str]:
    from jsonschema import Draft4Validator

    validator = Draft4Validator(json.loads(SARIF_SCHEMA.read_text()))
    return [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(document)]


@pytest.mark.parametrize("spec", sorted((ROOT / "tests" / "errors").glob("*.yaml")), ids=lambda p: p.stem)
def test_sarif_of_every_error_file_is_valid_sarif(spec, capsys):
    main(["check", str(spec), "--format", "sarif"])
    assert sarif_errors(json.loads(capsys.readouterr().out)) == []


@pytest.mark.parametrize("fmt", ["json", "sarif", "github", "table"])
def test_a_file_left_unchecked_is_in_the_report(fmt, tmp_path, capsys):
    """A missing file (or a --set for no var of one spec) was said only on stderr: a JSON or SARIF
    document read by CI listed the other files as if all had been checked."""
    good = ROOT / "specs" / "resnet18.yaml"
    missing = tmp_path / "missing.yaml"
    assert main(["check", str(good), str(missing), "--format", fmt]) == 2
    out, err = capsys.readouterr()
    assert f"no such file: {missing}" in err
    if fmt == "json":
        files = json.loads(out)["files"]
        assert [f["file"] for f in files] == [str(good), str(missing)]
        assert [e["code"] for e in files[1]["errors"]] == ["unchecked"]
    elif fmt == "sarif":
        document = json.loads(out)
        assert sarif_errors(document) == []
        (invocation,) = document["runs"][0]["invocations"]
        assert invocation["executionSuccessful"] is False
        assert [n["message"]["text"] for n in invocation["toolExecutionNotifications"]] == [f"no such file: {missing}"]
    elif fmt == "github":
        assert out.splitlines() == [f"::error file={missing},title=archspec [unchecked]::no such file: {missing}"]


def test_a_set_for_no_var_of_one_spec_names_that_spec(tmp_path, capsys):
    with_var = tmp_path / "n.yaml"
    with_var.write_text(conv_spec("n"))
    without = ROOT / "specs" / "resnet18.yaml"
    assert main(["check", str(with_var), str(without), "--set", "n=5", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f'archspec: error: {without}: no var named "n" to override')


# ---------------------------------------------------------------- the library's arguments


@pytest.mark.parametrize("batch", [-1, 0, 2.5, True, "3", None])
def test_measure_refuses_a_batch_that_is_no_positive_integer(batch):
    from archspec import measure

    with pytest.raises((TypeError, ValueError), match="batch must be a positive integer"):
        measure(analyze(conv_spec("4")), batch=batch)


@pytest.mark.parametrize("model", ["x", 3, None, {"layers": []}])
def test_measure_refuses_what_is_no_analyzed_model(model):
    from archspec import measure

    with pytest.raises(TypeError, match=r"measure\(\) takes the model archspec.analyze\(\) returns"):
        measure(model)


def test_limits_may_be_a_mapping_and_anything_else_is_refused_clearly():
    with pytest.raises(SpecError, match="limit layers = 1"):
        analyze(conv_spec("4").replace("kernel: 1}", "kernel: 1, repeat: 3}"), limits={"layers": 1})
    with pytest.raises(ValueError, match="no limit named 'layerz'; the limits are spec_bytes"):
        analyze(conv_spec("4"), limits={"layerz": 5})
    with pytest.raises(ValueError, match="limit layers must be a positive integer"):
        analyze(conv_spec("4"), limits={"layers": -1})
    for wrong in ("x", 5, [("layers", 5)]):
        with pytest.raises(TypeError, match="limits must be an archspec.Limits or a mapping"):
            analyze(conv_spec("4"), limits=wrong)


# ---------------------------------------------------------------- terminal and log injection

TERMINAL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
HOSTILE_CHARS = "a.:,%[]2J\x1b\x07\x08\r\n\t\x9b\u202e\u2066\u200f\u2028\u0085 "
FORGED = "fake.yaml:1:1: error: forged [x]"


def hostile_text(min_size: int = 1):
    return st.text(alphabet=HOSTILE_CHARS, min_size=min_size, max_size=40).map(lambda t: t + "\n" + FORGED)


def assert_safe(text: str, allowed_lines) -> None:
    """No terminal control reaches the output, and no line is one the input forged."""
    assert not TERMINAL.search(text), repr(TERMINAL.search(text).group())
    assert all(not line.startswith(FORGED) for line in text.splitlines()), text
    assert all(allowed_lines(line) for line in text.splitlines() if line), text


@settings(max_examples=examples(60), deadline=None)
@given(name=hostile_text(), fmt=st.sampled_from(["table", "markdown", "json", "sarif", "github"]))
def test_file_names_reach_no_terminal_raw(name, fmt, tmp_path_factory):
    folder = tmp_path_factory.mktemp("names")
    broken = folder / (name.replace("/", "_") + ".yaml")
    broken.write_text(conv_spec("4").replace("conv:", "convv:"))
    missing = folder / (name.replace("/", "_") + "-missing.yaml")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["check", str(broken), str(missing), "--format", fmt])
    assert status == 2
    assert_safe(out.getvalue(), lambda line: True)
    assert_safe(err.getvalue(), lambda line: line.startswith(("archspec: error:", str(folder), "found ")))
    if fmt == "table":
        (error,) = [line for line in out.getvalue().splitlines() + err.getvalue().splitlines() if "error: unknown" in line]
        assert ERROR_LINE.match(error), error


@pytest.mark.parametrize("partial", [False, True])
def test_weights_keys_reach_no_terminal_raw(partial, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    spec = tmp_path / "n.yaml"
    spec.write_text(conv_spec("4"))
    keys = [f"0.weight\x1b[2J\x1b[31m\n{FORGED}", "\u202eevil" * 3, "x" * 1_000_000]
    weights = tmp_path / "w.pt"
    torch.save({key: torch.zeros(1) for key in keys}, weights)
    argv = ["build", str(spec), "--weights", str(weights)] + (["--partial"] if partial else [])
    main(argv)
    out, err = capsys.readouterr()
    assert_safe(out + err, lambda line: True)
    assert len(err) < 20_000, len(err)


# ---------------------------------------------------------------- what -o may replace


def child_of_base(folder: Path) -> Path:
    (folder / "base.yaml").write_text(conv_spec("4"))
    child = folder / "child.yaml"
    child.write_text("extends: base.yaml\nname: child\n")
    return child


@pytest.mark.parametrize("target", ["base.yaml", "plug.py", "child.yaml", "link-to-base.yaml"])
@pytest.mark.parametrize("command", ["build", "schema"])
def test_no_output_replaces_an_input_of_the_run(command, target, tmp_path, capsys):
    """The spec, each base it extends and each plugin file are inputs: `-o` naming one of them (by
    its name or through a link) is a usage error and leaves it as it was."""
    child = child_of_base(tmp_path)
    (tmp_path / "plug.py").write_text("PLUGGED = True\n")
    (tmp_path / "link-to-base.yaml").symlink_to(tmp_path / "base.yaml")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    argv = ["--plugin", str(tmp_path / "plug.py"), "-o", str(tmp_path / target)]
    argv = ["build", str(child), "--emit-python", *argv] if command == "build" else ["schema", *argv]
    status = main(argv)
    replaced = {p.name for p in tmp_path.iterdir() if p.read_bytes() != before.get(p.name)}
    if command == "schema" and target not in ("plug.py",):
        assert status == 0  # a spec is no input of `schema`
        return
    assert status == 2, capsys.readouterr()
    assert replaced == set()
    assert "itself; choose another output file" in capsys.readouterr().err


def test_an_output_naming_a_folder_writes_nothing(tmp_path, capsys):
    child = child_of_base(tmp_path)
    assert main(["build", str(child), "--emit-python", "-o", str(tmp_path / "newdir") + "/"]) == 2
    assert "it names a folder" in capsys.readouterr().err
    assert not (tmp_path / "newdir").exists()


def test_an_output_that_is_stderr_is_appended_to_as_the_shell_opened_it(tmp_path):
    import subprocess
    import sys

    log = tmp_path / "log"
    log.write_text("kept\n")
    with open(log, "a") as stderr:
        done = subprocess.run([sys.executable, "-m", "archspec", "schema", "-o", "/dev/stderr"], stderr=stderr)
    assert done.returncode == 0
    text = log.read_text()
    assert text.startswith("kept\n{") and json.loads(text[len("kept\n") :])["title"] == "archspec spec"


def test_concurrent_writers_of_one_new_relative_path_all_succeed(tmp_path):
    import subprocess
    import sys

    child = child_of_base(tmp_path)
    argv = [sys.executable, "-m", "archspec", "build", child.name, "--emit-python", "-o", "model.py"]
    writers = [subprocess.Popen(argv, cwd=tmp_path, stderr=subprocess.PIPE, text=True) for _ in range(8)]
    results = [(w.communicate()[1], w.returncode) for w in writers]
    assert results == [("", 0)] * 8
    compile((tmp_path / "model.py").read_text(), "model.py", "exec")


# ---------------------------------------------------------------- plugins

KIND_PLUGIN = '''from archspec.fields import Layer
from archspec.registry import LayerKind, call, register, unregister


class Fields(Layer):
    pass


unregister({name!r})  # a test's leftover from an earlier run in this process
register(LayerKind({name!r}, "x", Fields, lambda op, shape: (shape, 0), lambda op: call("nn.Identity")))
'''


def run_cli(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue() + err.getvalue()


@pytest.mark.parametrize("body", ["import sys\nsys.exit(0)\n", "raise SystemExit\n", "import sys\nsys.exit('bye')\n"])
def test_a_plugin_that_exits_cannot_fake_a_pass(body, tmp_path):
    plugin = tmp_path / "exits.py"
    plugin.write_text(body)
    broken = tmp_path / "broken.yaml"
    broken.write_text(conv_spec("4").replace("conv:", "convv:"))
    status, text = run_cli(["check", str(broken), "--plugin", str(plugin)])
    assert status == 2 and "failed to load: SystemExit" in text and "Traceback" not in text


@pytest.mark.parametrize("name", ["repeat", "first", "name", "from", "merge", "class", "a b", "", "conv2d\x1b[2J", "ü"])
def test_kinds_cannot_take_the_specs_own_words_or_odd_names(name, tmp_path):
    plugin = tmp_path / "named.py"
    plugin.write_text(KIND_PLUGIN.replace("unregister({name!r})", "").format(name=name))
    status, text = run_cli(["check", str(ROOT / "specs" / "vgg11.yaml"), "-q", "--plugin", str(plugin)])
    assert status == 2 and "cannot register" in text and "Traceback" not in text
    assert not TERMINAL.search(text)


@pytest.mark.parametrize("name", ["conv", "relu", "dense_block", "residual", "group"])
def test_a_plugin_cannot_take_a_built_in_name_whenever_it_loads(name, tmp_path):
    """archspec registers its kinds when imported: a plugin that registers `conv` first is refused
    with a message (it was a traceback when the built-ins came second)."""
    import subprocess
    import sys

    plugin = tmp_path / "first.py"
    plugin.write_text(KIND_PLUGIN.replace("unregister({name!r})", "").format(name=name))
    code = f"import runpy; runpy.run_path({str(plugin)!r})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1 and f"{name!r} is already registered" in done.stderr
    status, text = run_cli(["check", str(ROOT / "specs" / "vgg11.yaml"), "-q", "--plugin", str(plugin)])
    assert status == 2 and "is already registered" in text and "Traceback" not in text


def test_a_plugin_file_loaded_outside_sys_modules_is_refused_with_the_reason_or_works(tmp_path):
    """Loaded with importlib but left out of sys.modules, the example plugin's model cannot be built
    by newer pydantic (its annotations are not resolved): that is said when it registers, naming the
    model and the remedy, never as pydantic's "`Spec` is not fully defined" at the first spec. Where
    pydantic builds it (2.0), the kind works."""
    import importlib.util
    import warnings

    from archspec import registry

    spec = importlib.util.spec_from_file_location("not_in_sys_modules", ROOT / "examples" / "scaled_tanh_plugin.py")
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            spec.loader.exec_module(module)
        except TypeError as exc:
            assert "not_in_sys_modules.ScaledTanhFields" in str(exc) and "not in sys.modules" in str(exc)
            assert "scaled_tanh" not in registry.KINDS
            return
    layer = analyze(conv_spec("4") + "  - scaled_tanh: 2.0\n").body.children[-1]
    assert (layer.kind, layer.args["scale"]) == ("scaled_tanh", 2.0)


def test_the_same_plugin_named_twice_is_loaded_once(tmp_path):
    from archspec import registry

    plugin = tmp_path / "twice.py"
    plugin.write_text(KIND_PLUGIN.replace("unregister({name!r})", "").format(name="twice_kind"))
    spec = tmp_path / "t.yaml"
    spec.write_text(conv_spec("4").replace("  - conv: {out: 4, kernel: 1}", "  - twice_kind"))
    (tmp_path / "alias.py").symlink_to(plugin)
    try:
        status, text = run_cli(["check", str(spec), "-q", "--plugin", str(plugin), "--plugin", str(tmp_path / "alias.py")])
    finally:
        registry.unregister("twice_kind")
    assert (status, text) == (0, "")


def test_a_plugins_text_field_never_reaches_emitted_source(tmp_path):
    plugin = tmp_path / "words.py"
    plugin.write_text(
        "from typing import ClassVar\n"
        "from archspec.fields import Layer\n"
        "from archspec.registry import LayerKind, call, register, unregister\n"
        "class WordFields(Layer):\n    primary: ClassVar = 'word'\n    word: str = 'x'\n"
        "unregister('word_layer')\n"
        "register(LayerKind('word_layer', 'x', WordFields, lambda op, s: (s, 0),\n"
        "    lambda op: call('nn.Identity', op.args['word']), source='class X:\\n    pass\\n'))\n"
    )
    spec = tmp_path / "w.yaml"
    spec.write_text(conv_spec("4") + '  - word_layer: "a\\"); import os; os.system(\\"x"\n')
    status, text = run_cli(["build", str(spec), "--plugin", str(plugin), "--emit-python"])
    assert status == 1 and "[bad-value]" in text and "import os" not in text.split("cannot emit")[0]
    assert re.search(r"w\.yaml:7:5: error: layer 1 \(word_layer\): cannot emit", text), text


FAULTY_PLUGIN = '''from archspec.fields import Layer
from archspec.registry import LayerKind, call, register, unregister
from archspec.shapes import Window


class Fields(Layer):
    pass


def fine(rule, op, shape=None):
    return {{"shape": (shape, 0), "build": call("nn.Identity"), "macs": 0, "window": (Window(), Window()),
             "buffers": (), "stride": 1}}[rule]


def rule(name):
    def run(op, *args):
        if name == {rule!r}:
            {body}
        return fine(name, op, *args)
    return run


unregister("faulty")
register(LayerKind("faulty", "x", Fields, rule("shape"), rule("build"), macs=rule("macs"), window=rule("window"),
                   buffers=rule("buffers"), source="class X:\\n    pass\\n"))
'''
FAULTS = {"raise KeyError('boom')": "raised KeyError", "return None": "returned None"}
JUNK = st.one_of(st.none(), st.text(max_size=5), st.integers(-10, -1), st.floats(allow_nan=True), st.just(((3, -1, 2), 0)),
                 st.just(((3, 2.5, 2), 0)), st.just(((3, 8, 8), -180)), st.just(((3, 8, 8),)), st.just([(-1, "float")]))


def faulty(tmp_path, rule: str, body: str) -> tuple[Path, Path]:
    plugin = tmp_path / "faulty.py"
    plugin.write_text(FAULTY_PLUGIN.format(rule=rule, body=body))
    spec = tmp_path / "f.yaml"
    spec.write_text(conv_spec("4").replace("  - conv: {out: 4, kernel: 1}", "  - faulty\n  - conv: {out: 4, kernel: 1}"))
    return plugin, spec


COMMANDS = {  # the commands that call each rule
    "shape": [["check"], ["build"], ["build", "--emit-python"], ["diagram"]],
    "macs": [["check"], ["build"]],
    "window": [["check"], ["check", "--format", "json"]],
    "buffers": [["check"], ["check", "--format", "markdown"]],
    "build": [["build"], ["build", "--emit-python"], ["diff", "SPEC"]],
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("rule", sorted(COMMANDS))
def test_a_plugin_rule_that_fails_is_a_located_error_naming_it(rule, fault, tmp_path):
    plugin, spec = faulty(tmp_path, rule, fault)
    for command in COMMANDS[rule]:
        argv = [command[0], str(spec), *(str(spec) if word == "SPEC" else word for word in command[1:])]
        status, text = run_cli([*argv, "--plugin", str(plugin)])
        assert status == 1 and "Traceback" not in text, (command, text)
        if "json" in command:
            (error,) = json.loads(text)["files"][0]["errors"]
            assert (error["code"], error["line"], error["column"]) == ("plugin", 6, 5)
            text = f"f.yaml:6:5: error: {error['message']} [plugin]"
        assert "f.yaml:6:5: error: layer 0 (faulty)" in text and f"the {rule} rule of kind faulty" in text, text
        assert FAULTS[fault] in text and "[plugin]" in text, text


@settings(max_examples=examples(60), deadline=None)
@given(rule=st.sampled_from(["shape", "macs", "window", "buffers"]), junk=JUNK)
def test_a_plugin_rule_that_returns_junk_is_a_located_error(rule, junk, tmp_path_factory):
    if rule == "macs" and type(junk) is int and junk >= 0:
        return
    written = f"float('{junk}')" if isinstance(junk, float) else repr(junk)  # nan, inf: no literals
    plugin, spec = faulty(tmp_path_factory.mktemp("junk"), rule, f"return {written}")
    status, text = run_cli(["check", str(spec), "--plugin", str(plugin)])
    assert status == 1 and "Traceback" not in text and "[plugin]" in text and "returned" in text, text


# ---------------------------------------------------------------- every independent mistake in one run

MISTAKES = {  # a layer holding one mistake after which the output shape is still known, and its code
    "validation": ("dropout: {p: 1.5}", "bad-value"),
    "unknown_field": ("relu: {bogus: 1}", "unknown-field"),
    "keyword_name": ('relu: {name: "class"}', "bad-name"),
    "duplicate_name": ("relu: {name: a}", "duplicate-name"),
    "groupnorm": ("groupnorm: 3", "channel-mismatch"),
    "conv_groups": ("conv: {out: 8, kernel: 3, padding: 1, groups: 3}", "channel-mismatch"),
    "reference": ("relu: {from: [a, nothere]}", "bad-reference"),  # last: what it reads is unknown
}


def with_mistakes(chosen: list[str]) -> str:
    layers = ["conv: {name: a, out: 8, kernel: 3, padding: 1}"]
    for mistake in sorted(chosen, key=list(MISTAKES).index):
        layers += [MISTAKES[mistake][0], "relu"]
    return "archspec: 1\nname: many\ninput: [3, 16, 16]\nlayers:\n" + "".join(f"  - {layer}\n" for layer in layers)


def codes_of(text: str) -> list[str]:
    try:
        analyze(text)
    except SpecError as exc:
        return sorted(str(d.code) for d in exc.diagnostics)
    return []


@settings(max_examples=examples(60), deadline=None)
@given(chosen=st.lists(st.sampled_from(sorted(MISTAKES)), min_size=1, unique=True))
def test_independent_mistakes_are_all_reported_in_one_run(chosen):
    """Each mistake alone gives its error; all of them together give the union: a name error no
    longer switches off the shape checks, a groupnorm whose groups do not divide no longer stops the
    layers after it, and a wrong layer whose output shape is known anyway (dropout p: 1.5) stands in
    with that shape."""
    alone = sorted(code for mistake in chosen for code in codes_of(with_mistakes([mistake])))
    assert alone == sorted(MISTAKES[mistake][1] for mistake in chosen)
    assert codes_of(with_mistakes(chosen)) == alone


# ---------------------------------------------------------------- output bounded by the input


@pytest.mark.parametrize("length", [129, 100_000, 1_000_000])
def test_a_name_longer_than_any_report_should_repeat_is_one_short_error(length, capsys):
    """A group named by 100,000 characters around 2,000 layers printed 200 MB (every row repeats
    its path): a name is at most 128 characters."""
    text = conv_spec("4") + f"  - group: {{name: {'g' * length}, layers: [relu: {{repeat: 2000}}]}}\n"
    with pytest.raises(SpecError) as caught:
        analyze(text)
    (error,) = caught.value.diagnostics
    assert error.code == "bad-name" and f"at most 128 characters, got one of {length:,}" in error.message
    assert len(str(caught.value)) < 2_000


@settings(max_examples=examples(20), deadline=None)
@given(depth=st.integers(1, 6), count=st.integers(1, 300), fmt=st.sampled_from(["table", "json", "markdown"]))
def test_check_prints_a_bounded_amount_per_layer(depth, count, fmt, tmp_path_factory):
    """At the longest names, nested `depth` deep around `count` layers: each layer's row (its path
    included) stays within a bound, so what check prints is linear in the layers made."""
    name = "n" * 128
    inner = f"relu: {{repeat: {count}}}"
    for _ in range(depth):
        inner = f"group: {{name: {name}, layers: [{inner}]}}"
    spec = tmp_path_factory.mktemp("long") / "long.yaml"
    spec.write_text(conv_spec("4") + f"  - {inner}\n")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["check", str(spec), "--format", fmt]) == 0
    assert len(out.getvalue()) < 1_000 + (count + depth + 1) * (depth * 130 + 1_000)


@pytest.mark.parametrize("fmt", ["table", "markdown", "json", "sarif", "github"])
def test_an_output_encoding_that_cannot_hold_a_name_escapes_it(fmt, tmp_path):
    import os
    import subprocess
    import sys

    spec = tmp_path / "résnet-ü.yaml"
    spec.write_text(conv_spec("4"))
    broken = tmp_path / "brökén.yaml"
    broken.write_text(conv_spec("4").replace("conv:", "convv:"))
    environment = {**os.environ, "PYTHONIOENCODING": "ascii"}
    argv = [sys.executable, "-m", "archspec", "check", str(spec), str(broken), "--format", fmt]
    done = subprocess.run(argv, capture_output=True, env=environment)
    assert done.returncode == 1 and b"Traceback" not in done.stderr, done.stderr
    assert all(byte < 128 for byte in done.stdout + done.stderr)


@pytest.mark.parametrize("size", [16 * 2**20 + 1, 50 * 2**20])
def test_yaml_text_given_to_analyze_is_bounded_as_a_file_is(size):
    import time

    text = "archspec: 1\n" + "#" * (size - 12)
    start = time.perf_counter()
    with pytest.raises(SpecError, match="more than a spec may be"):
        analyze(text)
    assert time.perf_counter() - start < 5
    with pytest.raises(SpecError, match="more than a spec may be"):
        analyze("archspec: 1\n" + "é" * (9 * 2**20))  # 9 Mi characters, 18 MiB of UTF-8


def test_weights_that_cannot_fit_are_refused_before_they_are_inflated(tmp_path):
    """A strict load reads the archive's records (keys, shapes, dtypes) first: a zip bomb of 800 MB of
    tensors the model has no place for is refused without being inflated (the peak stays far below the file; VmHWM,
    which exec resets, unlike ru_maxrss, which counts the forking parent's)."""
    import subprocess
    import sys

    import zipfile

    plain, weights = tmp_path / "plain.pt", tmp_path / "bomb.pt"
    save = f"import torch; torch.save({{f'w{{i}}': torch.zeros(2000, 2000) for i in range(50)}}, {str(plain)!r})"
    subprocess.run([sys.executable, "-c", save], check=True)
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(weights, "w", zipfile.ZIP_DEFLATED) as bomb:
        for entry in source.infolist():  # the same archive, deflated: under 1 MB on disk, 800 MB inflated
            bomb.writestr(entry.filename, source.read(entry.filename))
    plain.unlink()
    code = (
        "import re\n"
        "from archspec import compile_spec, WeightsError\n"
        f"try:\n    compile_spec({str(ROOT / 'specs' / 'resnet18.yaml')!r}, weights={str(weights)!r})\n"
        "except WeightsError as exc:\n    print(str(exc).split(': ', 1)[0][-30:])\n"
        "print(int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) // 1024)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    message, peak = done.stdout.splitlines()
    assert "does not fit the model" in message
    assert int(peak) < 600, f"{peak} MiB peak for an 800 MB file"


@pytest.mark.parametrize("features", [10**19, 2**63, 10**40])
def test_diff_of_a_layer_larger_than_torch_holds_is_a_located_error(features, tmp_path):
    spec = tmp_path / "wide.yaml"
    spec.write_text(conv_spec("4") + f"  - flatten\n  - linear: {features}\n")
    status, text = run_cli(["diff", str(spec), str(spec), "--limit", "digits=100"])
    assert status == 1 and "Traceback" not in text and "[limit]" in text, text
    assert re.search(r"wide\.yaml:8:5: error: torch cannot make the tensors", text), text
