"""Hostile files and paths (issue 11): whatever a spec path, an `extends:`, an output path, a
weights file or a spec's size is, archspec ends in a clear, located error or a usage error, never
in a hang, a traceback, an exhausted machine, or a replaced device node. docs/limits.md says what
archspec does with each class of input; every example of the issue has a test here.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from archspec import Limits, SpecError, UsageError, WeightsError, analyze
from archspec.cli import main
from archspec.core.limits import MiB

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
GOOD = "archspec: 1\nname: good\ninput: [3, 8, 8]\nlayers:\n  - conv: {out: 4, kernel: 3}\n  - flatten\n  - linear: 2\n"
POSIX = pytest.mark.skipif(os.name != "posix", reason="FIFOs, device nodes and symlinks as on POSIX")
ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0


def run(capsys, *argv):
    status = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return status, out, err


def cli(*argv, timeout=60, **kwargs):
    """archspec in its own process, so that a hang is a failed test, not a hung suite."""
    if "stdout" not in kwargs and "stderr" not in kwargs:
        kwargs["capture_output"] = True
    return subprocess.run(
        [sys.executable, "-m", "archspec", *map(str, argv)], cwd=ROOT, text=True, timeout=timeout, **kwargs
    )


def spec(folder: Path, name: str, text: str = GOOD) -> Path:
    path = folder / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------- files and paths


def test_a_spec_over_the_size_limit_is_refused_before_it_is_read(tmp_path, capsys):
    sparse = tmp_path / "huge.yaml"
    with open(sparse, "wb") as file:
        file.truncate(1 << 30)  # 1 GiB, sparse: nothing to read, but reading it would take 1 GiB
    status, out, err = run(capsys, "check", sparse)
    assert status == 1 and out == ""
    assert err.splitlines()[0] == (
        f"{sparse}:1:1: error: the file is 1 GiB, more than a spec may be "
        "(limit spec_bytes = 16 MiB; raise it with --limit spec_bytes=N or archspec.Limits(spec_bytes=N)) [limit]"
    )
    with pytest.raises(SpecError, match="limit spec_bytes"):
        analyze(sparse)


def test_the_spec_size_limit_can_be_lowered_and_raised(tmp_path, capsys):
    path = spec(tmp_path, "good.yaml", GOOD + "# padding\n" * 200)
    assert run(capsys, "check", "-q", path, "--limit", "spec_bytes=1K")[0] == 1
    assert run(capsys, "check", "-q", path, "--limit", "spec_bytes=1M")[0] == 0
    with pytest.raises(SpecError, match="more than a spec may be"):
        analyze(path, limits=Limits(spec_bytes=1024))


@POSIX
@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_a_device_is_not_read_as_a_spec(capsys):
    status, out, err = run(capsys, "check", "/dev/zero")
    assert (status, out, err) == (2, "", "archspec: error: /dev/zero is a character device, not a spec file\n")


@POSIX
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    result = cli("check", fifo, timeout=60)  # before the fix, this waited for a writer forever
    assert result.returncode == 2
    assert result.stderr == f"archspec: error: {fifo} is a FIFO (named pipe), not a spec file\n"


def test_a_directory_is_a_usage_error(tmp_path, capsys):
    status, _, err = run(capsys, "check", tmp_path)
    assert status == 2 and err == f"archspec: error: {tmp_path} is a directory, not a spec file\n"


@POSIX
@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda folder: folder / ("a" * 300 + ".yaml"), "File name too long"),
        (lambda folder: _loop(folder), "Too many levels of symbolic links"),
        (lambda folder: spec(folder, "plain.yaml") / "x.yaml", "Not a directory"),
    ],
    ids=["name-too-long", "symlink-loop", "not-a-directory"],
)
def test_a_path_the_system_refuses_is_a_usage_error(tmp_path, capsys, make, reason):
    path = make(tmp_path)
    status, out, err = run(capsys, "check", path)
    assert status == 2 and out == ""
    assert err.startswith("archspec: error: cannot read ") and err.endswith(f": {reason}\n")
    with pytest.raises(UsageError, match=reason):
        analyze(path)


def _loop(folder: Path) -> Path:
    loop = folder / "loop.yaml"
    os.symlink(loop.name, loop)
    return loop


@pytest.mark.skipif(ROOT_USER or os.name != "posix", reason="root reads any file")
def test_a_file_without_read_permission_is_a_usage_error(tmp_path, capsys):
    path = spec(tmp_path, "secret.yaml")
    path.chmod(0)
    status, _, err = run(capsys, "check", path)
    assert status == 2 and err == f"archspec: error: cannot read {path}: Permission denied\n"


@POSIX
@pytest.mark.parametrize(
    "target, message",
    [
        ("a" * 300 + ".yaml", "File name too long"),
        ("a\\0b.yaml", "a path cannot hold a NUL byte"),
        ("loop.yaml", "Too many levels of symbolic links"),
        ("plain.yaml/base.yaml", "Not a directory"),
        ("folder", "is a directory, not a spec file"),
        ("fifo.yaml", "is a FIFO (named pipe), not a spec file"),
    ],
    ids=["name-too-long", "nul-byte", "symlink-loop", "not-a-directory", "directory", "fifo"],
)
def test_an_extends_the_system_refuses_is_reported_at_its_line(tmp_path, capsys, target, message):
    _loop(tmp_path)
    spec(tmp_path, "plain.yaml")
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "fifo.yaml")
    child = spec(tmp_path, "child.yaml", f'name: child\nextends: "{target}"\n')
    status, out, err = run(capsys, "check", child)
    assert status == 1 and out == ""
    first, summary = err.splitlines()
    assert first.startswith(f"{child}:2:10: error: extends: ") and first.endswith(f"{message} [bad-extends]")
    assert summary == "found 1 error"


def test_an_extends_of_a_nested_base_names_the_spec_that_extended_it(tmp_path, capsys):
    middle = spec(tmp_path, "middle.yaml", "extends: nowhere/far.yaml\n")
    child = spec(tmp_path, "child.yaml", "name: child\nextends: middle.yaml\n")
    status, _, err = run(capsys, "check", child)
    assert status == 1
    assert err.splitlines()[:2] == [
        f"{middle}:1:10: error: extends: no such file {tmp_path / 'nowhere/far.yaml'} [bad-extends]",
        f"{child}:2:10: note: in {middle}, extended here",
    ]


@pytest.mark.parametrize(
    "content, error",
    [
        (b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n", "a spec is a mapping"),
        (b"\x7fELF\x02\x01\x01\x00\x00\x00\xff\xfe\x00binary", "the file is not UTF-8 text"),
        (b"key: [unclosed\n", "invalid YAML"),
    ],
    ids=["passwd", "binary", "not-yaml"],
)
def test_a_base_that_is_not_a_spec_names_the_spec_that_extended_it(tmp_path, capsys, content, error):
    base = tmp_path / "base.txt"
    base.write_bytes(content)
    middle = spec(tmp_path, "middle.yaml", "name: middle\nextends: base.txt\n")
    child = spec(tmp_path, "child.yaml", "extends: middle.yaml\nname: child\n")
    status, _, err = run(capsys, "check", child)
    assert status == 1
    lines = err.splitlines()
    assert lines[0].startswith(f"{base}:") and error in lines[0]
    assert lines[1:4] == [
        f"{middle}:2:10: note: in {base}, extended here",
        f"{child}:1:10: note: in {middle}, extended here",
        "found 1 error",
    ]


def test_a_base_over_the_size_limit_names_the_spec_that_extended_it(tmp_path, capsys):
    base = tmp_path / "base.yaml"
    with open(base, "wb") as file:
        file.truncate(32 * MiB)
    child = spec(tmp_path, "child.yaml", "extends: base.yaml\n")
    status, _, err = run(capsys, "check", child)
    assert status == 1
    assert err.splitlines()[:2] == [
        f"{base}:1:1: error: the file is 32 MiB, more than a spec may be (limit spec_bytes = 16 MiB; "
        "raise it with --limit spec_bytes=N or archspec.Limits(spec_bytes=N)) [limit]",
        f"{child}:1:10: note: in {base}, extended here",
    ]


def test_an_extends_chain_longer_than_the_depth_limit_is_refused(tmp_path, capsys):
    spec(tmp_path, "s0.yaml")
    for i in range(1, 6):
        spec(tmp_path, f"s{i}.yaml", f"extends: s{i - 1}.yaml\nname: s{i}\n")
    status, _, err = run(capsys, "check", "-q", tmp_path / "s5.yaml", "--limit", "depth=4")
    assert status == 1 and "extends: the chain of bases is more than 4 specs long (limit depth = 4;" in err
    assert run(capsys, "check", "-q", tmp_path / "s5.yaml", "--limit", "depth=6")[0] == 0


def test_one_line_yaml_text_over_255_bytes_is_text_not_a_path():
    text = "{archspec: 1, name: good, input: [3, 8, 8], layers: [{conv: {out: 4, kernel: 3}}]}  # " + "n" * 300
    assert analyze(text).name == "good"
    with pytest.raises(SpecError):  # not an OSError from treating it as a file name
        analyze("x" * 300)


def test_yaml_nesting_beyond_the_limit_is_refused_before_composing(tmp_path):
    """libyaml composes recursively in C: 50,000 nested brackets overflowed its stack (a segfault)."""
    deep = spec(tmp_path, "deep.yaml", "[" * 50_000 + "]" * 50_000)
    unclosed = spec(tmp_path, "unclosed.yaml", "- " * 40_000 + "a")
    for path in (deep, unclosed):
        result = cli("check", path)
        assert result.returncode == 1, result.stderr
        assert "nested more than 100 deep (limit depth = 100;" in result.stderr
    result = cli("check", deep, "--limit", "depth=1000000")  # libyaml's own bound: 5,000 levels, or 1,000 (PyYAML 6.0.4)
    assert result.returncode == 1 and "the YAML reader goes" in result.stderr and "[limit]" in result.stderr


def test_yaml_nodes_beyond_the_limit_are_refused(tmp_path, capsys):
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(12)
    )
    path = spec(tmp_path, "laughs.yaml", laughs)
    status, _, err = run(capsys, "check", path)
    assert status == 1 and "more than 1,000,000 nodes once aliases are expanded (limit yaml_nodes" in err
    status, _, err = run(capsys, "check", path, "--limit", "yaml_nodes=50")
    assert status == 1 and "more than 50 nodes" in err and "[limit]" in err


# ---------------------------------------------------------------- writing output


ONLY_FILES = "archspec writes only a regular file or a new path"


def emit(capsys, output, *more):
    return run(capsys, "build", SPECS / "conv_unit.yaml", "--emit-python", "-o", output, *more)


@POSIX
def test_output_over_a_fifo_is_refused(tmp_path):
    fifo = tmp_path / "model.py"
    os.mkfifo(fifo)
    result = cli("build", SPECS / "conv_unit.yaml", "--emit-python", "-o", fifo)
    assert result.returncode == 2
    assert "it is a FIFO (named pipe); archspec writes only a regular file or a new path" in result.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@POSIX
def test_output_over_a_device_is_refused(tmp_path, capsys):
    """As root, `-o /dev/null` once replaced the system's /dev/null by a regular file. Tested on a
    device node of its own where root can make one (never on /dev/null as root)."""
    if ROOT_USER:
        device = tmp_path / "null"
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    else:
        device = Path("/dev/null")  # only root could replace it
    status, out, err = emit(capsys, device)
    assert status == 2 and out == ""
    assert err == f"archspec: error: cannot write {device}: it is a character device; {ONLY_FILES}\n"
    assert stat.S_ISCHR(os.lstat(device).st_mode)


@POSIX
def test_output_keeps_an_existing_files_mode_and_new_files_follow_the_umask(tmp_path, capsys):
    existing = tmp_path / "existing.py"
    existing.write_text("old")
    existing.chmod(0o640)
    previous = os.umask(0o022)
    try:
        assert emit(capsys, existing)[0] == 0
        assert stat.S_IMODE(existing.stat().st_mode) == 0o640 and "class" in existing.read_text()
        assert emit(capsys, tmp_path / "new.py")[0] == 0
        assert stat.S_IMODE((tmp_path / "new.py").stat().st_mode) == 0o644
        os.umask(0o077)
        assert emit(capsys, tmp_path / "private.py")[0] == 0
        assert stat.S_IMODE((tmp_path / "private.py").stat().st_mode) == 0o600
    finally:
        os.umask(previous)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.py", "new.py", "private.py"]  # no temporary left


@POSIX
def test_output_through_a_symlink_replaces_the_file_and_keeps_the_link(tmp_path, capsys):
    real = tmp_path / "real.py"
    real.write_text("old")
    link = tmp_path / "link.py"
    os.symlink(real.name, link)
    assert emit(capsys, link)[0] == 0
    assert link.is_symlink() and "class" in real.read_text()
    dangling = tmp_path / "dangling.py"
    os.symlink("nowhere.py", dangling)
    status, _, err = emit(capsys, dangling)
    assert status == 2 and "symbolic link to a missing file" in err


@POSIX
def test_output_never_overwrites_the_input_spec(tmp_path, capsys):
    source = spec(tmp_path, "net.yaml")
    os.symlink(source.name, tmp_path / "link.yaml")
    os.link(source, tmp_path / "hard.yaml")
    for output in (source, tmp_path / "link.yaml", tmp_path / "hard.yaml", f"{tmp_path}/./net.yaml"):
        status, out, err = run(capsys, "build", source, "--emit-python", "-o", output)
        assert status == 2 and out == ""
        itself = f"it is the spec {source} itself; choose another output file"
        assert err == f"archspec: error: cannot write {Path(output)}: {itself}\n"
    assert source.read_text() == GOOD


@POSIX
def test_output_to_dev_stdout_writes_to_stdout(tmp_path):
    result = cli("build", SPECS / "conv_unit.yaml", "--emit-python", "-o", "/dev/stdout")
    assert result.returncode == 0 and result.stdout.startswith("# Generated by archspec")
    with open(tmp_path / "out.py", "w") as file:  # stdout a regular file: it is written, not replaced
        result = cli(
            "build", SPECS / "conv_unit.yaml", "--emit-python", "-o", "/dev/stdout", stdout=file, stderr=subprocess.PIPE
        )
    assert result.returncode == 0 and (tmp_path / "out.py").read_text().startswith("# Generated by archspec")


@POSIX
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize(
    "argv", [["check", "specs/conv_unit.yaml"], ["build", "specs/conv_unit.yaml", "--emit-python"]]
)
def test_stdout_on_a_full_disk_is_a_clear_error(argv):
    with open("/dev/full", "w") as full:
        result = cli(*argv, stdout=full, stderr=subprocess.PIPE)
    assert result.returncode == 2
    assert result.stderr == "archspec: error: cannot write output: No space left on device\n"


@POSIX
def test_a_reader_that_leaves_early_is_not_an_error():
    process = subprocess.Popen(
        [sys.executable, "-m", "archspec", "check", "specs/resnet152.yaml", "--depth", "3"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    process.stdout.close()  # the reader left before the first line
    with process.stderr:
        err = process.stderr.read()
    assert process.wait(timeout=60) == 0
    assert err == ""


# ---------------------------------------------------------------- weights


@pytest.fixture(scope="module")
def torch():
    import torch

    return torch


def small_state(torch):
    from archspec import compile_spec

    return compile_spec(GOOD).state_dict()


def build_with(capsys, weights, *more):
    return run(capsys, "build", SPECS / "conv_unit.yaml", "--weights", weights, *more)


def test_deflated_zeros_are_refused_from_the_archive_directory(tmp_path, capsys):
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("archive/data/0", "w", force_zip64=True) as entry:
            zeros = bytes(MiB)
            for _ in range(64):
                entry.write(zeros)
    assert bomb.stat().st_size < MiB  # 64 MiB inflated
    from archspec import compile_spec

    with pytest.raises(
        WeightsError, match=rf"{bomb} holds 64 MiB once read, more than weights may take \(limit weights_bytes = 16 MiB"
    ):
        compile_spec(GOOD, weights=bomb, limits=Limits(weights_bytes=16 * MiB))
    status, _, err = build_with(capsys, bomb, "--limit", "weights_bytes=16M")
    assert status == 1 and err.startswith(f"archspec: error: {bomb} holds 64 MiB once read")
    status, _, err = build_with(capsys, bomb, "--limit", "memory=16M")  # more than the memory there is
    assert status == 1 and "more than limit memory = 16 MiB" in err


def _saved(torch, tmp_path, name, state):
    path = tmp_path / name
    torch.save(state, path)
    return path


class _WrongArguments:
    """Pickles as a call the safe unpickler allows, with arguments it does not take: a TypeError."""

    def __reduce__(self):
        import torch

        return (torch.Size, ("not a size",))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda torch, state: {0: torch.zeros(1), **state}, "has a key 0 (int); a state_dict's keys are strings"),
        (
            lambda torch, state: {**state, "0.weight": state["0.weight"].to_sparse()},
            "holds a sparse_coo tensor at 0.weight",
        ),
        (lambda torch, state: {**state, "0.weight": _WrongArguments()}, "torch.Size() takes an iterable of 'int'"),
        (lambda torch, state: {**state, "0.weight": "text"}, "holds a str at 0.weight, not a tensor"),
        (lambda torch, state: [1, 2], "holds a list, not a state_dict of tensors"),
    ],
    ids=["integer-key", "sparse", "unpickler-typeerror", "not-a-tensor", "not-a-dict"],
)
@pytest.mark.parametrize("strict", [True, False], ids=["strict", "partial"])
def test_a_weights_file_that_cannot_load_is_a_weights_error_naming_it(tmp_path, capsys, torch, make, message, strict):
    from archspec import compile_spec

    weights = _saved(torch, tmp_path, "weights.pt", make(torch, small_state(torch)))
    with pytest.raises(WeightsError) as caught:
        compile_spec(GOOD, weights=weights, strict=strict)
    assert str(weights) in str(caught.value) and message in str(caught.value)
    good = spec(tmp_path, "good.yaml")
    status, _, err = run(capsys, "build", good, "--weights", weights, *([] if strict else ["--partial"]))
    assert status == 1 and err.startswith("archspec: error: ") and message in err


def test_load_state_dicts_own_error_is_a_weights_error(tmp_path, monkeypatch, torch):
    from archspec import compile_spec

    weights = _saved(torch, tmp_path, "weights.pt", small_state(torch))

    def refuse(self, state, strict=True, assign=False):
        raise RuntimeError("Error(s) in loading state_dict for SpecModel:\n\tsomething torch refuses")

    monkeypatch.setattr(torch.nn.Module, "load_state_dict", refuse)
    for strict in (True, False):
        with pytest.raises(WeightsError, match=f"cannot load {weights} into the model: Error"):
            compile_spec(GOOD, weights=weights, strict=strict)


def test_an_int64_tensor_is_not_cast_into_a_float_parameter(tmp_path, capsys, torch):
    state = small_state(torch)
    state["0.weight"] = state["0.weight"].long()
    weights = _saved(torch, tmp_path, "ints.pt", state)
    good = spec(tmp_path, "good.yaml")
    status, _, err = run(capsys, "build", good, "--weights", weights)
    assert status == 1
    wrong = "wrong dtypes (file != model) (1): 0.weight int64 != float32"
    assert err == f"archspec: error: {weights} does not fit the model: {wrong}\n"


@POSIX
def test_a_weights_path_that_is_no_regular_file_is_refused_without_blocking(tmp_path, capsys):
    fifo = tmp_path / "weights.pt"
    os.mkfifo(fifo)
    result = cli("build", SPECS / "conv_unit.yaml", "--weights", fifo)
    assert result.returncode == 1 and f"archspec: error: {fifo} is not a regular file" in result.stderr
    status, _, err = build_with(capsys, tmp_path)
    assert status == 1 and f"{tmp_path} is not a regular file" in err
    status, _, err = build_with(capsys, tmp_path / "missing.pt")
    assert status == 2 and err == f"archspec: error: no such weights file: {tmp_path / 'missing.pt'}\n"
    from archspec import compile_spec

    with pytest.raises(WeightsError, match="weights is the path of a state_dict file, not a dict"):
        compile_spec(GOOD, weights={})


# ---------------------------------------------------------------- building

HUGE_LINEAR = "archspec: 1\nname: huge\ninput: [1000000, 1]\nlayers:\n  - flatten\n  - linear: 1000000\n"
HUGE_INPUT = "archspec: 1\nname: wide\ninput: [1, 1000000, 1000000]\nlayers:\n  - conv: {out: 2, kernel: 3}\n"


@pytest.mark.parametrize(
    "text, figures",
    [
        (
            HUGE_LINEAR,
            "needs about 3.64 TiB (parameters 3.64 TiB, buffers 0 bytes, one forward of one sample 11.4 MiB)",
        ),
        (HUGE_INPUT, "needs about 14.6 TiB (parameters 80 bytes, buffers 0 bytes, one forward of one sample 14.6 TiB)"),
    ],
    ids=["1e12-parameters", "1e6-by-1e6-input"],
)
def test_a_model_that_cannot_fit_is_a_spec_error_with_the_figures(tmp_path, capsys, text, figures):
    from archspec import compile_spec

    with pytest.raises(SpecError) as caught:
        compile_spec(text, limits=Limits(memory=64 << 30))
    (diagnostic,) = caught.value.diagnostics
    assert figures in diagnostic.message and diagnostic.code == "limit"
    assert "more than limit memory = 64 GiB; raise it with --limit memory=N" in diagnostic.message
    path = spec(tmp_path, "huge.yaml", text)
    status, out, err = run(capsys, "build", path)  # against the memory this machine has available
    assert status == 1 and out == ""
    assert figures in err and "is available on this machine (limit memory = the available memory;" in err


def test_the_memory_check_skips_the_meta_device(tmp_path, capsys, torch):
    """archspec diff builds on torch's meta device, which allocates nothing: no limit applies."""
    from archspec import compile_spec

    with torch.device("meta"):
        assert compile_spec(HUGE_LINEAR, limits=Limits(memory=1)).input_shape == (1000000, 1)
    path = spec(tmp_path, "huge.yaml", HUGE_LINEAR)
    assert run(capsys, "diff", path, path)[0] == 0


