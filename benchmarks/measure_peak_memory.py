#!/usr/bin/env python3
"""Peak memory of one CPU training step of torchvision nets, to check archspec's static estimate against.

    /tmp/refvenv/bin/python benchmarks/measure_peak_memory.py [--out benchmarks/peak_memory_reference.json]

Any python with torch and torchvision runs it (archspec is not needed; torchvision is no dependency of
archspec, so use a throwaway venv, e.g. the one tests/data/make_torchinfo_reference.py describes).
For resnet18, resnet50 and densenet121 at batch 8 and 32 (3x224x224, float32) it runs each
measurement in a fresh subprocess, so that peaks do not mix, with MALLOC_MMAP_THRESHOLD_=131072 (glibc
then serves every block of 128 KiB or more by mmap and gives it back to the OS when freed) and
torch.set_num_threads(1). The child builds the model in train mode and the input, then runs one
forward, loss = output.sum(), and backward. Two methods, each in its own child:

  rss:      peak_bytes_over_baseline = ru_maxrss after the step (getrusage(RUSAGE_SELF), KiB on Linux)
            minus VmRSS just before the forward. The peak high-water mark is also reset just before the
            forward (`5` written to /proc/self/clear_refs), so an earlier peak (import, model build)
            cannot hide the step's; VmHWM after the step is recorded as a cross-check.
  profiler: torch.profiler.profile(profile_memory=True) around the same step; every CPU allocation and
            free the profiler saw ('[memory]' events, nbytes signed) is replayed in time order, and the
            running sum's maximum is the peak of bytes allocated by torch's CPU allocator over what was
            allocated before the step: tensor storage only, without allocator slack, code or library
            workspaces that do not go through c10's allocator.

Both include the parameter gradients (param_bytes, allocated in backward), the activations kept for
backward and the step's temporaries; neither includes the weights, the buffers or the input, which
exist before the baseline. A report, not a test.

Memory-efficient dense blocks (`--memory-efficient`, rows under "memory_efficient" in the output,
the rest of the file kept): DenseNet-121 at batch 8 (--batches to change) built four ways, each
measured as above in the same python: torchvision's densenet121() and densenet121(memory_efficient=
True), and archspec's compile_spec(specs/densenet121.yaml) without and with memory_efficient=True.
Each of these children imports both libraries first (importing torchvision leaves resident heap
that a step may reuse, so the peak RSS growth of two processes is comparable only when both did).
archspec must be importable, e.g. from the repository root:

    PYTHONPATH=$PWD /tmp/refvenv/bin/python benchmarks/measure_peak_memory.py --memory-efficient
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

MODELS = ["resnet18", "resnet50", "densenet121"]
BATCHES = [8, 32]
# (builder, model, memory_efficient) for --memory-efficient
DENSE = [("torchvision", "densenet121", False), ("torchvision", "densenet121", True),
         ("archspec", "densenet121", False), ("archspec", "densenet121", True)]  # fmt: skip
ROOT = Path(__file__).resolve().parent.parent
SHAPE = (3, 224, 224)
ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def proc_status(field: str) -> int:
    """A VmRSS / VmHWM style line of /proc/self/status, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def build(name: str):
    """The model a child measures: "resnet18" is torchvision's; "torchvision:densenet121" too and
    "archspec:densenet121" compile_spec(specs/densenet121.yaml), each in a process that imported
    both libraries; a "+memory_efficient" suffix passes memory_efficient=True."""
    import torchvision

    builder, _, rest = name.rpartition(":")
    model_name, _, option = rest.partition("+")
    kwargs = {"memory_efficient": True} if option == "memory_efficient" else {}
    if builder:  # the same imports on both sides: they leave the process different heaps to reuse
        from archspec import compile_spec
    if builder == "archspec":
        return compile_spec(ROOT / "specs" / f"{model_name}.yaml", **kwargs)
    return getattr(torchvision.models, model_name)(**kwargs)


