#!/usr/bin/env python3
"""Start-up and scaling benchmark for `archspec check` (and `archspec build --emit-python`).

Run from anywhere:  python3 benchmarks/bench_check.py [--runs N] [--scale-runs M] [--no-pyc-cache]

It is a report, not a test: it prints figures and PASS/FAIL against the targets and always exits 0.
Every timing is the wall time of a whole fresh `python` process (interpreter start-up, imports,
the work, exit), measured around subprocess.run with output sent to /dev/null; the child's CPU time
is printed beside it as a check on a busy machine. Verdicts use median wall times. Targets 1 and 3
are issue 25's; that issue also asks that a 100,000-layer spec still check within the default
limits, with no time target (benchmarks/README.md gives the command). Targets 2 and 4 are this
script's own.

  1. check densenet121 vs a baseline that only imports yaml and pydantic   target: difference <= 0.100 s
  2. build --emit-python vs a baseline importing yaml, jinja2, pydantic    target: difference <= 0.150 s
     (skipped while `build --help` does not mention --emit-python)
  3. check of generated 1,000 / 5,000 / 10,000-layer specs                 target: 10,000 layers <= 2 s
  4. does `check` import torch?                                            target: False
  5. -X importtime: the 8 most expensive imports (cumulative, and by self time) of the check code path
     (no target), and the wall time of those imports once the baseline's are done
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = "specs/densenet121.yaml"
PY = sys.executable

BASE_CHECK = [PY, "-c", "import yaml; from pydantic import BaseModel"]
BASE_EMIT = [PY, "-c", "import yaml, jinja2; from pydantic import BaseModel"]
CHECK = [PY, "-m", "archspec", "check", SPEC]
EMIT = [PY, "-m", "archspec", "build", SPEC, "--emit-python"]

CHECK_TARGET = 0.100
EMIT_TARGET = 0.150
SCALE_SIZES = (1_000, 5_000, 10_000)
SCALE_TARGET = 2.0  # seconds for 10,000 layers

ENV = dict(os.environ)  # the environment of every timed process; see main() for bytecode caching


def run(cmd: list[str], *, capture: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.PIPE if capture else subprocess.DEVNULL,
        text=True,
        env=ENV,
    )


def timed(cmd: list[str]) -> tuple[float, int]:
    return timed_cpu(cmd)[::2]


def timed_cpu(cmd: list[str]) -> tuple[float, float, int]:
    """Wall time, CPU time (user + sys of the child) and exit status of one run.

    CPU time hardly moves when other processes compete for the cores, wall time does: when the two
    disagree, the machine was busy and the CPU figure is the better estimate of archspec's own cost.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = run(cmd)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.returncode


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def fmt_runs(times: list[float]) -> str:
    return f"median {statistics.median(times):.3f} s  (min {min(times):.3f}, max {max(times):.3f}, n={len(times)})"