def test_a_lowered_memory_limit_names_itself(capsys):
    status, _, err = run(capsys, "build", SPECS / "conv_unit.yaml", "--limit", "memory=1K")
    assert status == 1
    assert (
        "building conv_unit needs about" in err
        and "more than limit memory = 1 KiB; raise it with --limit memory=N" in err
    )


def test_an_allocator_failure_during_build_is_a_clean_error(capsys, monkeypatch, torch):
    import archspec.backends.live

    def refuse(model):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] . DefaultCPUAllocator: can't allocate memory: "
            "you tried to allocate 4000000000000 bytes.\nmore"
        )

    monkeypatch.setattr(archspec.backends.live, "build_model", refuse)
    status, _, err = run(capsys, "build", "specs/conv_unit.yaml")
    assert status == 1
    assert err.startswith("archspec: error: building specs/conv_unit.yaml ran out of memory: [enforce fail")
    assert err.count("\n") == 1  # its first line


# ---------------------------------------------------------------- output caps


def _many_errors(folder: Path, count: int) -> Path:
    return spec(folder, "many.yaml", "archspec: 1\nname: many\ninput: [3, 8, 8]\nlayers:\n" + "  - nope\n" * count)


def test_errors_are_capped_per_file_and_the_summary_counts_them_all(tmp_path, capsys):
    many = _many_errors(tmp_path, 101)
    status, _, err = run(capsys, "check", many, many)
    lines = err.splitlines()
    assert status == 1 and len(lines) == 2 * 21 + 1
    assert lines[20] == lines[41] == "... and 81 more errors (--max-errors N or --max-errors 0 for all)"
    assert lines[-1] == "found 202 errors"
    status, _, err = run(capsys, "check", many, "--max-errors", "0")
    assert len(err.splitlines()) == 102
    status, _, err = run(capsys, "check", many, "--max-errors", "100")
    assert err.splitlines()[-2:] == [
        "... and 1 more error (--max-errors N or --max-errors 0 for all)",
        "found 101 errors",
    ]
    for command in (["build"], ["diagram"], ["diff", SPECS / "conv_unit.yaml"]):
        status, _, err = run(capsys, *command, many, "--max-errors", "3")
        assert status == 1 and len(err.splitlines()) == 5 and "... and 98 more errors" in err
    status, out, err = run(capsys, "check", many, "--format", "github", "--max-errors", "2")
    assert len(out.splitlines()) == 2 and "... and 99 more errors" in err


