"""Plugins: a layer kind of the user's own, registered from Python or with --plugin, through every stage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from pydantic import model_validator
from pydantic_core import PydanticCustomError

from archspec import SpecError, analyze, compile_spec, registry
from archspec.cli import main
from archspec.backends.emit import emit_python
from archspec.registry import fields
from archspec.registry.fields import Fields, PosInt, after
from archspec.kinds.layers import same_shape
from test_emit import assert_equivalent

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "examples" / "scaled_tanh_plugin.py"
SPEC = """\
archspec: 1
name: plugged
input: [3, 8, 8]
layers:
  - conv: {out: 4, kernel: 3}
  - scaled_tanh: 2.5
  - group:
      name: head
      layers: [scaled_tanh, conv: {out: 2, kernel: 1}]
  - residual: {body: [conv: {out: 2, kernel: 3, padding: 1}, scaled_tanh: {name: soft, scale: 0.5}]}
"""


@pytest.fixture
def plugin():
    """The example plugin loaded as --plugin loads it; unregistered afterwards."""
    from archspec.cli import load_plugin

    load_plugin(str(PLUGIN))
    yield
    registry.unregister("scaled_tanh")


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "plugged.yaml"
    path.write_text(SPEC)
    return path


def test_unknown_without_the_plugin(spec_file):
    with pytest.raises(SpecError) as exc:
        analyze(spec_file)
    assert {d.code for d in exc.value.diagnostics} == {"unknown-kind"}


def test_check_with_plugin_option(spec_file, capsys):
    status = main(["check", str(spec_file), "--plugin", str(PLUGIN)])
    registry.unregister("scaled_tanh")
    out = capsys.readouterr().out
    assert status == 0
    assert any(line.split()[:3] == ["head.0", "scaled_tanh", "(B,"] for line in out.splitlines())


def test_plugin_kind_through_check_compile_and_emit(plugin, spec_file, tmp_path):
    model = analyze(spec_file)
    assert model.body.out_shape == (2, 6, 6)
    module = compile_spec(spec_file)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        first = module[0](x)
        torch.testing.assert_close(module[1](first), 2.5 * torch.tanh(first / 2.5))
    emitted = tmp_path / "plugged.py"
    emitted.write_text(emit_python(spec_file))
    assert "class ScaledTanh(nn.Module):" in emitted.read_text()
    assert_equivalent(spec_file, emitted)


def test_plugin_fields_are_validated(plugin):
    bad = {"archspec": 1, "name": "m", "input": [3, 4], "layers": [{"scaled_tanh": {"scale": -1, "shape": 2}}]}
    with pytest.raises(SpecError) as exc:
        analyze(bad)
    assert sorted(d.code for d in exc.value.diagnostics) == ["bad-value", "unknown-field"]


def test_a_kind_without_source_form_is_refused_by_the_emitter_only(spec_file, capsys, tmp_path):
    source_less = registry.LayerKind(
        "opaque", "a plugin kind with no source form", None, lambda op, shape: (shape, 0),
        lambda op: registry.Call("Opaque"), module=lambda: torch.nn.Identity,
    )  # fmt: skip
    registry.register(source_less)
    try:
        path = tmp_path / "opaque.yaml"
        path.write_text("archspec: 1\nname: m\ninput: [3, 4]\nlayers:\n  - opaque\n")
        assert compile_spec(path)(torch.ones(1, 3, 4)).shape == (1, 3, 4)
        output = tmp_path / "m.py"
        assert main(["build", str(path), "--emit-python", "-o", str(output)]) == 1
        err = capsys.readouterr().err
        assert f"{path}:5:5: error: layer 0 (opaque): the kind gives no source form" in err
        assert "[no-source-form]" in err and not output.exists()
    finally:
        registry.unregister("opaque")


def test_a_name_taken_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.LayerKind("conv", "again", None, None, None))


def test_a_failing_plugin_is_a_usage_error(tmp_path, capsys):
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    assert main(["check", str(ROOT / "specs" / "conv_unit.yaml"), "--plugin", str(broken)]) == 2
    assert capsys.readouterr().err == f"archspec: error: plugin {broken} failed to load: RuntimeError: boom\n"
    assert main(["check", str(ROOT / "specs" / "conv_unit.yaml"), "--plugin", "no_such_module_xyz"]) == 2


def test_check_with_a_plugin_does_not_import_torch(spec_file):
    code = (
        "import sys; from archspec.cli import main; "
        f"status = main(['check', '-q', sys.argv[1], '--plugin', {str(PLUGIN)!r}]); "
        "print(status, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(spec_file)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0 False"


class BaseWindowFields(Fields):  # at module level: the model resolves its annotations here
    primary: ClassVar = "low"
    low: PosInt = 1


class WindowFields(BaseWindowFields):
    high: PosInt = 4

    @after
    def _ordered(self):
        if self.high < self.low:
            raise PydanticCustomError("bad_value", "high must be at least low")
        return self


class PydanticSpelt(BaseWindowFields):
    @model_validator(mode="after")
    def _ordered(self):
        return self


def test_a_fields_declaration_with_pydantics_validator_is_refused_at_registration():
    """A Fields declaration checks its fields together with fields.after; pydantic's own spellings
    belong to a pydantic model (a fields.Layer), whose schema pydantic makes."""
    with pytest.raises(TypeError, match="PydanticSpelt._ordered is pydantic's; .* archspec.fields.after"):
        registry.register(registry.LayerKind("spelt", "a test kind", PydanticSpelt, same_shape, lambda op: None))
    assert "spelt" not in registry.KINDS


def test_a_fields_declaration_validates_like_a_model():
    """A kind may declare its fields on a plain Fields class, as the built-in kinds do: its model is
    made at first use, with the declaration's types, defaults, primary field, validators and bases."""
    kind = registry.LayerKind("clip_window", "a test kind", WindowFields, same_shape, lambda op: registry.call("nn.Identity"))
    registry.register(kind)
    try:
        assert {f.name for f in fields.declared_fields(WindowFields)} >= {"low", "high", "name"}
        assert registry.defaults("clip_window") == {"low": 1, "high": 4}
        spec = {"archspec": 1, "name": "n", "input": [3, 4, 4], "layers": [{"clip_window": 2}, {"clip_window": {"high": 9}}]}
        assert [op.args["low"] for op in analyze(spec).body.children] == [2, 1]
        with pytest.raises(SpecError) as exc:
            analyze({**spec, "layers": [{"clip_window": {"low": 5, "high": 2}}, {"clip_window": {"wide": 1}}]})
        assert sorted(d.code for d in exc.value.diagnostics) == ["bad-value", "unknown-field"]
    finally:
        registry.unregister("clip_window")


