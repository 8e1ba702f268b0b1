"""A fuzzer over every entry point: whatever a spec holds, archspec ends in success or a clean error.

Inputs are real specs from specs/ mutated at random (values replaced by hostile ones, keys dropped
or invented, layers duplicated or moved, subtrees swapped), their YAML text corrupted character by
character, and hostile specs generated from the classes of input in docs/limits.md. For each one:

- the Python API (`analyze`, `emit_python`, and building the module on torch's meta device, which
  allocates nothing) returns or raises SpecError with located diagnostics;
- the CLI (`check`, `build --emit-python -o FILE`, in-process) exits 0, 1 or 2 with no traceback;
- it takes at most SECONDS, and leaves no file behind but the one it was asked to write.

CI runs a fixed, reproducible budget. A longer, random run is one command:
    ARCHSPEC_FUZZ_EXAMPLES=5000 python3 -m pytest tests/test_fuzz.py -p no:cacheprovider
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import examples, time_limit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archspec import SpecError, UsageError, analyze
from archspec.cli import main
from archspec.backends.emit import emit_python

ROOT = Path(__file__).resolve().parent.parent
SEEDS = [
    *("conv_unit", "resblk", "densenet", "unet_small", "resnet18", "vgg11_bn", "densenet169"),
    *("mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "shufflenet_v2_x0_5", "googlenet"),
]
SECONDS = 20  # per input and entry point; the slowest seed takes well under a second
EXAMPLES = int(os.environ.get("ARCHSPEC_FUZZ_EXAMPLES", "0")) or None
FUZZ = settings(
    max_examples=EXAMPLES or examples(60),  # conftest.examples: fewer in the quick loop
    derandomize=EXAMPLES is None,  # CI: the same inputs on every run; a long run explores
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A copy of specs/, so that mutated specs can extend the real bases."""
    target = tmp_path_factory.mktemp("fuzz") / "specs"
    shutil.copytree(ROOT / "specs", target)
    return target


def seed_data(name: str):
    return yaml.safe_load((ROOT / "specs" / f"{name}.yaml").read_text())


# ---------------------------------------------------------------- what a mutation puts in

HOSTILE_NUMBERS = st.sampled_from(
    [0, -1, 1, 2, 3, 7, 1000, 10**6, 10**9, 2**31, 2**63, 10**40, 10**300, -(10**30), 0.5, -0.0, 1e-300, 1e308, 2.5]
) | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True)
HOSTILE_TEXT = st.sampled_from(
    [
        "", "x", "relu", "conv", "input", "i", "num_classes", "__class__", "__import__('os').system('true')",
        "1/0", "2 ** 4096", "9 ** 9 ** 9", "10 ** 100", "(" * 200 + "1" + ")" * 200, "+".join(["1"] * 3000),
        "growth * growth * growth * growth", "depths[100]", "depths[-1]", "sum(1)", "make_divisible(1, 0)",
        "min()", "ceil(1e308 * 10)", "int(1e308 * 10)", "round(1, 10**9)", "a" * 300, "ü", "layer.0", "x-y",
        "1e308", "nan", ".inf", "true", "null", "${HOME}", "../" * 40 + "etc/passwd", "/dev/zero", "-1",
    ]
) | st.text(max_size=40)
SCALARS = HOSTILE_NUMBERS | HOSTILE_TEXT | st.sampled_from([None, True, False])
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | HOSTILE_TEXT, inner, max_size=3),
    max_leaves=8,
)
KEYS = st.sampled_from(
    [
        "repeat", "first", "from", "merge", "name", "layers", "body", "shortcut", "activation", "times", "index",
        "extends", "override", "vars", "blocks", "params", "input", "num_layers", "growth", "out", "kernel",
        "stride", "padding", "dilation", "groups", "scale", "p", "size", "inplace", "memory_efficient", "bogus",
    ]
)


