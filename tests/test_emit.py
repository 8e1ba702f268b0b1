"""The emitter's contract: for every spec, the emitted source is exactly the compiled model."""

from __future__ import annotations

import functools
import importlib.util
import os
import py_compile
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import torch

import archspec
from archspec import SpecError, compile_spec
from archspec.cli import main
from archspec.backends.emit import emit_python
from archspec.registry import KINDS

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
# The checks over a set of emitted files run in the quick loop on the small specs, and on every spec
# in the full suite (as CI runs it).
SMALL_SPECS = [p for p in SPECS if p.stem in ("conv_unit", "resblk", "densenet", "unet_small", "squeezenet1_1")]
SPEC_SETS = [pytest.param(SMALL_SPECS, id="small"), pytest.param(SPECS, id="every-spec", marks=pytest.mark.slow)]


@pytest.fixture(scope="module")
def emitted(tmp_path_factory):
    """emitted(stem) -> path of that spec's emitted .py file, written on first use (emitting the whole
    zoo takes seconds; most tests need one or two specs)."""
    folder = tmp_path_factory.mktemp("emitted")

    @functools.cache
    def emit(stem: str) -> Path:
        path = folder / f"{stem}.py"
        path.write_text(emit_python(ROOT / "specs" / f"{stem}.yaml"))
        return path

    return emit


