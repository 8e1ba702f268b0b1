"""Golden tests of the error messages `archspec check` prints, and of its usage errors.

Every tests/errors/NAME.yaml is a small broken spec; tests/errors/NAME.err holds the exact stderr
of `archspec check tests/errors/NAME.yaml` run from the repository root. Rewrite the goldens after
an intended change of wording with

    ARCHSPEC_UPDATE_GOLDEN=1 python3 -m pytest tests/test_errors.py

and read the diff as a user would: is each message clear, at the right line:col, saying what to do?
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from archspec.frontend import load
from archspec.cli import main
from archspec.core.errors import CODES

ROOT = Path(__file__).resolve().parent.parent
ERRORS = Path(__file__).parent / "errors"
SPECS = sorted(ERRORS.glob("*.yaml"))

# Codes no spec can produce with the current code, and why. A code listed here that a golden does
# produce makes test_every_code_has_a_golden fail, so the list cannot go stale.
UNTRIGGERABLE: dict[str, str] = {
    "no-source-form": "needs a plugin kind without a source form; tests/test_plugins.py produces it",
    "plugin": "needs a plugin whose rule fails; tests/test_hostile_round3.py produces it",
}

# Goldens whose errors are not in line order, a known defect (see test_errors_are_in_line_order).
KNOWN_UNSORTED: dict[str, str] = {}

# libyaml and PyYAML's pure-Python scanner word syntax errors differently; the goldens hold libyaml's.
PURE_PYTHON_YAML = not issubclass(load._Loader, getattr(yaml, "CSafeLoader", ()))

ERROR_LINE = re.compile(r"^(?P<path>.+?):(?P<line>\d+):(?P<col>\d+): error: .* \[(?P<code>[a-z-]+)\]$")


def run(capsys, monkeypatch, *argv):
    monkeypatch.chdir(ROOT)
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def codes(text: str) -> set[str]:
    return {m["code"] for m in map(ERROR_LINE.match, text.splitlines()) if m}


def golden_of(spec: Path) -> Path:
    return spec.with_suffix(".err")


def spec_params(specs, marks: dict[str, str] | None = None):
    params = []
    for spec in specs:
        spec_marks = []
        if PURE_PYTHON_YAML and spec.stem.startswith("yaml_syntax"):
            spec_marks.append(pytest.mark.skip(reason="golden holds libyaml's wording; PyYAML runs without libyaml"))
        if marks and spec.stem in marks:
            spec_marks.append(pytest.mark.xfail(reason=marks[spec.stem], strict=True))
        params.append(pytest.param(spec, id=spec.stem, marks=spec_marks))
    return params


# ---------------------------------------------------------------- goldens


@pytest.mark.parametrize("spec", spec_params(SPECS))
def test_error_golden(capsys, monkeypatch, update_golden, spec):
    status, out, err = run(capsys, monkeypatch, "check", rel(spec))
    assert "Traceback" not in out + err
    assert status == 1, err
    assert out == ""
    assert err.endswith(" error\n") or err.endswith(" errors\n")
    golden = golden_of(spec)
    if update_golden:
        golden.write_text(err, encoding="utf-8")
    assert err == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize("spec", spec_params(SPECS, KNOWN_UNSORTED))
def test_errors_are_in_line_order(capsys, monkeypatch, spec):
    _, _, err = run(capsys, monkeypatch, "check", rel(spec))
    where = [(int(m["line"]), int(m["col"])) for m in map(ERROR_LINE.match, err.splitlines()) if m]
    assert where, err
    assert where == sorted(where), err


def test_every_spec_has_a_golden_and_every_golden_a_spec():
    assert SPECS
    assert sorted(p.stem for p in ERRORS.glob("*.err")) == [p.stem for p in SPECS]


def test_every_code_has_a_golden():
    produced: dict[str, list[str]] = {}
    for spec in SPECS:
        for code in codes(golden_of(spec).read_text(encoding="utf-8")):
            produced.setdefault(code, []).append(spec.name)
    assert set(produced) <= set(CODES), "a golden shows a code missing from errors.CODES"
    assert set(UNTRIGGERABLE) <= set(CODES)
    missing = set(CODES) - set(produced) - set(UNTRIGGERABLE)
    assert not missing, f"error codes without a golden in tests/errors/: {sorted(missing)}"
    now_triggered = {code: produced[code] for code in UNTRIGGERABLE if code in produced}
    assert not now_triggered, f"remove these from UNTRIGGERABLE, goldens produce them: {now_triggered}"


def test_several_independent_errors_come_out_in_one_run(capsys, monkeypatch):
    status, _, err = run(capsys, monkeypatch, "check", "tests/errors/several_errors.yaml")
    lines = [m for m in map(ERROR_LINE.match, err.splitlines()) if m]
    assert status == 1
    assert len(lines) >= 10
    assert {"missing-field", "unknown-field", "unknown-kind", "bad-name", "bad-value", "layer-form"} <= codes(err)
    assert err.splitlines()[-1] == f"found {len(lines)} errors"


def test_a_misspelt_required_field_is_one_error(capsys, monkeypatch, tmp_path):
    spec = tmp_path / "kernal.yaml"
    spec.write_text("archspec: 1\nname: m\ninput: [3, 8, 8]\nlayers:\n  - conv: {out: 4, kernal: 3}\n")
    status, _, err = run(capsys, monkeypatch, "check", str(spec))
    assert status == 1
    assert err.splitlines() == [
        f'{spec}:5:20: error: unknown field "kernal" for conv; did you mean "kernel"? [unknown-field]',
        "found 1 error",
    ]


def test_a_shape_error_with_a_known_output_does_not_stop_the_layers_after_it(capsys, monkeypatch, tmp_path):
    spec = tmp_path / "groups.yaml"
    spec.write_text("archspec: 1\nname: m\ninput: [3, 8, 8]\nlayers:\n"
                    "  - conv: {out: 4, kernel: 3, groups: 2}\n  - conv: {out: 4, kernel: 9}\n")
    status, _, err = run(capsys, monkeypatch, "check", str(spec))
    assert status == 1
    assert [m.group("code") for m in map(ERROR_LINE.match, err.splitlines()) if m] == [
        "channel-mismatch", "output-size"]


# ---------------------------------------------------------------- usage errors


def test_missing_file_is_a_usage_error(capsys, monkeypatch):
    status, out, err = run(capsys, monkeypatch, "check", "tests/errors/no_such_spec.yaml")
    assert (status, out, err) == (2, "", "archspec: error: no such file: tests/errors/no_such_spec.yaml\n")


def test_directory_is_a_usage_error(capsys, monkeypatch):
    status, out, err = run(capsys, monkeypatch, "check", "tests/errors")
    assert (status, out, err) == (2, "", "archspec: error: tests/errors is a directory, not a spec file\n")


@pytest.mark.parametrize(
    "argv, complaint",
    [
        (["check", "--frobnicate", "specs/conv_unit.yaml"], "unrecognized arguments: --frobnicate"),
        (["check", "--depth", "deep", "specs/conv_unit.yaml"], "argument --depth: expected a whole number >= 1, got 'deep'"),
        (["check", "--input", "3x0x4", "specs/conv_unit.yaml"], "argument --input: expected CxHxW"),
        (["check", "--columns", "params,flops", "specs/conv_unit.yaml"], "unknown column 'flops'"),
        (["check"], "the following arguments are required: SPEC"),
        (["lint", "specs/conv_unit.yaml"], "invalid choice: 'lint'"),
        ([], "the following arguments are required: COMMAND"),
    ],
    ids=["unknown-flag", "bad-flag-value", "bad-input", "bad-column", "no-spec", "unknown-command", "no-command"],
)
def test_bad_command_line_exits_2(capsys, monkeypatch, argv, complaint):
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    assert exc.value.code == 2
    assert out == ""
    assert err.startswith("usage: archspec")
    assert complaint in err
    assert "Traceback" not in err


def _diagnostics(spec: str) -> str:
    """A golden without its closing `found N errors` line."""
    return "".join((ROOT / spec).with_suffix(".err").read_text(encoding="utf-8").splitlines(keepends=True)[:-1])


def test_several_files_report_every_error_and_the_worst_status(capsys, monkeypatch):
    one, two = "tests/errors/needs_flatten.yaml", "tests/errors/missing_field.yaml"

    status, out, err = run(capsys, monkeypatch, "check", one, two)
    assert status == 1
    assert out == ""
    assert err == _diagnostics(one) + _diagnostics(two) + "found 8 errors\n"

    status, out, err = run(capsys, monkeypatch, "check", "specs/conv_unit.yaml", one)
    assert status == 1
    assert out.startswith("conv_unit (specs/conv_unit.yaml)")
    assert err == _diagnostics(one) + "found 1 error\n"

    missing = "archspec: error: no such file: tests/errors/no_such_spec.yaml\n"
    status, out, err = run(capsys, monkeypatch, "check", one, "tests/errors/no_such_spec.yaml", "specs/conv_unit.yaml")
    assert status == 2
    assert out.startswith("conv_unit (specs/conv_unit.yaml)")
    assert err == _diagnostics(one) + missing + "found 1 error\n"

    status, out, err = run(capsys, monkeypatch, "check", "tests/errors/no_such_spec.yaml", "specs/conv_unit.yaml")
    assert status == 2
    assert err == missing

    status, _, err = run(capsys, monkeypatch, "check", "-q", "specs/conv_unit.yaml", "specs/resblk.yaml")
    assert (status, err) == (0, "")


def test_build_reports_the_same_errors(capsys, monkeypatch):
    spec = "tests/errors/several_errors.yaml"
    status, out, err = run(capsys, monkeypatch, "build", spec)
    assert (status, out) == (1, "")
    assert err == (ERRORS / "several_errors.err").read_text()


@pytest.mark.parametrize("bn_size", [None, 4])
@pytest.mark.parametrize("input_shape", [[3, 1], [2, 5], [3, 1, 1], [1, 2, 7], [4, 3, 1, 2]])
def test_concat_mismatch_is_unreachable(input_shape, bn_size):
    """Dense blocks keep every spatial size, so their own concatenation never mismatches."""
    from archspec import analyze

    fields = {"num_layers": 3, "growth": 4, "dropout": 0.2, **({"bn_size": bn_size} if bn_size else {})}
    spec = {"archspec": 1, "name": "dense", "input": input_shape, "layers": [{"dense_block": fields}]}
    model = analyze(yaml.safe_dump(spec))
    assert model.body.out_shape == (input_shape[0] + 3 * 4, *input_shape[1:])


def test_a_refused_pooling_padding_does_not_stop_the_layers_after_it(capsys, monkeypatch, tmp_path):
    spec = tmp_path / "pad.yaml"
    spec.write_text("archspec: 1\nname: m\ninput: [3, 16, 16]\nlayers:\n"
                    "  - maxpool: {kernel: 2, padding: 2}\n  - conv: {out: 4, kernel: 30}\n")
    status, _, err = run(capsys, monkeypatch, "check", str(spec))
    assert status == 1
    assert [m.group("code") for m in map(ERROR_LINE.match, err.splitlines()) if m] == ["bad-arg", "output-size"]
    assert "on input (B, 3, 10, 10)" in err  # the refused pool's output, as the formula gives it
