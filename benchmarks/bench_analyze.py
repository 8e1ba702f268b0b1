#!/usr/bin/env python3
"""In-process throughput of `archspec.analyze()` on a small spec given as a dict.

    python3 benchmarks/bench_analyze.py [--runs N] [--seconds S] [--measure]

A sweep calls analyze() thousands of times in one process, so what counts here is the steady cost
of one analysis, not start-up: the imports and the validator for the spec's kinds are done by a
first, untimed call. Each run analyzes the spec as many times as fit in S seconds (default 0.5) and
reports specs per second; the verdict uses the median of N runs (default 7) by wall time, and the
rate per CPU second is printed beside it as a check on a busy machine. With --measure each analysis
is followed by archspec.measure(), as a sweep that filters by memory or receptive field does. A
report, not a test: it always exits 0.

  target: >= 1,500 specs/s (issue 25)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import archspec  # noqa: E402

TARGET = 1_500  # specs per second (issue 25)

SMALL = {  # six layers: conv, batch norm, relu, pooling, flatten, linear
    "archspec": 1,
    "name": "small",
    "input": [3, 32, 32],
    "layers": [
        {"conv": {"out": 16, "kernel": 3, "padding": 1}},
        "batchnorm",
        "relu",
        {"maxpool": {"kernel": 2}},
        "flatten",
        {"linear": 10},
    ],
}


def rate(seconds: float, with_costs: bool) -> tuple[float, float]:
    """Analyses per second of wall time, and per second of this process's CPU time, over about
    `seconds` of repeated analyze() calls. On a busy machine the wall rate drops and the CPU rate
    hardly moves: when the two disagree, other processes took the cores."""
    done, start, start_cpu = 0, time.perf_counter(), time.process_time()
    while True:
        for _ in range(50):
            model = archspec.analyze(SMALL)
            if with_costs:
                archspec.measure(model)
        done += 50
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed, done / max(time.process_time() - start_cpu, 1e-9)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs (default 7); the verdict uses the median")
    parser.add_argument("--seconds", type=float, default=0.5, help="length of one run (default 0.5 s)")
    parser.add_argument("--measure", action="store_true", help="also call archspec.measure() on each model")
    args = parser.parse_args()

    print(f"archspec analyze() benchmark  {time.strftime('%Y-%m-%d %H:%M')}  python {platform.python_version()}  "
          f"{os.cpu_count()} cpus  load {os.getloadavg()[0]:.2f}")  # fmt: skip
    model = archspec.analyze(SMALL)  # imports, builds the validator: start-up, not what a sweep repeats
    print(f"spec: {len(model.body.children)} layers, {model.body.params:,} params"
          + (", each analysis followed by measure()" if args.measure else ""))  # fmt: skip
    both = [rate(args.seconds, args.measure) for _ in range(args.runs)]
    rates = [wall for wall, _ in both]
    median = statistics.median(rates)
    print(f"analyze(): median {median:,.0f} specs/s  (min {min(rates):,.0f}, max {max(rates):,.0f}, "
          f"n={len(rates)}); {1e6 / median:,.0f} us per spec")  # fmt: skip
    per_cpu = statistics.median(cpu for _, cpu in both)
    busy = "  (well above the wall rate: other processes took the cores)" if per_cpu > 1.1 * median else ""
    print(f"per CPU second: median {per_cpu:,.0f} specs/s{busy}")
    if args.measure:
        print(f"(the target, >= {TARGET:,} specs/s, is for analyze() alone: run without --measure)")
        return 0
    verdict = "PASS" if median >= TARGET else "FAIL"
    print(f"target >= {TARGET:,} specs/s   {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