def load_class(path: Path):
    spec = importlib.util.spec_from_file_location(f"emitted_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, module.__all__[0])


def manifest(module: torch.nn.Module):
    return [(key, tuple(t.shape), t.dtype) for key, t in module.state_dict().items()]


# RegNetY-128GF's 645M parameters, in two modules at once, take about 10 GB: its emitted module is
# compared key for key on the meta device, and in numbers through RegNetY-32GF, whose code it shares.
ON_META_ONLY = {"regnet_y_128gf"}


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_emitted_module_equals_compiled_module(spec, emitted):
    if spec.stem in ON_META_ONLY:
        with torch.device("meta"):
            assert manifest(load_class(emitted(spec.stem))()) == manifest(compile_spec(spec))
        return
    assert_equivalent(spec, emitted(spec.stem))


def test_class_names_never_clash(tmp_path):
    """Custom blocks named like the emitted helper classes get distinct class names."""
    spec = tmp_path / "dense_layer.yaml"
    spec.write_text(
        "archspec: 1\nname: dense_layer\ninput: [3, 8, 8]\nlayers:\n"
        "  - residual: {name: dense_layer, body: [conv: {out: 3, kernel: 3, padding: 1}]}\n"
        "  - residual: {name: normalize, body: [normalize: {mean: [0, 0, 0], std: [1, 2, 3]}]}\n"
        "  - dense_block: {num_layers: 2, growth: 4, bn_size: 2}\n"
        "  - residual: {name: basic_block, body: [conv: {out: 11, kernel: 1}]}\n"
        "  - basic_block: 11\n"
    )
    emitted = tmp_path / "model.py"
    emitted.write_text(emit_python(spec))
    assert_equivalent(spec, emitted)


def assert_equivalent(spec: Path, emitted: Path):
    live = compile_spec(spec)
    generated = load_class(emitted)()
    assert manifest(generated) == manifest(live)
    assert tuple(generated.input_shape) == tuple(live.input_shape)
    with torch.no_grad():  # random running stats, so eval mode is not the identity on them
        for tensor in live.state_dict().values():
            if tensor.is_floating_point():  # weights scaled by fan-in: a deep net without norms stays finite
                fan_in = tensor[0].numel() if tensor.dim() > 1 else 1
                tensor.copy_((torch.rand_like(tensor) + 0.5) / fan_in)
    generated.load_state_dict(live.state_dict(), strict=True)
    batch = torch.randn(2, *live.input_shape)
    for mode in ("eval", "train"):
        live.train(mode == "train")
        generated.train(mode == "train")
        torch.manual_seed(0)
        expected = live(batch)
        torch.manual_seed(0)
        actual = generated(batch)
        torch.testing.assert_close(actual, expected, msg=f"{spec.name} differs in {mode} mode")
    torch.testing.assert_close(generated.state_dict(), live.state_dict())  # same running-stat updates


@pytest.mark.parametrize("specs", SPEC_SETS)
def test_emitted_files_pass_ruff_and_compile(emitted, specs):
    files = [str(emitted(spec.stem)) for spec in specs]
    for path in files:
        py_compile.compile(path, doraise=True)
    isolated = ["--isolated", "--line-length", "88"]
    check = subprocess.run([sys.executable, "-m", "ruff", "check", *isolated, *files], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = subprocess.run([sys.executable, "-m", "ruff", "format", "--check", *isolated, *files],
                         capture_output=True, text=True)  # fmt: skip
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


@pytest.mark.parametrize("count, width", [(2, 5), (4, 12), (6, 16), (3, 30)])
@pytest.mark.parametrize("merge", ["torch.cat([{}], 1)", "+", "*"])
def test_long_merge_lines_are_written_as_ruff_formats_them(tmp_path, count, width, merge):
    """Inception's six-way concatenations, long adds and products: each form _statement picks (one
    line, the contents on a line, one item per line) is already ruff-formatted."""
    from archspec.backends.emit import _statement

    names = [f"branch{i}_".ljust(width, "x") for i in range(count)]
    expression = merge.format(", ".join(names)) if merge.startswith("torch") else f" {merge} ".join(names)
    body = _statement("out", expression, "  # (B, 2048, 8, 8)")
    source = "def forward(self):\n    if self:\n"  # formatting only: the names need not be defined
    source += "".join(f"        {line}\n" for line in body) + "    return out\n"
    path = tmp_path / "merge.py"
    path.write_text(source)
    fmt = subprocess.run([sys.executable, "-m", "ruff", "format", "--check", "--diff", "--isolated", "--line-length",
                          "88", str(path)], capture_output=True, text=True)  # fmt: skip
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


@pytest.mark.parametrize("specs", SPEC_SETS)
def test_emitted_file_imports_only_torch(emitted, specs):  # and the standard library's OrderedDict
    for path in (emitted(spec.stem) for spec in specs):
        imports = [line for line in path.read_text().splitlines() if line.startswith(("import ", "from "))]
        assert all(line.split()[1].split(".")[0] in ("torch", "collections") for line in imports), imports
        assert "archspec" not in "\n".join(imports)


def test_running_the_file_prints_the_output_shape(emitted):
    result = subprocess.run([sys.executable, str(emitted("conv_unit"))], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "(1, 10)"


def test_num_classes_is_a_constructor_argument(emitted):
    model = load_class(emitted("resnet18"))(num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, *model.input_shape)).shape == (1, 7)


def test_emit_does_not_import_torch():
    code = (
        "import sys; from archspec.cli import main; "
        "main(['build', 'specs/densenet121.yaml', '--emit-python', '-o', sys.argv[1]]); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code, os.devnull], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- safety

HOSTILE_NAMES = [
    "a\nimport os",
    'x"); __import__("os").system("echo hacked',
    "__import__('os')",
    "conv\u202e1",  # right-to-left override
    "conv\u200b",  # zero-width space
    "c\x00",
    "class",
    "forward",
    "_private",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_are_rejected_with_a_location_and_nothing_is_written(name, tmp_path, capsys):
    spec = {"archspec": 1, "name": "m", "input": [3, 8, 8], "layers": [{"conv": {"out": 4, "kernel": 3, "name": name}}]}
    path = tmp_path / "hostile.yaml"
    import yaml

    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    output = tmp_path / "model.py"
    status = main(["build", str(path), "--emit-python", "-o", str(output)])
    err = capsys.readouterr().err
    assert status == 1
    assert f"{path}:" in err and "[bad-name]" in err
    assert not output.exists()
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize(
    "field, value",
    [("out", "4; import os"), ("kernel", "3\n"), ("padding", "same'); import os; ('"), ("bias", "True or 1")],
)
def test_hostile_values_are_rejected(field, value):
    layer = {"out": 4, "kernel": 3, field: value}
    with pytest.raises(SpecError) as exc:
        emit_python({"archspec": 1, "name": "m", "input": [3, 8, 8], "layers": [{"conv": layer}]})
    assert [d.code for d in exc.value.diagnostics] == ["bad-value"]


@pytest.mark.parametrize(
    "layer",
    [
        {"identity": {"name": "b", "from": ["a", "a"], "merge": "mul); import os; ("}},
        {"residual": {"activation": "F.relu(x)); import os; (", "body": ["relu"]}},
        {"residual": {"activation": "__import__", "body": ["relu"]}},
    ],
)
def test_hostile_merges_and_activations_are_rejected(layer):
    """Merges and residual activations are registry names; anything else never reaches the source."""
    spec = {"archspec": 1, "name": "m", "input": [3, 4], "layers": [{"relu": {"name": "a"}}, layer]}
    with pytest.raises(SpecError) as exc:
        emit_python(spec)
    assert [d.code for d in exc.value.diagnostics] == ["bad-value"]


def test_hostile_spec_name_and_path_stay_out_of_the_source(tmp_path):
    folder = tmp_path / 'we"ird\u202e'
    folder.mkdir()
    spec = folder / "m.yaml"
    spec.write_text("archspec: 1\nname: m\ninput: [3, 8, 8]\nlayers: [relu]\n")
    source = emit_python(spec)
    assert "\u202e" not in source and 'we"ird' not in source
    compile(source, "m.py", "exec")


# ---------------------------------------------------------------- no lost work


def test_failed_emit_leaves_the_existing_file_untouched(tmp_path, capsys):
    output = tmp_path / "model.py"
    output.write_text("precious")
    bad = tmp_path / "bad.yaml"
    bad.write_text("archspec: 1\nname: m\ninput: [3, 4, 4]\nlayers:\n  - conv: {out: 8, kernel: 9}\n")
    assert main(["build", str(bad), "--emit-python", "-o", str(output)]) == 1
    assert output.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "model.py"]


def test_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch, capsys):
    output = tmp_path / "model.py"
    output.write_text("precious")

    def fail(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    status = main(["build", str(ROOT / "specs" / "conv_unit.yaml"), "--emit-python", "-o", str(output)])
    assert status == 2
    assert "cannot write" in capsys.readouterr().err
    assert output.read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir()] == ["model.py"]


def test_refuses_to_write_into_a_directory(tmp_path, capsys):
    status = main(["build", str(ROOT / "specs" / "conv_unit.yaml"), "--emit-python", "-o", str(tmp_path)])
    assert status == 2
    assert "is a directory" in capsys.readouterr().err


# ---------------------------------------------------------------- packaging


@pytest.mark.skipif(os.environ.get("ARCHSPEC_SKIP_WHEEL") == "1", reason="ARCHSPEC_SKIP_WHEEL=1")
def test_installed_wheel_can_emit(tmp_path):
    """Templates are package data: a non-editable install into a fresh venv can emit."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(wheels), str(ROOT)], check=True)  # fmt: skip
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=True)  # torch, pydantic etc. come from the system
    python = env_dir / "bin" / "python"
    wheel = next(wheels.glob("archspec_nn-*.whl"))
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)], check=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    code = (
        "import archspec, sys; from archspec.backends.emit import emit_python; "
        "assert archspec.__file__.startswith(sys.prefix), archspec.__file__; "
        "print(emit_python(sys.argv[1]))"
    )
    result = subprocess.run([python, "-c", code, str(ROOT / "specs" / "densenet.yaml")], cwd=work,
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "class Densenet(nn.Module):" in result.stdout
    version = subprocess.run([env_dir / "bin" / "archspec", "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"archspec-nn {archspec.__version__}"
    shipped = "import importlib.resources as r; print(r.files('archspec').joinpath('spec.schema.json').read_text())"
    schema = subprocess.run([python, "-c", shipped], cwd=work, capture_output=True, text=True, check=True)
    assert schema.stdout.rstrip("\n") == (ROOT / "archspec" / "spec.schema.json").read_text().rstrip("\n")


def test_user_blocks_become_one_parameterised_class_when_their_uses_allow(tmp_path):
    """Uses that differ only by arguments and input channels share a class; others are written out."""
    spec = tmp_path / "blocks.yaml"
    spec.write_text(
        "archspec: 1\nname: blocks\ninput: [3, 8, 8]\nblocks:\n"
        "  unit:\n    params: {out: int}\n"
        "    layers: [conv: {name: conv, out: out, kernel: 3, padding: 1}, batchnorm: {name: bn}]\n"
        "  grow:\n    params: {out: int}\n"
        "    layers: [conv: {name: conv, out: out, kernel: i * 2 + 1, padding: i}]\n"
        "layers:\n  - unit: {name: a, out: 4}\n  - unit: {name: b, out: 6}\n"
        "  - grow: {name: g, out: 5, repeat: 2}\n"
    )
    emitted = tmp_path / "model.py"
    emitted.write_text(emit_python(spec))
    source = emitted.read_text()
    assert "class Unit(nn.Sequential):" in source
    assert "self.a = Unit(3, 4)" in source and "self.b = Unit(4, 6)" in source
    assert "class Grow" not in source  # its kernel varies with the repeat index, not with a parameter
    assert_equivalent(spec, emitted)


def test_num_classes_var_is_an_argument_wherever_it_flows(tmp_path):
    spec = tmp_path / "heads.yaml"
    spec.write_text(
        "archspec: 1\nname: heads\ninput: [3, 8, 8]\nvars: {num_classes: 6}\nlayers:\n"
        "  - conv: {name: seg, out: num_classes, kernel: 1}\n"
        "  - batchnorm: {name: bn}\n  - global_avgpool\n  - flatten\n"
        "  - linear: {name: fc, out: num_classes}\n  - relu\n"
        "  - linear: {name: out, out: 3}\n"
    )
    emitted = tmp_path / "heads.py"
    emitted.write_text(emit_python(spec))
    source = emitted.read_text()
    assert "def __init__(self, num_classes: int = 6) -> None:" in source
    assert "nn.Conv2d(3, num_classes, kernel_size=1)" in source
    assert "nn.BatchNorm2d(num_classes)" in source and "nn.Linear(num_classes, 3)" in source
    assert "nn.Linear(num_classes, num_classes)" in source
    assert_equivalent(spec, emitted)
    for n in (2, 11):
        model = load_class(emitted)(num_classes=n)
        live = compile_spec(spec, overrides={"num_classes": n})
        assert manifest(model) == manifest(live)
        assert model.seg.out_channels == n and model.fc.out_features == n and model.out.in_features == n


def test_num_classes_reaches_into_block_classes_and_stays_out_where_no_argument_carries_it(tmp_path):
    spec = tmp_path / "inner.yaml"
    spec.write_text(
        "archspec: 1\nname: inner\ninput: [3, 8, 8]\nvars: {num_classes: 4}\nlayers:\n"
        "  - residual: {name: block, body: [conv: {out: num_classes, kernel: 1}]}\n"
    )
    emitted = tmp_path / "inner.py"
    emitted.write_text(emit_python(spec))
    source = emitted.read_text()
    assert "self.block = Block(num_classes)" in source and "def __init__(self, num_classes: int) -> None:" in source
    assert_equivalent(spec, emitted)
    assert load_class(emitted)(num_classes=9)(torch.zeros(1, 3, 8, 8)).shape == (1, 9, 8, 8)

    doubled = tmp_path / "doubled.yaml"  # 2 * num_classes: no argument of the class is that value
    doubled.write_text(spec.read_text().replace("out: num_classes", "out: 2 * num_classes"))
    emitted.write_text(emit_python(doubled))
    assert "num_classes: int" not in emitted.read_text()
    assert_equivalent(doubled, emitted)


def test_a_user_block_holding_a_residual_is_one_parameterised_class(tmp_path):
    spec = tmp_path / "units.yaml"
    spec.write_text(
        "archspec: 1\nname: units\ninput: [3, 8, 8]\nblocks:\n"
        "  unit:\n    params: {out: int, self: 1}\n    layers:\n"
        "      - residual:\n          name: res\n          body:\n"
        "            - conv: {name: conv1, out: out, kernel: 3, padding: 1, stride: self}\n"
        "            - batchnorm: {name: bn1}\n"
        "      - relu: {name: act}\n"
        "layers:\n  - unit: {name: a, out: 6}\n  - unit: {name: b, out: 10}\n  - unit: {name: c, out: 5, self: 2}\n"
    )
    emitted = tmp_path / "units.py"
    emitted.write_text(emit_python(spec))
    source = emitted.read_text()
    assert source.count("class Unit(") == 1 and source.count("class Res(") == 1
    assert "self.a = Unit(3, 6, 1)" in source and "self.c = Unit(10, 5, 2)" in source
    assert "def __init__(self, in_channels: int, out: int, self_: int) -> None:" in source
    assert_equivalent(spec, emitted)


PARAMETER_KINDS = sorted(name for name, kind in KINDS.items() if getattr(kind, "parameter", False))


@pytest.mark.parametrize("uses", [1, 2])
@pytest.mark.parametrize("kind", PARAMETER_KINDS)
def test_a_user_block_holding_a_bare_parameter_applies_it(kind, uses, tmp_path):
    """A bare parameter (layer_scale) among a user block's own layers: nn.Sequential would hold it and
    never apply it, keys equal and the output off (issue 29's silent miscompile)."""
    spec = tmp_path / "scaled.yaml"
    spec.write_text(
        "archspec: 1\nname: scaled\ninput: [3, 8, 8]\nblocks:\n"
        f"  scaled:\n    params: {{c: int}}\n    layers: [conv: {{out: c, kernel: 1}}, {kind}]\n"
        "layers:\n" + "".join(f"  - scaled: {{c: {4 + i}}}\n" for i in range(uses))
    )
    emitted = tmp_path / "model.py"
    emitted.write_text(emit_python(spec))
    assert "(nn.Sequential)" not in emitted.read_text()
    assert_equivalent(spec, emitted)


SHADOWED = {  # a class the emitted file defines: the layer that makes it write the class
    "Inner": "inner: {c: 9}",
    "Normalize": "normalize: {mean: [0, 0, 0, 0, 0, 0, 0, 0, 0], std: [1, 1, 1, 1, 1, 1, 1, 1, 1]}",
    "LayerNorm2d": "layernorm2d",
    "StochasticDepth": "stochastic_depth: 0.2",
    "SqueezeExcitation": "squeeze_excite: {squeeze: 2}",
    "Chunk": "chunk: {parts: 3, index: 1}",
    "Permute": "permute: [0, 1, 3, 2]",
}


@pytest.mark.parametrize("where", ["first", "inside"])
def test_block_parameters_named_like_the_files_classes_hide_none(where, tmp_path):
    """Parameters named like a class the file writes (`Normalize: int`) would make the class an int
    inside the block's constructor (issue 29): the parameter, or the class, is renamed instead. The
    classes are written before the block's class (`first`) or while it is (`inside` only)."""
    params = ", ".join(f"{name}: int" for name in SHADOWED)
    convs = "".join(f"      - conv: {{out: {name}, kernel: 1}}\n" for name in SHADOWED)
    layers = "".join(f"      - {layer}\n" for layer in SHADOWED.values())
    spec = tmp_path / "shadow.yaml"
    spec.write_text(
        "archspec: 1\nname: shadow\ninput: [9, 8, 8]\nblocks:\n"
        "  inner:\n    params: {c: int}\n    layers: [conv: {out: c, kernel: 1}]\n"
        f"  outer:\n    params: {{{params}}}\n    layers:\n{convs}      - conv: {{out: 9, kernel: 1}}\n{layers}"
        "layers:\n"
        + (layers.replace("      - ", "  - ") if where == "first" else "")
        + "  - outer: {" + ", ".join(f"{name}: {i + 3}" for i, name in enumerate(SHADOWED)) + "}\n"
    )
    emitted = tmp_path / "model.py"
    emitted.write_text(emit_python(spec))
    assert_equivalent(spec, emitted)


@pytest.mark.parametrize(
    "head",
    ["conv: {out: num_classes, kernel: 1}", "conv: {out: 2 * num_classes, kernel: 1}", "conv: {out: 8, kernel: 1}",
     "conv: {out: num_classes + 1, kernel: 1}", "linear: {out: num_classes}"],
)
def test_the_num_classes_argument_is_the_var_or_absent(head, tmp_path):
    """Model(num_classes=n) is the spec with num_classes = n wherever the var flows; where it flows
    into a value the argument cannot carry (2 * num_classes), the model takes no such argument
    (it changed the classifier alone, issue 29)."""
    spec = tmp_path / "heads.yaml"
    flat = "linear" not in head
    spec.write_text(
        "archspec: 1\nname: heads\ninput: [3, 8, 8]\nvars: {num_classes: 5}\nlayers:\n"
        + ("" if flat else "  - flatten\n")
        + f"  - {head}\n"
        + ("  - global_avgpool\n  - flatten\n  - linear: num_classes\n" if flat else "")
    )
    emitted = tmp_path / "model.py"
    emitted.write_text(emit_python(spec))
    generated = load_class(emitted)
    if "num_classes: int" in emitted.read_text():
        for n in (5, 6, 11):
            assert manifest(generated(num_classes=n)) == manifest(compile_spec(spec, overrides={"num_classes": n}))
    else:
        with pytest.raises(TypeError):
            generated(num_classes=6)
        assert manifest(generated()) == manifest(compile_spec(spec))