def child(model_name: str, batch: int, method: str) -> dict:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build(model_name).train()
    x = torch.randn(batch, *SHAPE)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    buffer_bytes = sum(b.numel() * b.element_size() for b in model.buffers())
    row = {"model": model_name, "batch": batch, "method": method, "param_bytes": param_bytes,
           "buffer_bytes": buffer_bytes, "input_bytes": x.numel() * x.element_size()}  # fmt: skip
    if method == "rss":
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to the current RSS
        before = proc_status("VmRSS")
        start = time.perf_counter()
        model(x).sum().backward()
        seconds = time.perf_counter() - start
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        row.update(rss_before=before, ru_maxrss_after=maxrss, peak_bytes_over_baseline=maxrss - before,
                   vmhwm_over_baseline=proc_status("VmHWM") - before, step_seconds=round(seconds, 2))  # fmt: skip
    else:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            model(x).sum().backward()
        events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
        events.sort(key=lambda e: e.start_ns())
        current = peak = 0
        for event in events:
            if str(event.device_type()).endswith(("CPU", "MKLDNN", "IDEEP")):
                current += event.nbytes()
                peak = max(peak, current)
        row.update(profiler_peak_allocated_bytes=peak, profiler_net_bytes_after=current,
                   profiler_memory_events=len(events))  # fmt: skip
    return row


def run_child(model_name: str, batch: int, method: str) -> dict:
    env = {**os.environ, **ENV}
    cmd = [sys.executable, __file__, "--child", model_name, str(batch), method]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def mib(n: int) -> str:
    return f"{n / 2**20:9.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "peak_memory_reference.json"))
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "BATCH", "METHOD"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--memory-efficient",
        action="store_true",
        help="measure DenseNet-121 with and without memory_efficient, torchvision's and archspec's",
    )
    parser.add_argument(
        "--batches", type=int, nargs="+", help="batch sizes (default: 8 and 32; 8 with --memory-efficient)"
    )
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.child[2])))
        return
    if args.memory_efficient:
        memory_efficient(Path(args.out), args.batches or [8])
        return

    import torch
    import torchvision

    rows = []
    for model_name in MODELS:
        for batch in args.batches or BATCHES:
            rss = run_child(model_name, batch, "rss")
            prof = run_child(model_name, batch, "profiler")
            row = {
                "model": model_name,
                "batch": batch,
                "peak_bytes_over_baseline": rss["peak_bytes_over_baseline"],
                "param_bytes": rss["param_bytes"],
                "buffer_bytes": rss["buffer_bytes"],
                "input_bytes": rss["input_bytes"],
                "vmhwm_over_baseline": rss["vmhwm_over_baseline"],
                "profiler_peak_allocated_bytes": prof["profiler_peak_allocated_bytes"],
                "rss_before": rss["rss_before"],
                "step_seconds": rss["step_seconds"],
            }
            rows.append(row)
            print(f"{model_name:12} batch {batch:3}  rss peak over baseline {mib(row['peak_bytes_over_baseline'])}"
                  f"  profiler peak allocated {mib(row['profiler_peak_allocated_bytes'])}"
                  f"  params {mib(row['param_bytes'])}  step {row['step_seconds']} s", flush=True)  # fmt: skip
    data = {
        "source": f"torch {torch.__version__}, torchvision {torchvision.__version__}, python "
        f"{sys.version.split()[0]}, {os.uname().machine}, {os.cpu_count()} cpus; benchmarks/measure_peak_memory.py",
        "method": "Each (model, batch) in a fresh subprocess with MALLOC_MMAP_THRESHOLD_=131072, "
        "torch.set_num_threads(1), CPU, float32, input batch x 3x224x224: torchvision constructor with default "
        "arguments, train mode, input made; then peak RSS reset (/proc/self/clear_refs 5) and VmRSS read; "
        "then one forward, loss = output.sum(), backward (no optimizer). peak_bytes_over_baseline = "
        "ru_maxrss (getrusage RUSAGE_SELF, KiB x 1024) after the step minus VmRSS before the forward; "
        "vmhwm_over_baseline is the same from /proc/self/status VmHWM. profiler_peak_allocated_bytes comes "
        "from a second fresh subprocess running the same step under torch.profiler.profile(profile_memory="
        "True): the maximum running sum of the signed nbytes of its CPU '[memory]' events in time order, "
        "i.e. peak bytes held by torch's CPU allocator over those held before the step (tensor storage only). "
        "Both figures include the parameter gradients (= param_bytes), the activations saved for backward "
        "and temporaries; neither includes the weights, buffers or input (present before the baseline). "
        "peak_bytes_over_baseline is the primary figure (what the OS sees); the profiler figure is the "
        "cleaner 'peak allocated' one, without allocator slack, thread stacks or oneDNN/BLAS scratch "
        "allocated outside c10.",
        "rows": rows,
    }
    out = Path(args.out)
    if out.exists() and "memory_efficient" in json.loads(out.read_text()):
        data["memory_efficient"] = json.loads(out.read_text())["memory_efficient"]
    out.write_text(json.dumps(data, indent=1) + "\n")
    print("wrote", args.out)