def test_machine_formats_carry_every_error(tmp_path, capsys):
    import json

    many = _many_errors(tmp_path, 101)
    status, out, _ = run(capsys, "check", many, "--format", "json", "--max-errors", "5")
    assert status == 1 and len(json.loads(out)["files"][0]["errors"]) == 101
    status, out, _ = run(capsys, "check", many, "--format", "sarif")
    assert len(json.loads(out)["runs"][0]["results"]) == 101


def test_max_errors_takes_a_whole_number(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["check", "specs/conv_unit.yaml", "--max-errors", "-1"])
    assert exc.value.code == 2 and "expected a whole number >= 0" in capsys.readouterr().err


@pytest.mark.slow
def test_ten_thousand_errors_print_a_few_lines(tmp_path, capsys):
    many = _many_errors(tmp_path, 10_001)
    status, out, err = run(capsys, "check", many)
    assert status == 1 and out == ""
    assert len(err) < 3_000 and err.splitlines()[-2:] == [
        "... and 9,981 more errors (--max-errors N or --max-errors 0 for all)",
        "found 10001 errors",
    ]


def test_docs_list_every_limit():
    from archspec.core.limits import NAMES

    text = (ROOT / "docs" / "limits.md").read_text()
    table = [line for line in text.splitlines() if line.startswith("| `")]
    assert [line.split("`")[1] for line in table[: len(NAMES)]] == list(NAMES)