def compare(label: str, cmd: list[str], baseline: list[str], target: float, runs: int) -> None:
    """Interleaved runs of cmd and baseline (order alternating each round), after one untimed warm-up each."""
    print(f"== {label}")
    print(f"   command:  {' '.join(_short(cmd))}")
    print(f"   baseline: {' '.join(_short(baseline))}")
    for warm in (baseline, cmd):  # warm the page cache and write .pyc files
        proc = run(warm, capture=True)
        if proc.returncode != 0:
            print(f"   warning: {' '.join(_short(warm))} exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    cmd_times, base_times, cmd_cpu, base_cpu, bad = [], [], [], [], set()
    for i in range(runs):
        pair = (cmd, baseline) if i % 2 else (baseline, cmd)
        for which in pair:
            elapsed, cpu, rc = timed_cpu(which)
            (cmd_times if which is cmd else base_times).append(elapsed)
            (cmd_cpu if which is cmd else base_cpu).append(cpu)
            if rc != 0:
                bad.add(rc)
    if bad:
        print(f"   warning: some runs exited with status {sorted(bad)}")
    diff = statistics.median(cmd_times) - statistics.median(base_times)
    cpu_diff = statistics.median(cmd_cpu) - statistics.median(base_cpu)
    print(f"   command   {fmt_runs(cmd_times)}   cpu median {statistics.median(cmd_cpu):.3f} s")
    print(f"   baseline  {fmt_runs(base_times)}   cpu median {statistics.median(base_cpu):.3f} s")
    print(f"   {label.split()[0]} - baseline = {diff:+.3f} s   target <= {target:.3f} s   {verdict(diff <= target)}")
    print(f"   (same difference in CPU time: {cpu_diff:+.3f} s; "
          f"by fastest runs: {min(cmd_times) - min(base_times):+.3f} s wall)")  # fmt: skip
    print()


def _short(cmd: list[str]) -> list[str]:
    return ["python" if part == PY else (f'"{part}"' if " " in part else part) for part in cmd]


def long_spec(n_layers: int) -> str:
    """A valid spec of exactly n_layers top-level layers: conv / batchnorm / relu repeated (8x32x32 throughout)."""
    cycle = ("  - conv: {out: 8, kernel: 3, padding: 1}", "  - batchnorm", "  - relu")
    lines = ["archspec: 1", f"name: long{n_layers}", "input: [8, 32, 32]", "layers:"]
    lines += [cycle[i % 3] for i in range(n_layers)]
    return "\n".join(lines) + "\n"


def scaling(scale_runs: int) -> None:
    print(f"== scaling: whole `python -m archspec check SPEC` process, median of {scale_runs}")
    results = []
    with tempfile.TemporaryDirectory(prefix="archspec-bench-") as tmp:
        for n in SCALE_SIZES:
            path = Path(tmp) / f"long{n}.yaml"
            path.write_text(long_spec(n))
            cmd = [PY, "-m", "archspec", "check", str(path)]
            times, cpus, rcs = [], [], set()
            for _ in range(scale_runs):
                elapsed, cpu, rc = timed_cpu(cmd)
                times.append(elapsed)
                cpus.append(cpu)
                rcs.add(rc)
            med = statistics.median(times)
            results.append((n, med))
            note = "" if rcs == {0} else f"   (exit status {sorted(rcs)}!)"
            print(f"   {n:>6,} layers  {med:7.3f} s   {med / n * 1e6:7.1f} us/layer (total/n)   "
                  f"cpu {statistics.median(cpus):.3f} s{note}")  # fmt: skip
    (n0, t0), (n1, t1) = results[0], results[-1]
    slope = (t1 - t0) / (n1 - n0)
    print(f"   marginal cost {slope * 1e6:.1f} us/layer ({n0:,} -> {n1:,}); fixed cost ~{t0 - slope * n0:.3f} s")
    mid_n, mid_t = results[1]
    predicted = t0 + slope * (mid_n - n0)
    print(f"   linearity: {mid_n:,} layers measured {mid_t:.3f} s vs {predicted:.3f} s from a straight line")
    print(f"   10,000 layers: {t1:.3f} s   target <= {SCALE_TARGET:.0f} s   {verdict(t1 <= SCALE_TARGET)}")
    print()


def torch_check() -> None:
    code = (
        "import sys; from archspec.cli import main; "
        f"main(['check','-q','{SPEC}']); print('torch' in sys.modules)"
    )
    proc = run([PY, "-c", code], capture=True)
    answer = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else f"(no output; exit {proc.returncode})"
    print("== does `check` import torch?")
    print(f"   'torch' in sys.modules after main(['check', '-q', '{SPEC}']): {answer}   "
          f"{verdict(answer == 'False')}")  # fmt: skip
    if proc.returncode != 0:
        print(f"   warning: exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
    print()


def import_profile(top: int = 8, runs: int = 5) -> None:
    # the modules `check` imports: the command line, then (in its function) the pipeline, costs and table
    code = "import archspec.cli, archspec.analyses.analyze, archspec.analyses.costs, archspec.reports.table"
    print(f'== python -X importtime -c "{code}"')
    print(f"   per-module medians of {runs} fresh processes (-X importtime itself adds some overhead)")
    run([PY, "-c", code])  # warm .pyc
    samples: dict[str, list[tuple[int, int]]] = {}
    for _ in range(runs):
        proc = run([PY, "-X", "importtime", "-c", code], capture=True)
        for line in proc.stderr.splitlines():
            if not line.startswith("import time:") or "[us]" in line:
                continue
            self_us, cum_us, name = (part.strip() for part in line[len("import time:"):].split("|", 2))
            samples.setdefault(name, []).append((int(cum_us), int(self_us)))
    if not samples:
        print("   (no -X importtime output)")
        return
    rows = [
        (statistics.median(c for c, _ in vals), statistics.median(s for _, s in vals), name)
        for name, vals in samples.items()
    ]
    print(f"   top {top} by cumulative time:")
    print(f"   {'cumulative':>10}  {'self':>8}  module")
    for cum, self_, name in sorted(rows, reverse=True)[:top]:
        print(f"   {cum / 1000:8.1f}ms  {self_ / 1000:6.1f}ms  {name}")
    print(f"   top {top} by self time (work done in the module body itself):")
    for cum, self_, name in sorted(rows, key=lambda r: r[1], reverse=True)[:top]:
        print(f"   {cum / 1000:8.1f}ms  {self_ / 1000:6.1f}ms  {name}")
    by_name = {name: (cum, self_) for cum, self_, name in rows}
    own = {name: self_ for name, (_, self_) in by_name.items() if name.split(".")[0] == "archspec"}
    if own:
        largest = max(own, key=own.get)
        print(f"   archspec's own module bodies: {sum(own.values()) / 1000:.1f} ms self in all (largest: {largest} "
              f"{own[largest] / 1000:.1f} ms); no validator is built at import: `check` writes one per spec, "
              f"for the kinds it names (bench_stages.py's 'validator build')")  # fmt: skip
    # wall time of archspec's own imports once the baseline's imports are done (what target 1 is about)
    probe = (
        "import time, yaml; from pydantic import BaseModel; t = time.perf_counter(); "
        f"{code}; print(time.perf_counter() - t)"
    )
    times = []
    for _ in range(runs):
        out = run([PY, "-c", probe], capture=True).stdout.strip()
        if out:
            times.append(float(out))
    if times:
        print(f"   `{code}` after `import yaml; from pydantic import BaseModel` (no importtime): "
              f"median {statistics.median(times) * 1000:.1f} ms of {len(times)} fresh processes")  # fmt: skip
    print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="interleaved runs per command (default 15)")
    parser.add_argument("--scale-runs", type=int, default=3, help="runs per scaling size (default 3)")
    parser.add_argument(
        "--no-pyc-cache",
        action="store_true",
        help="time the environment as it is; by default bytecode is cached in a temporary PYTHONPYCACHEPREFIX "
        "(nothing is written into the repository), so PYTHONDONTWRITEBYTECODE=1 does not make every run "
        "recompile archspec's sources while the baseline's packages load their installed .pyc files",
    )
    args = parser.parse_args()

    print(f"archspec benchmark  {time.strftime('%Y-%m-%d %H:%M')}  python {platform.python_version()}  "
          f"{platform.machine()}  {os.cpu_count()} cpus  cwd {ROOT}")  # fmt: skip
    cache_dir = None
    if args.no_pyc_cache:
        mode = "as is" + (" (PYTHONDONTWRITEBYTECODE=1: archspec is recompiled by every run)"
                          if os.environ.get("PYTHONDONTWRITEBYTECODE") else "")  # fmt: skip
    else:
        cache_dir = tempfile.mkdtemp(prefix="archspec-bench-pyc-")
        ENV.pop("PYTHONDONTWRITEBYTECODE", None)
        ENV["PYTHONPYCACHEPREFIX"] = cache_dir
        mode = "cached in a temporary PYTHONPYCACHEPREFIX (as after a normal install; --no-pyc-cache to disable)"
    print(f"bytecode: {mode}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}   code: {_git_state()}")
    print()
    try:
        _benchmarks(args)
    finally:
        if cache_dir:
            shutil.rmtree(cache_dir, ignore_errors=True)
    return 0


def _git_state() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "archspec"], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return "unknown (no git)"
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    changed = [line[3:] for line in dirty.stdout.splitlines()]
    return head.stdout.strip() + (f" + uncommitted changes to {', '.join(changed)}" if changed else " (clean)")


def _benchmarks(args) -> None:
    compare(f"check {SPEC}", CHECK, BASE_CHECK, CHECK_TARGET, args.runs)

    help_text = run([PY, "-m", "archspec", "build", "--help"], capture=True).stdout
    if "--emit-python" in help_text:
        compare(f"build {SPEC} --emit-python", EMIT, BASE_EMIT, EMIT_TARGET, args.runs)
    else:
        print("== build --emit-python")
        print("   skipped: --emit-python not implemented yet")
        print()

    scaling(args.scale_runs)
    torch_check()
    import_profile()


if __name__ == "__main__":
    sys.exit(main())
