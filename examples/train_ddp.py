"""Train a spec with DistributedDataParallel: one process per GPU, or CPU workers.

    torchrun --standalone --nproc_per_node 2 examples/train_ddp.py specs/resnet18.yaml \\
        --set num_classes=10 --steps 100 --batch 32
    torchrun --standalone --nproc_per_node 4 examples/train_ddp.py specs/densenet121.yaml \\
        --memory-efficient --data /path/to/imagefolder

torchrun starts the processes and sets RANK, LOCAL_RANK and WORLD_SIZE; run without it, the
script is one process of a world of one. With CUDA each process takes GPU LOCAL_RANK and the
nccl backend, otherwise the CPU and gloo. Every process compiles the same spec
(archspec.compile_spec); DDP copies rank 0's initial weights to the others and averages the
gradients in backward, so the replicas stay equal. `--batch` is per process.

Data is synthetic (random inputs of the spec's input shape, random labels) unless `--data` names
an image folder (one subfolder per class, read with torchvision's ImageFolder, resized to the
spec's input size; each process reads its own shard through a DistributedSampler). A spec whose
output is (C,) is trained with cross-entropy over C classes; one whose output is (C, H, W), such
as a U-Net, with per-position cross-entropy. Only rank 0 prints.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import archspec


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", help="the spec file (YAML)")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps (default 20)")
    parser.add_argument("--batch", type=int, default=8, help="samples per process and step (default 8)")
    parser.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (default 0.01)")
    parser.add_argument("--set", action="append", default=[], metavar="VAR=VALUE",
                        help="override a var of the spec (repeatable), e.g. --set num_classes=10")  # fmt: skip
    parser.add_argument("--memory-efficient", action="store_true", help="checkpointed dense blocks")
    parser.add_argument("--data", metavar="DIR", help="an image folder (needs torchvision); default: synthetic")
    parser.add_argument("--log-every", type=int, default=1, metavar="N", help="print every N steps (default 1)")
    return parser.parse_args(argv)


def overrides(pairs: list[str]) -> dict:
    """["num_classes=10", "depths=[1, 1, 1, 1]"] -> {"num_classes": 10, "depths": [1, 1, 1, 1]}."""
    result = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set {pair}: expected VAR=VALUE")
        result[name.strip()] = yaml.safe_load(value)
    return result


def setup() -> tuple[int, int, torch.device]:
    """Join the process group that torchrun describes (or a world of one); (rank, world, device)."""
    if "RANK" not in os.environ:  # plain `python examples/train_ddp.py`: a world of one
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="29500")
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl")
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size(), device


def synthetic(input_shape, output_shape, batch: int, rank: int):
    """Endless batches of random inputs and labels, different on every rank."""
    generator = torch.Generator().manual_seed(1000 + rank)
    classes, spatial = output_shape[0], tuple(output_shape[1:])
    while True:
        x = torch.randn(batch, *input_shape, generator=generator)
        yield x, torch.randint(0, classes, (batch, *spatial), generator=generator)


def image_folder(root: str, input_shape, batch: int, rank: int, world: int):
    """Endless batches from an ImageFolder, each rank reading its own shard."""
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler
    from torchvision import datasets, transforms

    channels, height, width = input_shape
    steps = [transforms.Grayscale()] if channels == 1 else []
    steps += [transforms.Resize((height, width)), transforms.ToTensor()]
    dataset = datasets.ImageFolder(root, transforms.Compose(steps))
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, drop_last=True)
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, drop_last=True, num_workers=2)
    epoch = 0
    while True:
        sampler.set_epoch(epoch)  # a different shuffle each epoch, the same on every rank
        yield from loader
        epoch += 1


def main(argv=None) -> None:
    args = parse_args(argv)
    rank, world, device = setup()
    torch.manual_seed(0)
    values = overrides(args.set)
    shaped = archspec.analyze(args.spec, values)  # static shapes, no torch; SpecError if the spec is wrong
    model = archspec.compile_spec(args.spec, values, memory_efficient=args.memory_efficient or None).to(device)
    model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if args.data:
        batches = image_folder(args.data, shaped.input_shape, args.batch, rank, world)
    else:
        batches = synthetic(shaped.input_shape, shaped.body.out_shape, args.batch, rank)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    if rank == 0:
        print(f"{shaped.name}: {shaped.body.params:,} parameters, {world} process(es) on {device.type}"
              f" ({dist.get_backend()}), batch {args.batch} x {world}", flush=True)  # fmt: skip
    model.train()
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        x, y = next(batches)
        loss = loss_fn(model(x.to(device)), y.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # DDP averages the gradients over the processes here
        optimizer.step()
        if step % args.log_every == 0 or step == args.steps:
            mean = loss.detach().clone()
            dist.all_reduce(mean)  # the loss averaged over every process's batch
            if rank == 0:
                rate = step * args.batch * world / (time.perf_counter() - start)
                print(f"step {step}/{args.steps}  loss {mean.item() / world:.4f}  {rate:.1f} samples/s", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
