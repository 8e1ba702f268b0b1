#!/usr/bin/env python3
"""Runtime of archspec's modules, live and emitted, against out of place, and torchvision.

    python3 benchmarks/bench_runtime.py [--models resnet50 densenet121] [--batch 4] [--runs 7]
    PYTHONPATH=. /tmp/refvenv/bin/python benchmarks/bench_runtime.py    # with torchvision

For each model it times an eval forward (no_grad) and a train-mode forward + backward, at batch 4
and 3x224x224 by default, with torch.set_num_threads(1), for: archspec's live module as
compile_spec builds it (ReLUs and residual adds in place where archspec.inplace decided so), the
module of the source `archspec build --emit-python` writes (the same in-place decisions), the
same model built with nothing in place (archspec.inplace.without: what archspec built before), and
torchvision's model with the same weights when torchvision is importable. Runs are interleaved
(each round times every variant once, in a rotating order) after one warm-up each, so a drift in
the machine's speed hits all variants alike; it prints medians, minimums and the ratios of the
medians of wall time and of CPU time (process time: on a shared machine, other processes' load
lengthens the wall time much more than the CPU time a single-threaded step uses), with the machine,
torch version and load average. A report, not a test: it exits 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from archspec import analyze, compile_spec  # noqa: E402
from archspec.backends.emit import emit_python  # noqa: E402
from archspec.analyses.inplace import without  # noqa: E402
from archspec.backends.live import build_model  # noqa: E402


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        cpu = f"{names[0]} ({len(names)} logical CPUs)" if names else cpu
    except OSError:
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}; {system}; Python {platform.python_version()}; torch {torch.__version__}"


def load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def emitted(spec: Path) -> torch.nn.Module:
    """The module of `archspec build --emit-python`'s source for `spec`."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{spec.stem}.py"
        path.write_text(emit_python(spec))
        loader = importlib.util.spec_from_file_location(f"emitted_{spec.stem}", path)
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
    return getattr(module, module.__all__[0])()


def variants(name: str) -> dict[str, torch.nn.Module]:
    spec = ROOT / "specs" / f"{name}.yaml"
    live = compile_spec(spec)
    plain = build_model(without(analyze(spec)))
    plain.load_state_dict(live.state_dict())
    source = emitted(spec)
    source.load_state_dict(live.state_dict())
    found = {"archspec in place": live, "archspec emitted": source, "archspec out of place": plain}
    try:
        import torchvision
    except ImportError:
        return found
    reference = getattr(torchvision.models, name)(weights=None)
    reference.load_state_dict(live.state_dict())
    found["torchvision"] = reference
    return found


def eval_forward(module, batch):
    module.eval()
    with torch.no_grad():
        return module(batch)


def train_step(module, batch):
    module.train()
    module.zero_grad(set_to_none=True)
    out = module(batch)
    out.sum().backward()
    return out


STEPS = {"eval forward": eval_forward, "train forward+backward": train_step}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet50", "densenet121"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--runs", type=int, default=7, help="interleaved rounds (after one warm-up)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"machine: {machine()}")
    print(f"threads {args.threads}, batch {args.batch}, {args.runs} interleaved rounds; load average before: {load()}")
    for name in args.models:
        models = variants(name)
        batch = torch.randn(args.batch, *compile_spec(ROOT / "specs" / f"{name}.yaml").input_shape)
        outputs = {label: eval_forward(module, batch) for label, module in models.items()}
        first = next(iter(outputs.values()))
        differences = ", ".join(f"{label} {float((out - first).abs().max()):.1e}" for label, out in outputs.items())
        print(f"\n{name}: eval outputs, max |difference| from archspec in place: {differences}")
        jobs = [(step, label) for step in STEPS for label in models]
        times: dict[tuple, list[float]] = {job: [] for job in jobs}
        cpu: dict[tuple, list[float]] = {job: [] for job in jobs}
        for round_ in range(args.runs + 1):
            shift = round_ % len(jobs)
            for step, label in jobs[shift:] + jobs[:shift]:
                start, start_cpu = time.perf_counter(), time.process_time()
                STEPS[step](models[label], batch)
                elapsed, used = time.perf_counter() - start, time.process_time() - start_cpu
                if round_:  # round 0 warms up
                    times[(step, label)].append(elapsed)
                    cpu[(step, label)].append(used)
        for step in STEPS:
            for clock, measured in (("wall", times), ("cpu", cpu)):
                medians = {label: statistics.median(measured[(step, label)]) for label in models}
                print(f"  {step}, {clock} time:")
                for label in models:
                    ratios = [f"{medians[label] / medians[other]:.3f}x {other}" for other in models if other != label]
                    fastest = min(measured[(step, label)])
                    print(
                        f"    {label:<22} median {medians[label] * 1000:8.1f} ms  min {fastest * 1000:8.1f} ms"
                        f"  ({'; '.join(ratios)})"
                    )
    print(f"\nload average after: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