def test_a_plugins_layer_model_has_the_fields_every_kind_has():
    """fields.Layer, the base of a plugin's pydantic model, declares what fields.Fields declares."""
    assert fields.declared_fields(fields.Layer) == fields.declared_fields(fields.Fields)


def test_fields_that_are_neither_a_model_nor_a_declaration_are_refused_at_registration():
    class Loose:  # a plain class: pydantic could not make it a model
        scale: float = 1.0

    with pytest.raises(TypeError, match="cannot register 'loose'.*not a fields.Layer or fields.Fields class"):
        registry.register(registry.LayerKind("loose", "a test kind", Loose, same_shape, lambda op: None))
    assert "loose" not in registry.KINDS


def test_a_plugins_shape_rule_is_asked_for_every_layer_even_alike_ones():
    """Alike layers share their fields, and a built-in kind's shape is made once for them; a plugin's
    rule may read more than the fields (here the layer's name, its index), so it is asked for each layer."""

    def by_name(op, shape):
        return (shape[0] + int(op.name), *shape[1:]), 0

    identity = lambda op: registry.call("nn.Identity")  # noqa: E731
    kind = registry.LayerKind("named_pad", "a test kind", WindowFields, by_name, identity)
    registry.register(kind)
    try:
        layers = [{"named_pad": {"low": 1}}, {"named_pad": {"low": 1}}, {"named_pad": {"low": 1}}]
        model = analyze({"archspec": 1, "name": "n", "input": [3, 4, 4], "layers": layers})
        assert [op.out_shape[0] for op in model.body.children] == [3, 4, 6]
    finally:
        registry.unregister("named_pad")
