#!/usr/bin/env python3
"""`archspec check` against a torchinfo summary of the same network, as whole processes.

    python3 benchmarks/bench_summary.py --torchinfo-python /tmp/refvenv/bin/python [--runs 5] [-- CHECK_ARGS...]

(a) `python -m archspec check specs/densenet121.yaml CHECK_ARGS...` with this interpreter, from the
    repository root; (b) `torchinfo.summary(torchvision.models.densenet121().eval(),
    input_size=(1, 3, 224, 224))`, printed, in a process of the interpreter given by
    --torchinfo-python (one with torch, torchvision and torchinfo; torchinfo is no dependency of
    archspec: see tests/data/make_torchinfo_reference.py for a throwaway venv). Both print to
    /dev/null. The two run in turn, --runs times each, after one untimed warm-up of each (file
    cache, bytecode). Reported: wall time median and min, and the peak RSS of each child process
    (ru_maxrss of that child alone, from os.wait4), and the ratios torchinfo / archspec.
Bytecode (of everything, the standard library included) is cached in a temporary
PYTHONPYCACHEPREFIX, with PYTHONDONTWRITEBYTECODE unset so the warm-up can write it (as after a
normal install), unless --no-pyc-cache is given. A report, not a test: it always exits 0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TORCHINFO = (
    "import torch, torchvision, torchinfo\n"
    "model = torchvision.models.densenet121().eval()\n"
    "torchinfo.summary(model, input_size=(1, 3, 224, 224), verbose=1)\n"
)


def run(cmd: list[str], env: dict) -> tuple[float, int, int]:
    """Wall seconds, peak RSS in bytes (ru_maxrss of this child, KiB on Linux) and exit status."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; keep Popen from waiting again
    return seconds, usage.ru_maxrss * 1024, proc.returncode


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--spec", default="specs/densenet121.yaml")
    parser.add_argument("--torchinfo-python", required=True, metavar="PATH")
    parser.add_argument("--no-pyc-cache", action="store_true", help="time the environment's bytecode setting as is")
    args = parser.parse_args(argv)

    commands = {
        "archspec": [sys.executable, "-m", "archspec", "check", args.spec, *extra],
        "torchinfo": [args.torchinfo_python, "-c", TORCHINFO],
    }
    with tempfile.TemporaryDirectory() as scratch:
        env = dict(os.environ)
        if not args.no_pyc_cache:  # written by the warm-up runs, read by the timed ones
            env.pop("PYTHONDONTWRITEBYTECODE", None)  # else nothing is written there and all is recompiled
            env["PYTHONPYCACHEPREFIX"] = str(Path(scratch) / "pyc")
        for name, cmd in commands.items():  # warm-up: file cache and bytecode
            _, _, code = run(cmd, env)
            if code != 0:
                print(f"warning: {name} exited {code}: {' '.join(cmd[:4])} ...")
        times: dict[str, list[float]] = {name: [] for name in commands}
        rss: dict[str, list[int]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, cmd in commands.items():
                seconds, peak, _ = run(cmd, env)
                times[name].append(seconds)
                rss[name].append(peak)

    load = os.getloadavg()
    print(f"{args.runs} interleaved runs, load {load[0]:.2f}, {os.cpu_count()} cpus, python {sys.version.split()[0]}, "
          f"bytecode {'as is' if args.no_pyc_cache else 'cached'}")  # fmt: skip
    print(f"  archspec:  {' '.join(Path(c).name if i == 0 else c for i, c in enumerate(commands['archspec']))}")
    print(f"  torchinfo: {args.torchinfo_python} -c 'torchinfo.summary(densenet121().eval(), (1, 3, 224, 224))'")
    for name in commands:
        t, m = times[name], rss[name]
        print(
            f"  {name:<9}  wall median {statistics.median(t):7.3f} s  min {min(t):7.3f} s  max {max(t):7.3f} s"
            f"   peak RSS median {statistics.median(m) / 2**20:8.1f} MiB  max {max(m) / 2**20:8.1f} MiB"
        )
    a, b = times["archspec"], times["torchinfo"]
    print(
        f"  torchinfo / archspec: wall {statistics.median(b) / statistics.median(a):.1f}x by medians,"
        f" {min(b) / min(a):.1f}x by minimums;"
        f" peak RSS {statistics.median(rss['torchinfo']) / statistics.median(rss['archspec']):.1f}x"
    )


if __name__ == "__main__":
    main()
