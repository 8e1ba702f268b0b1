"""Whether a model fits in memory before torch allocates it: a spec of 10^12 parameters, or a
10^6 x 10^6 input, ends in a located error with the figures, not in the allocator (or the kernel's
OOM killer).

The estimate is the model's parameters and buffers, at torch's default dtype, plus one forward
pass of one sample without gradients (the input and, at the widest layer, its input and output:
what `archspec build` runs). It is compared with limit memory or, by default, with the memory the
machine has available (MemAvailable, the cgroup's headroom; free memory of the default CUDA device).
"""

from __future__ import annotations

import math
import os

from ..core.errors import LIMIT, Diagnostic, Location, SpecError
from ..core.ir import Model, Op, walk
from ..core.limits import current, how_to_raise, show_size


def check_fits(model: Model) -> None:
    """SpecError when building `model` (and one forward of one sample) cannot fit; skipped on
    torch's meta device, which allocates nothing, and where the available memory is unknown."""
    import torch

    device = torch.empty(0).device  # honours `with torch.device(...)` and set_default_device
    if device.type == "meta":
        return
    limit = current().memory
    available = limit if limit is not None else available_memory(device)
    if available is None:
        return
    item = torch.empty(0).element_size()
    need = Estimate.of(model, item)
    if need.total <= available:
        return
    figures = (
        f"parameters {show_size(need.parameters)}, buffers {show_size(need.buffers)}, "
        f"one forward of one sample {show_size(need.activations)}"
    )
    if limit is None:
        where = "on the CUDA device" if device.type == "cuda" else "on this machine"
        bound = f"but {show_size(available)} is available {where} ({how_to_raise('memory')})"
    else:
        bound = f"more than {how_to_raise('memory')}"
    message = f"building {model.name} needs about {show_size(need.total)} ({figures}), {bound}"
    raise SpecError([Diagnostic(message, LIMIT, need.where or Location(model.source, 1, 1))])


class Estimate:
    """Bytes a build and one forward of one sample take, and the layer that takes the most."""

    def __init__(self, parameters: int, buffers: int, activations: int, where: Location | None):
        self.parameters, self.buffers, self.activations, self.where = parameters, buffers, activations, where
        self.total = parameters + buffers + activations

    @classmethod
    def of(cls, model: Model, item: int) -> Estimate:
        from .costs import _buffer_bytes

        buffers, widest, widest_at, largest, largest_at = 0, 0, None, 0, None
        for node in walk(model.body):
            if isinstance(node, Op):
                buffers += _buffer_bytes([node], item)
                if node.params > largest:
                    largest, largest_at = node.params, node.loc
            elements = _elements(node.in_shape) + _elements(node.out_shape)
            if elements > widest and node.path:
                widest, widest_at = elements, node.loc
        parameters = model.body.params * item
        activations = (_elements(model.input_shape) + widest) * item
        where = largest_at if parameters >= activations else widest_at
        return cls(parameters, buffers, activations, where)


def _elements(shape) -> int:
    return math.prod(shape) if shape else 0


def available_memory(device) -> int | None:
    """Bytes `device` can still allocate: for the CPU, /proc/meminfo's MemAvailable (bounded by the
    cgroup's limit, in a container), else the free physical pages; None where unknown."""
    if device.type == "cuda":
        import torch

        try:
            return torch.cuda.mem_get_info(device)[0]
        except Exception:  # no driver, no such device: unknown, so unchecked
            return None
    if device.type != "cpu":
        return None
    available = _meminfo_available()
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            return None
    headroom = _cgroup_headroom()
    return min(available, headroom) if headroom is not None else available


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_headroom() -> int | None:
    """cgroup v2 (a container's own group): memory.max less what is in use, the page cache (which
    the kernel reclaims) not counted as used; None without a limit."""
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as file:
            maximum = file.read().strip()
        if maximum == "max":
            return None
        with open("/sys/fs/cgroup/memory.current", encoding="ascii") as file:
            used = int(file.read().strip())
        with open("/sys/fs/cgroup/memory.stat", encoding="ascii") as file:
            cache = next((int(line.split()[1]) for line in file if line.startswith("file ")), 0)
        return max(int(maximum) - used + cache, 0)
    except (OSError, ValueError, IndexError):
        return None
