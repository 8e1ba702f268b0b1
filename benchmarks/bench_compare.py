#!/usr/bin/env python3
"""`archspec check` start-up, this checkout against another revision, interleaved in one run.

    python3 benchmarks/bench_compare.py REV [--runs N] [--spec specs/densenet121.yaml] [--instructions]

A shared VM's speed drifts by 2x within minutes, so absolute figures from different runs do not
compare; this script runs the floor (`import yaml; from pydantic import BaseModel`), REV's check
and this checkout's check in turn, N times, and prints medians, minimums and each one's overhead
over the floor. With --instructions it also counts each command's instructions once under
valgrind's callgrind, which a busy machine does not disturb (slow: about a minute). REV is checked
out into a temporary git worktree (removed afterwards). A report, not a test: it always exits 0.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], cwd: Path, env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def instructions(cmd: list[str], cwd: Path, env: dict) -> int | None:
    """Instructions executed by `cmd` (callgrind's Ir), or None without valgrind."""
    if shutil.which("valgrind") is None:
        return None
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Collected : (\d+)", out.stderr)
    return int(found.group(1)) if found else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev")
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--spec", default="specs/densenet121.yaml")
    parser.add_argument("--instructions", action="store_true", help="also count instructions with callgrind")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        other = Path(scratch) / "other"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(other), args.rev], cwd=ROOT, check=True)
        try:
            env = dict(os.environ, PYTHONPYCACHEPREFIX=str(Path(scratch) / "pyc"))  # as after an install
            # A cache prefix hides the installed .pyc files: with bytecode writing off (some
            # environments set this), every run would compile every module, the stdlib's too.
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            python = os.path.realpath(sys.executable)  # not a wrapper script: valgrind follows no children
            check = [python, "-m", "archspec", "check", args.spec]  # -m: the cwd's package first
            commands = {
                "floor": ([python, "-c", "import yaml; from pydantic import BaseModel"], ROOT),
                args.rev: (check, other),
                "this": (check, ROOT),
            }
            for cmd, cwd in commands.values():  # warm the bytecode cache and the file cache
                timed(cmd, cwd, env)
            times: dict[str, list[float]] = {name: [] for name in commands}
            for _ in range(args.runs):
                for name, (cmd, cwd) in commands.items():
                    times[name].append(timed(cmd, cwd, env))
            counts = (
                {name: instructions(cmd, cwd, env) for name, (cmd, cwd) in commands.items()}
                if args.instructions
                else {}
            )
            counts = counts if None not in counts.values() else {}
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=ROOT, check=False)
    load = os.getloadavg()
    print(f"check {args.spec}, {args.runs} interleaved runs, load {load[0]:.2f}, python {sys.version.split()[0]}")
    for stat in (statistics.median, min):
        floor = stat(times["floor"])
        figures = ", ".join(f"{name} {stat(values):.3f} s" for name, values in times.items())
        over = ", ".join(f"{name} +{stat(times[name]) - floor:.3f} s" for name in (args.rev, "this"))
        print(f"  {stat.__name__:<6} {figures};  over the floor: {over}")
    if counts:
        floor = counts["floor"]
        over = {name: counts[name] - floor for name in (args.rev, "this")}
        print(
            f"  instructions: floor {floor / 1e6:,.0f} M; over the floor: "
            + ", ".join(f"{name} +{value / 1e6:,.0f} M" for name, value in over.items())
            + f"; this / {args.rev} = {over['this'] / over[args.rev]:.3f}"
        )


if __name__ == "__main__":
    main()
