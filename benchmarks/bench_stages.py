#!/usr/bin/env python3
"""Where `archspec check` start-up goes: each import group and each stage of one check, timed.

    python3 benchmarks/bench_stages.py [--runs N] [--spec specs/densenet121.yaml]

Runs N fresh processes (bytecode cached, as after an install). Each imports the floor (`import
yaml; from pydantic import BaseModel`), then archspec's modules in groups, then runs the stages of
`check` one by one, and reports the milliseconds each took; this script prints the minimum and the
median of each over the runs. The stages are check's own calls in check's order, so their sum is
close to a whole check. A report, not a test: it always exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time
import gc; gc.disable()  # as main() does
times = {}
last = time.perf_counter()
def mark(name):
    global last
    now = time.perf_counter()
    times[name] = (now - last) * 1000
    last = now
import yaml; from pydantic import BaseModel
mark("floor imports")
import archspec.core, archspec.registry
mark("core, registry and fields")
import archspec.kinds
mark("kinds")
import archspec.frontend.validate, archspec.frontend.expand, archspec.frontend.resolve
import archspec.analyses.analyze, archspec.reports.table, archspec.cli
mark("other modules")
from pathlib import Path
from archspec.analyses import costs, inplace, shapes
from archspec.frontend import expand, load, resolve
from archspec.frontend import validate as schema
from archspec.reports import table as report
doc = load.load_file(Path(sys.argv[1]))
mark("load")
located = expand.expand(doc, {})
mark("expand")
schema.validator(schema.kinds_named(located.data))
mark("validator build")
spec, errors, standins = schema.validate_partially(located)
mark("validate")
shaped = inplace.decide(shapes.infer(resolve.resolve(spec, located, standins)))
mark("resolve, shapes, in place")
measured = costs.measure(shaped, 1, "float32")
mark("costs")
report.table(measured, sys.argv[1], None, report.DEFAULT_COLUMNS)
mark("table")
print(json.dumps(times))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--spec", default="specs/densenet121.yaml")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as cache:
        env["PYTHONPYCACHEPREFIX"] = cache
        command = [sys.executable, "-c", CHILD, args.spec]
        subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)  # writes the bytecode
        runs = [
            json.loads(subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout)
            for _ in range(args.runs)
        ]
    print(f"{args.spec}, {args.runs} fresh processes, python {sys.version.split()[0]}, load {os.getloadavg()[0]:.2f}")
    print(f"  {'ms':>28}  {'min':>7}  {'median':>7}")
    for stage in runs[0]:
        values = [run[stage] for run in runs]
        print(f"  {stage:>28}  {min(values):7.1f}  {statistics.median(values):7.1f}")
    over = [sum(v for k, v in run.items() if k != "floor imports") for run in runs]
    print(f"  {'all but the floor':>28}  {min(over):7.1f}  {statistics.median(over):7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