def memory_efficient(out: Path, batches: list[int]) -> None:
    """DENSE at each batch, into out's "memory_efficient" section (the rest of the file kept)."""
    import torch
    import torchvision

    rows = []
    for batch in batches:
        for builder, model_name, efficient in DENSE:
            name = f"{builder}:{model_name}" + ("+memory_efficient" if efficient else "")
            rss = run_child(name, batch, "rss")
            prof = run_child(name, batch, "profiler")
            row = {"builder": builder, "model": model_name, "memory_efficient": efficient, "batch": batch}
            row.update((k, rss[k]) for k in ("peak_bytes_over_baseline", "param_bytes", "buffer_bytes", "input_bytes",
                                              "vmhwm_over_baseline", "rss_before", "step_seconds"))  # fmt: skip
            row["profiler_peak_allocated_bytes"] = prof["profiler_peak_allocated_bytes"]
            rows.append(row)
            print(f"{builder:11} {model_name} memory_efficient={efficient!s:5} batch {batch:3}"
                  f"  rss peak over baseline {mib(row['peak_bytes_over_baseline'])}"
                  f"  profiler peak allocated {mib(row['profiler_peak_allocated_bytes'])}"
                  f"  step {row['step_seconds']} s", flush=True)  # fmt: skip
    for batch in batches:
        peak = {(r["builder"], r["memory_efficient"]): r for r in rows if r["batch"] == batch}
        for key in ("peak_bytes_over_baseline", "profiler_peak_allocated_bytes"):
            ours, theirs = peak["archspec", True][key], peak["torchvision", True][key]
            saved = 1 - ours / peak["archspec", False][key]
            print(f"batch {batch} {key}: archspec memory_efficient / torchvision memory_efficient ="
                  f" {ours / theirs:.3f} (target <= 1.05); memory_efficient saves archspec {saved:.1%}")  # fmt: skip
    data = json.loads(out.read_text()) if out.exists() else {"rows": []}
    data["memory_efficient"] = {
        "source": f"torch {torch.__version__}, torchvision {torchvision.__version__}, python "
        f"{sys.version.split()[0]}, {os.uname().machine}, {os.cpu_count()} cpus; "
        "benchmarks/measure_peak_memory.py --memory-efficient",
        "method": "As the rows above (fresh subprocess per figure, MALLOC_MMAP_THRESHOLD_=131072, one thread, "
        "train mode, one forward + output.sum() + backward on the CPU), for DenseNet-121 built four ways: "
        "torchvision.models.densenet121() and densenet121(memory_efficient=True), archspec's "
        "compile_spec('specs/densenet121.yaml') and compile_spec(..., memory_efficient=True). Every child "
        "imports both torchvision and archspec before building its model, so that the processes start the "
        "step alike: importing torchvision leaves about 150 MiB of resident heap that a memory-efficient "
        "step reuses (archspec's memory-efficient step measured 670 MiB over baseline in a process without "
        "torchvision, 523 MiB with it; the profiler's peak allocated, 492.6 MiB, does not move).",
        "rows": rows,
    }
    out.write_text(json.dumps(data, indent=1) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
