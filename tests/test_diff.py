"""`archspec diff` and partial weight transfer: what the report says survives is what actually loads.

The manifests are built on torch's meta device; every test here checks them against a real build,
and the partial load against the tensors the model ends up holding.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archspec import WeightsError, analyze, compile_spec
from archspec.backends import statedicts as diff
from archspec.cli import main

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
GOLDEN = Path(__file__).parent / "golden"


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("name", ["conv_unit", "resblk", "unet_small", "resnet18", "densenet121", "vgg16"])
def test_meta_manifest_equals_a_real_build(name):
    """Keys in order, shapes, dtypes and parameter flags, as a model built in memory has them."""
    model = analyze(SPECS / f"{name}.yaml")
    assert diff.manifest(model) == diff.module_manifest(compile_spec(SPECS / f"{name}.yaml"))


def test_a_changed_head_transfers_everything_else(capsys, monkeypatch, update_golden):
    monkeypatch.chdir(ROOT)
    status, out, err = run(capsys, "diff", "specs/resnet18.yaml", "specs/resnet18.yaml", "--set-new", "num_classes=10")
    assert (status, err) == (0, "")
    golden = GOLDEN / "diff-resnet18-num_classes.out"
    if update_golden:
        golden.write_text(out)
    assert out == golden.read_text()


def test_json_lists_every_key_once(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    status, out, _ = run(capsys, "diff", "specs/resnet18.yaml", "specs/resnet34.yaml", "--format", "json")
    assert status == 0
    document = json.loads(out)
    assert (document["format"], document["version"]) == ("archspec-diff", 1)
    new = list(compile_spec(SPECS / "resnet34.yaml").state_dict())
    old = list(compile_spec(SPECS / "resnet18.yaml").state_dict())
    sides = {e["key"] for e in document["kept"]} | {e["key"] for e in document["changed"]}
    assert sides | {e["key"] for e in document["added"]} == set(new)
    assert sides | {e["key"] for e in document["removed"]} == set(old)
    assert document["parameters"] == {"old": 11_689_512, "new": 21_797_672, "transferred": 11_689_512}


def tiny(*layers, classes=4):
    return {
        "archspec": 1,
        "name": "tiny",
        "input": [3, 16, 16],
        "layers": [
            {"conv": {"name": "stem", "out": 8, "kernel": 3, "padding": 1}},
            *layers,
            {"global_avgpool": {"name": "pool"}},
            "flatten",
            {"linear": {"name": "head", "out": classes}},
        ],
    }


@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    inserted=st.lists(
        st.sampled_from(["conv", "bn", "relu"]),
        min_size=1,
        max_size=4,
    ),
    classes=st.integers(1, 6),
)
def test_inserting_layers_moves_no_other_key(inserted, classes):
    """The everyday edit: layers inserted (named, so with keys of their own) and the head resized.
    Everything that was there keeps its key and shape; only the inserted layers and the head differ."""
    forms = {
        "conv": lambda i: {"conv": {"name": f"extra{i}", "out": 8, "kernel": 3, "padding": 1}},
        "bn": lambda i: {"batchnorm": {"name": f"extra{i}"}},
        "relu": lambda i: {"relu": {"name": f"extra{i}"}},
    }
    old, new = tiny(), tiny(*(forms[kind](i) for i, kind in enumerate(inserted)), classes=classes)
    found = diff.compare(diff.manifest(analyze(old)), diff.manifest(analyze(new)))
    added = {t.key.split(".")[0] for t in found.added}
    assert added == {f"extra{i}" for i, kind in enumerate(inserted) if kind != "relu"}
    assert not found.removed
    assert {c.new.key for c in found.changed} == (set() if classes == 4 else {"head.weight", "head.bias"})
    assert {t.key for t in found.kept} == {"stem.weight", "stem.bias"} | (
        {"head.weight", "head.bias"} if classes == 4 else set()
    )


def test_partial_load_copies_exactly_what_the_diff_keeps(tmp_path):
    torch.manual_seed(0)
    trained = compile_spec(tiny({"conv": {"name": "mid", "out": 8, "kernel": 3, "padding": 1}}))
    file = tmp_path / "trained.pt"
    torch.save(trained.state_dict(), file)
    changed = tiny({"conv": {"name": "mid", "out": 16, "kernel": 3, "padding": 1}}, {"batchnorm": {"name": "bn"}})
    torch.manual_seed(1)
    fresh = compile_spec(changed).state_dict()
    torch.manual_seed(1)
    model = compile_spec(changed, weights=file, strict=False)
    report = model.weights_report
    expected = diff.compare(diff.module_manifest(trained), diff.manifest(analyze(changed)))
    assert report == expected
    assert {t.key for t in report.kept} == {"stem.weight", "stem.bias", "head.bias"}
    for key, tensor in model.state_dict().items():
        source = trained.state_dict() if key in {t.key for t in report.kept} else fresh
        assert torch.equal(tensor, source[key]), key


def test_strict_is_the_default_and_partial_reports(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    file = tmp_path / "r18.pt"
    torch.save(compile_spec(SPECS / "resnet18.yaml").state_dict(), file)
    with pytest.raises(WeightsError, match="wrong shapes"):
        compile_spec(SPECS / "resnet18.yaml", {"num_classes": 10}, weights=file)
    assert compile_spec(SPECS / "resnet18.yaml", weights=file).weights_report is None
    status, out, err = run(capsys, "build", "specs/resnet18.yaml", "--set", "num_classes=10", "--weights", str(file))
    assert status == 1 and "fc.weight" in err
    status, out, err = run(
        capsys, "build", "specs/resnet18.yaml", "--set", "num_classes=10", "--weights", str(file), "--partial"
    )
    assert status == 0, err
    assert "transferred 120/122 tensors, 11,176,512/11,181,642 parameters (99.95%)" in err
    assert "some weights from" in out


def test_a_dtype_that_changes_meaning_is_refused(tmp_path):
    """An int64 tensor is not silently cast into a float parameter, strictly or partially."""
    spec = tiny()
    state = compile_spec(spec).state_dict()
    state["stem.weight"] = state["stem.weight"].long()
    file = tmp_path / "ints.pt"
    torch.save(state, file)
    with pytest.raises(WeightsError, match=r"wrong dtypes \(file != model\) \(1\): stem.weight int64 != float32"):
        compile_spec(spec, weights=file)
    report = compile_spec(spec, weights=file, strict=False).weights_report
    assert [c.new.key for c in report.changed] == ["stem.weight"]
    half = compile_spec(spec).state_dict()
    file16 = tmp_path / "half.pt"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in half.items()}, file16)
    assert compile_spec(spec, weights=file16).weights_report is None  # a float16 checkpoint loads


@pytest.mark.parametrize(
    "argv, status, message",
    [
        (["build", "specs/conv_unit.yaml", "--partial"], 2, "--partial goes with --weights"),
        (["diff", "specs/conv_unit.yaml", "nowhere.yaml"], 2, "no such file: nowhere.yaml"),
        (["diff", "specs/conv_unit.yaml", "specs/conv_unit.yaml", "--set-new", "nope=1"], 2, "nope"),
    ],
)
def test_usage_errors(capsys, monkeypatch, argv, status, message):
    monkeypatch.chdir(ROOT)
    got, _, err = run(capsys, *argv)
    assert got == status and message in err and "Traceback" not in err


def test_a_wrong_spec_is_reported_with_its_location(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("archspec: 1\nname: bad\ninput: [3, 4, 4]\nlayers:\n  - conv: {out: 8, kernel: 7}\n")
    status, out, err = run(capsys, "diff", str(SPECS / "conv_unit.yaml"), str(bad))
    assert status == 1 and out == "" and f"{bad}:5:" in err
