#!/usr/bin/env python3
"""In-process throughput of `archspec.analyze()` on a small spec given as a dict.

    python3 benchmarks/bench_analyze.py [--runs N] [--seconds S] [--measure]

A sweep calls analyze() thousands of times in one process, so what counts here is the steady cost
of one analysis, not start-up: the models are built by a first, untimed call. Each run analyzes the
spec as many times as fit in S seconds (default 0.5) and reports specs per second; the verdict uses
the median of N runs (default 7). With --measure each analysis is followed by archspec.measure(),
as a sweep that filters by memory or receptive field does. A report, not a test: it always exits 0.

  target: >= 3,000 specs/s (1,290 when issue 12 was filed)
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

TARGET = 3_000  # specs per second

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


def rate(seconds: float, with_costs: bool) -> float:
    """Analyses per second over about `seconds` of repeated analyze() calls."""
    done, start = 0, time.perf_counter()
    while True:
        for _ in range(50):
            model = archspec.analyze(SMALL)
            if with_costs:
                archspec.measure(model)
        done += 50
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs (default 7); the verdict uses the median")
    parser.add_argument("--seconds", type=float, default=0.5, help="length of one run (default 0.5 s)")
    parser.add_argument("--measure", action="store_true", help="also call archspec.measure() on each model")
    args = parser.parse_args()

    print(f"archspec analyze() benchmark  {time.strftime('%Y-%m-%d %H:%M')}  python {platform.python_version()}  "
          f"{os.cpu_count()} cpus  load {os.getloadavg()[0]:.2f}")  # fmt: skip
    model = archspec.analyze(SMALL)  # builds the models: start-up, not what a sweep repeats
    print(f"spec: {len(model.body.children)} layers, {model.body.params:,} params"
          + (", each analysis followed by measure()" if args.measure else ""))  # fmt: skip
    rates = [rate(args.seconds, args.measure) for _ in range(args.runs)]
    median = statistics.median(rates)
    print(f"analyze(): median {median:,.0f} specs/s  (min {min(rates):,.0f}, max {max(rates):,.0f}, "
          f"n={len(rates)}); {1e6 / median:,.0f} us per spec")  # fmt: skip
    verdict = "PASS" if median >= TARGET else "FAIL"
    print(f"target >= {TARGET:,} specs/s   {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