def paths(data, prefix=()):
    """Every (path, value) in a tree of dicts and lists, the root included."""
    found = [(prefix, data)]
    if isinstance(data, dict):
        for key, value in data.items():
            found += paths(value, prefix + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += paths(value, prefix + (index,))
    return found


def at(data, path):
    for step in path:
        data = data[step]
    return data


@st.composite
def mutated(draw):
    """A seed spec with one to four random mutations, as YAML text."""
    name = draw(st.sampled_from(SEEDS))
    data = seed_data(name)
    for _ in range(draw(st.integers(1, 4))):
        everything = paths(data)
        path, value = draw(st.sampled_from(everything))
        action = draw(st.sampled_from(["replace", "replace", "delete", "add", "duplicate", "swap", "grow"]))
        parent = at(data, path[:-1]) if path else None
        if action == "replace" and path:
            parent[path[-1]] = draw(VALUES)
        elif action == "delete" and path:
            del parent[path[-1]]
        elif action == "add" and isinstance(value, dict):
            value[draw(KEYS)] = draw(VALUES)
        elif action == "add" and isinstance(value, list):
            value.insert(draw(st.integers(0, len(value))), draw(VALUES))
        elif action == "duplicate" and isinstance(value, list) and value:
            item = draw(st.sampled_from(value))
            value.extend(copy.deepcopy(item) for _ in range(draw(st.integers(1, 5))))
        elif action == "swap" and path:
            _, other = draw(st.sampled_from(everything))
            parent[path[-1]] = copy.deepcopy(other)
        elif action == "grow" and isinstance(value, dict):
            value["repeat"] = draw(st.sampled_from([0, 2, 50, 10**4, 10**7, 10**12, "10 ** 9", -3, 1.5]))
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


YAML_CHARACTERS = ":-[]{}&*!|>'\"#%@`, \n\t0123456789ax"


@st.composite
def corrupted(draw):
    """A seed spec's text with characters inserted, deleted or repeated at random."""
    text = (ROOT / "specs" / f"{draw(st.sampled_from(SEEDS))}.yaml").read_text()
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "repeat_line", "indent"]))
        if action == "insert":
            inserted = draw(st.text(alphabet=YAML_CHARACTERS, max_size=6))
            text = text[:position] + inserted + text[position:]
        elif action == "delete":
            text = text[:position] + text[position + draw(st.integers(1, 40)) :]
        elif action == "repeat_line":
            start = text.rfind("\n", 0, position) + 1
            end = text.find("\n", position)
            line = text[start : end if end >= 0 else len(text)]
            text = text[:start] + (line + "\n") * draw(st.integers(1, 30)) + text[start:]
        else:
            start = text.rfind("\n", 0, position) + 1
            text = text[:start] + " " * draw(st.sampled_from([1, 2, 4])) + text[start:]
    return text


HEAD = "archspec: 1\nname: hostile\ninput: [3, 32, 32]\n"


def fanout(n: int) -> str:
    """Blocks that each use the next twice: 2**n layers in n lines."""
    uses = "".join(f"  b{i}:\n    layers:\n      - b{i + 1}\n      - b{i + 1}\n" for i in range(n))
    return HEAD + "blocks:\n" + uses + f"  b{n}:\n    layers: [relu]\nlayers:\n  - b0\n"


def nested(n: int) -> str:
    """Groups in groups, n deep (three YAML levels each)."""
    return HEAD + "layers:\n  - " + "{group: {layers: [" * n + "relu" + "]}}" * n + "\n"


def squaring(n: int) -> str:
    """Each var the square of the one before: 2**(2**n)."""
    squares = "".join(f"  v{i}: v{i - 1} * v{i - 1}\n" for i in range(1, n))
    return HEAD + "vars:\n  v0: 2\n" + squares + f"layers:\n  - linear: v{n - 1}\n"


def reversed_vars(n: int) -> str:
    """n vars, each defined by the next one."""
    chain = "".join(f"  v{i}: v{i + 1} + 1\n" for i in range(n))
    return HEAD + "vars:\n" + chain + f"  v{n}: 1\nlayers:\n  - linear: v0\n"


