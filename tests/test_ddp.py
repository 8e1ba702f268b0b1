"""A compiled model trains under DistributedDataParallel: gloo, 2 CPU processes.

Each test starts processes (each imports torch), so both are slow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from archspec import analyze, compile_spec

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "densenet.yaml"  # the seed DenseNet: batch norms, dense blocks, transitions
WORLD = 2


def worker(rank: int, store: str, outputs: list[str]) -> None:
    """One DDP step on this rank's own batch; saves the gradients DDP left, the gradients this
    rank's batch gives alone, and the parameters after an SGD step."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        torch.manual_seed(rank)  # different initial weights: DDP must broadcast rank 0's
        model = compile_spec(SPEC, memory_efficient=True)  # checkpointed dense blocks under DDP too
        local = compile_spec(SPEC)
        ddp = DistributedDataParallel(model)
        local.load_state_dict(model.state_dict())  # rank 0's weights, as DDP broadcast them
        generator = torch.Generator().manual_seed(100 + rank)
        x = torch.randn(2, *model.input_shape, generator=generator)
        y = torch.randint(0, 10, (2,), generator=generator)
        loss_fn = torch.nn.CrossEntropyLoss()
        loss_fn(ddp(x), y).backward()
        loss_fn(local(x), y).backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters()}
        own = {name: p.grad.clone() for name, p in local.named_parameters()}
        torch.optim.SGD(ddp.parameters(), lr=0.1).step()
        params = {name: p.detach().clone() for name, p in model.named_parameters()}
        torch.save({"grads": grads, "own": own, "params": params}, outputs[rank])
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_gradients_are_averaged_and_equal_across_ranks(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    outputs = [str(tmp_path / f"rank{rank}.pt") for rank in range(WORLD)]
    # The children import this module to find `worker` (tests/ is on the sys.path they inherit).
    mp.spawn(worker, args=(str(tmp_path / "store"), outputs), nprocs=WORLD, join=True)
    results = [torch.load(path, weights_only=True) for path in outputs]
    names = list(results[0]["grads"])
    assert names and all(list(r["grads"]) == names for r in results)
    for name in names:
        torch.testing.assert_close(results[1]["grads"][name], results[0]["grads"][name], rtol=0, atol=0)
        mean = sum(r["own"][name] for r in results) / WORLD  # DDP's all-reduce: the mean over the ranks
        torch.testing.assert_close(results[0]["grads"][name], mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(results[1]["params"][name], results[0]["params"][name], rtol=0, atol=0)
    assert any(not torch.equal(results[0]["own"][n], results[1]["own"][n]) for n in names)  # the batches differ


TINY = """\
archspec: 1
name: tiny_ddp
input: [3, 16, 16]
vars: {width: 8, num_classes: 10}
layers:
  - conv: {out: width, kernel: 3, padding: 1, bias: false}
  - dense_block: {num_layers: 2, growth: 4, bn_size: 2}
  - transition: {compression: 0.5}
  - batchnorm
  - relu
  - global_avgpool
  - flatten
  - linear: num_classes
"""


@pytest.mark.slow
def test_example_trains_two_steps_under_torchrun(tmp_path):
    """examples/train_ddp.py under torchrun (--standalone: a free port), 2 gloo CPU processes."""
    spec = tmp_path / "tiny_ddp.yaml"
    spec.write_text(TINY)
    params = analyze(spec, {"num_classes": 3}).body.params
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path, "CUDA_VISIBLE_DEVICES": ""}  # CPU, gloo
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(WORLD),
               str(ROOT / "examples" / "train_ddp.py"), str(spec), "--steps", "2", "--batch", "4",
               "--set", "num_classes=3", "--memory-efficient"]  # fmt: skip
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"tiny_ddp: {params:,} parameters, 2 process(es) on cpu (gloo), batch 4 x 2", result.stdout
    assert [line.split()[1] for line in lines if line.startswith("step ")] == ["1/2", "2/2"]  # rank 0 only
