"""The command line: output, exit statuses, and the promise that `check` never imports torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from archspec.cli import main

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden"


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_check_does_not_import_torch():
    code = (
        "import sys; from archspec.cli import main; "
        "status = main(['check', '-q', 'specs/densenet121.yaml', 'specs/resnet50.yaml']); "
        "status += main(['check', '--format', 'json', 'specs/unet.yaml', 'specs/resnet18.yaml']); "
        "print(status, 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.split()[-2:] == ["0", "False"]  # after the JSON report


@pytest.mark.parametrize("name", ["conv_unit", "resblk"])
def test_check_table_golden(capsys, monkeypatch, name, update_golden):
    monkeypatch.chdir(ROOT)
    status, out, err = run(capsys, "check", f"specs/{name}.yaml")
    assert (status, err) == (0, "")
    golden = GOLDEN / f"check-{name}.out"
    if update_golden:
        golden.write_text(out)
    assert out == golden.read_text()


@pytest.mark.parametrize(
    "name, argv",
    [
        (
            "unet_small-markdown",
            ["--format", "markdown", "--depth", "1", "--columns", "input,output,macs,field,memory"],
        ),
        ("resnet18-batch", ["--depth", "1", "--batch", "32", "--dtype", "float16", "--input", "3x160x128"]),
        ("fcn_resnet50-outputs", ["--depth", "1", "--input", "3x256x320"]),
        ("fcn_resnet50-markdown", ["--format", "markdown", "--depth", "1"]),
    ],
    ids=["markdown", "batch-dtype-input", "named-outputs", "named-outputs-markdown"],
)
def test_check_options_golden(capsys, monkeypatch, name, argv, update_golden):
    monkeypatch.chdir(ROOT)
    status, out, err = run(capsys, "check", f"specs/{name.split('-')[0]}.yaml", *argv)
    assert (status, err) == (0, "")
    golden = GOLDEN / f"check-{name}.out"
    if update_golden:
        golden.write_text(out)
    assert out == golden.read_text()


def test_check_json_carries_rows_totals_and_errors(capsys, monkeypatch, tmp_path):
    import json

    from archspec import analyze, measure

    monkeypatch.chdir(ROOT)
    bad = tmp_path / "bad.yaml"
    bad.write_text("archspec: 1\nname: bad\ninput: [3, 4, 4]\nlayers:\n  - conv: {out: 8, kernel: 7}\n")
    status, out, err = run(capsys, "check", "--format", "json", "specs/resnet50.yaml", str(bad))
    assert status == 1 and err == ""
    document = json.loads(out)
    assert (document["format"], document["version"]) == ("archspec-check", 1)
    good, wrong = document["files"]
    costs = measure(analyze("specs/resnet50.yaml"))
    assert good["totals"]["macs"] == costs.macs == 4_089_238_376
    assert good["totals"]["params"] == good["totals"]["trainable_params"] == 25_557_032
    assert len(good["layers"]) == len(costs.layers) and good["errors"] == []
    layer4 = next(row for row in good["layers"] if row["path"] == "layer4")
    field = {"whole_input": False, "size": [427, 427], "jump": [32, 32], "padding": [213, 213]}
    assert layer4["receptive_field"] == field
    assert good["input_sizes"][0]["text"] == "any H >= 1"
    (error,) = wrong["errors"]
    assert (error["line"], error["column"], error["code"]) == (5, 5, "output-size")


def test_check_several_files_reports_the_worst_status(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    bad = tmp_path / "bad.yaml"
    bad.write_text("archspec: 1\nname: bad\ninput: [3, 4, 4]\nlayers:\n  - conv: {out: 8, kernel: 7}\n")
    status, out, err = run(capsys, "check", "specs/conv_unit.yaml", str(bad))
    assert status == 1
    assert "conv_unit" in out
    assert f"{bad}:5:5: error:" in err
    status, _, err = run(capsys, "check", "specs/conv_unit.yaml", str(bad), "specs/missing.yaml")
    assert status == 2
    assert "no such file: specs/missing.yaml" in err


def test_build_runs_one_forward_pass(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    status, out, _ = run(capsys, "build", "specs/conv_unit.yaml")
    assert status == 0
    assert out.strip() == "built conv_unit: input (B, 3, 32, 32) -> output (B, 10), 10,012 params"


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["check", "--no-such-flag", "x.yaml"])
    assert exc.value.code == 2
    assert run(capsys, "build", "nowhere.yaml")[0] == 2


def test_kinds_lists_every_registered_kind_and_merge(capsys):
    from archspec import registry

    assert main(["kinds"]) == 0
    out = capsys.readouterr().out
    listed = {line.split("  ")[0] for line in out.splitlines() if line}
    assert set(registry.KINDS) <= listed
    assert {f"merge: {name}" for name in registry.MERGES} <= listed


def test_the_spec_format_documents_every_kind_and_merge():
    from archspec import registry

    text = (Path(__file__).resolve().parent.parent / "docs" / "spec-format.md").read_text()
    missing = [name for name in [*registry.KINDS, *registry.MERGES] if f"`{name}`" not in text]
    assert not missing, f"docs/spec-format.md does not describe: {missing}"


BAD_SPEC = (
    "archspec: 1\nname: bad\ninput: [3, 4, 4]\nlayers:\n"
    "  - conv: {out: 8, kernel: 7}\n  - linear: {out: 3, kernal: 2}\n"
)


def test_check_github_annotations(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    Path("bad, odd:name.yaml").write_text(BAD_SPEC)
    status, out, err = run(
        capsys, "check", "--format", "github", "bad, odd:name.yaml", str(ROOT / "specs/resnet18.yaml")
    )
    assert status == 1 and err == ""
    first, second = out.splitlines()
    assert first.startswith("::error file=bad%2C odd%3Aname.yaml,line=5,col=5,title=archspec [output-size]::layer 0")
    assert second.startswith("::error file=bad%2C odd%3Aname.yaml,line=6,col=22,title=archspec [unknown-field]::")


def test_check_sarif_log(capsys, monkeypatch, tmp_path):
    import json

    from archspec.core.errors import CODES

    monkeypatch.chdir(tmp_path)
    Path("bad.yaml").write_text(BAD_SPEC)
    status, out, err = run(capsys, "check", "--format", "sarif", "bad.yaml")
    assert status == 1 and err == ""
    log = json.loads(out)
    assert log["version"] == "2.1.0"
    (run_,) = log["runs"]
    rules = run_["tool"]["driver"]["rules"]
    assert [rule["id"] for rule in rules] == list(CODES)
    assert all(rule["shortDescription"]["text"] for rule in rules)
    results = run_["results"]
    assert [r["ruleId"] for r in results] == ["output-size", "unknown-field"]
    for result in results:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["level"] == "error" and result["message"]["text"]
    location = results[0]["locations"][0]["physicalLocation"]
    assert location == {"artifactLocation": {"uri": "bad.yaml"}, "region": {"startLine": 5, "startColumn": 5}}


def test_diagram_command(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    status, out, err = run(capsys, "diagram", "specs/unet_small.yaml", "--depth", "1")
    assert (status, err) == (0, "") and out.startswith("flowchart TD\n")
    assert "encoder.enc2 (B, 32, 16, 16)" in out  # a skip edge out of the closed encoder
    status, out, err = run(capsys, "diagram", "specs/unet_small.yaml", "--format", "dot")
    assert (status, err) == (0, "") and out.startswith('digraph "unet_small" {')
    status, out, err = run(capsys, "diagram", "specs/densenet161.yaml")
    assert status == 0 and "warning: 646 edges" in err and "try --depth 3" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_SPEC)
    status, out, err = run(capsys, "diagram", str(bad))
    assert status == 1 and out == "" and "[output-size]" in err


def test_diagram_does_not_import_torch():
    code = (
        "import sys; from archspec.cli import main; main(['diagram', 'specs/unet.yaml']); print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.splitlines()[-1] == "False"


def test_set_of_a_number_for_a_list_var_is_one_usage_error(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    status, out, err = run(capsys, "check", "specs/resnet18.yaml", "--set", "depths=3")
    assert status == 2 and out == ""
    assert err.strip() == (
        'archspec: error: specs/resnet18.yaml: --set depths=3: depths is a list of 4 in the spec; give a list, e.g. --set "depths=[3, 3, 3, 3]"'
    )
    status, _, err = run(capsys, "check", "specs/resnet18.yaml", "--set", "num_classes=[1, 2]")
    assert status == 2 and "num_classes is a single value in the spec, not a list" in err
    assert run(capsys, "check", "-q", "specs/resnet18.yaml", "--set", "depths=[1, 1, 1, 1]")[0] == 0