def aliases(n: int) -> str:
    """Each anchored list holds the one before twice: 2**n relus once the aliases are expanded."""
    lists = "".join(f"  - &a{i} [*a{i - 1}, *a{i - 1}]\n" for i in range(1, n))
    return "archspec: 1\nname: a\ninput: [3, 8, 8]\nlayers:\n  - &a0 [relu, relu]\n" + lists


@st.composite
def hostile(draw):
    """Specs built to cost too much: fan-out, deep nesting, long or huge arithmetic, huge shapes. Sizes
    are either modest or far past the limits (a 100,000-layer spec is legitimate, and slow to build)."""
    n = draw(st.sampled_from([2, 10, 40, 200, 1000, 5000]))
    huge = draw(st.sampled_from([2, 100, 10**7, 10**9, 10**12, 10**30]))
    conv = "layers:\n  - conv: {out: 8, kernel: 3}\n"
    forms = {
        "fanout": lambda: fanout(min(n, 60)),
        "repeat": lambda: HEAD + f"layers:\n  - conv: {{out: 4, kernel: 1, repeat: {huge}}}\n",
        "dense": lambda: HEAD + f"layers:\n  - dense_block: {{num_layers: {huge}, growth: 4}}\n",
        "nested": lambda: nested(min(n, 400)),
        "expression": lambda: HEAD + f"layers:\n  - linear: {'+'.join(['1'] * n)}\n",
        "power": lambda: squaring(min(n, 80)),
        "reversed_vars": lambda: reversed_vars(n),
        "big_input": lambda: f"archspec: 1\nname: big\ninput: [3, {10 ** min(n, 4000)}, {huge}]\n" + conv,
        "upsample": lambda: HEAD + "layers:\n  - upsample: 1.0e308\n",
        "aliases": lambda: aliases(min(n, 31)),
    }
    return forms[draw(st.sampled_from(sorted(forms)))]()


# ---------------------------------------------------------------- the oracle


def assert_clean(error: SpecError) -> None:
    assert error.diagnostics, "a SpecError with no diagnostic"
    text = str(error)
    assert "Traceback" not in text
    assert len(text) < 200_000, f"{len(text):,} characters of errors"


def run_api(path: Path) -> None:
    with time_limit(SECONDS, "analyze"):
        try:
            model = analyze(path)
        except SpecError as error:
            assert_clean(error)
            return
        except UsageError:
            return
    with time_limit(SECONDS, "emit_python"):
        try:
            source = emit_python(path)
        except SpecError as error:
            assert_clean(error)
            return
    compile(source, "<emitted>", "exec")  # a SyntaxError is an emitter bug
    import torch

    from archspec.backends.live import build_model

    with time_limit(SECONDS, "build on meta"), torch.device("meta"):
        build_model(model)


def run_cli(*argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with time_limit(SECONDS, " ".join(argv)), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    assert code in (0, 1, 2), code
    assert "Traceback" not in err.getvalue()
    assert len(err.getvalue()) < 200_000, f"{len(err.getvalue()):,} characters on stderr"
    return code, err.getvalue()


def fuzz_one(folder: Path, text: str) -> None:
    path = folder / "fuzzed.yaml"
    output = folder / "fuzzed_out.py"
    path.write_text(text)
    before = set(folder.iterdir())
    try:
        run_api(path)
        run_cli("check", str(path))
        code, _ = run_cli("build", str(path), "--emit-python", "-o", str(output))
        assert output.exists() == (code == 0)
        assert set(folder.iterdir()) == before | ({output} if code == 0 else set()), "a stray file"
    finally:
        output.unlink(missing_ok=True)


@FUZZ
@given(text=mutated())
def test_mutated_specs_end_cleanly(folder, text):
    fuzz_one(folder, text)


@FUZZ
@given(text=corrupted())
def test_corrupted_yaml_ends_cleanly(folder, text):
    fuzz_one(folder, text)


@settings(FUZZ, max_examples=EXAMPLES or examples(30))
@given(text=hostile())
def test_hostile_specs_end_cleanly_and_quickly(folder, text):
    fuzz_one(folder, text)
