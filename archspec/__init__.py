"""archspec: compile YAML architecture specs into checked shapes and PyTorch modules.

`import archspec` registers the built-in kinds and does not import torch; only `compile_spec`
does, when called.
"""

from __future__ import annotations

from . import kinds  # noqa: F401  (the built-in kinds, registered before any plugin can take one's name)
from .core.errors import Diagnostic, SpecError, UsageError, WeightsError
from .core.limits import Limits
from .core.version import DISTRIBUTION, __version__

__all__ = [
    "DISTRIBUTION",
    "Diagnostic",
    "Limits",
    "SpecError",
    "UsageError",
    "WeightsError",
    "__version__",
    "analyze",
    "compile_spec",
    "measure",
]


def analyze(spec, overrides: dict | None = None, input_shape: tuple | None = None, limits: Limits | dict | None = None):
    """The statically shaped IR of `spec` (see archspec.analyses.analyze); imports no torch.

    Every node carries its shapes, `params` and `macs` (multiply-adds per sample); `measure`
    gives the rest of the costs. `limits` bound the work a spec may cause (docs/limits.md)."""
    from .analyses.analyze import analyze

    return analyze(spec, overrides, input_shape, limits)


def measure(model, batch: int = 1, dtype: str = "float32"):
    """The costs of an analyzed model (archspec.costs.Costs): per-layer rows with params, MACs,
    receptive field, activation memory; totals; a training peak estimate at `batch`. No torch."""
    from .analyses.costs import measure

    return measure(model, batch, dtype)


def compile_spec(
    spec,
    overrides: dict | None = None,
    weights=None,
    strict: bool = True,
    limits: Limits | dict | None = None,
    memory_efficient: bool | None = None,
):
    """A torch.nn.Module for `spec` (a path, YAML text, a dict, or a validated spec).

    `overrides` replace values of the spec's vars, e.g. {"num_classes": 10}. `weights` is a
    state_dict file to load: strictly by default (WeightsError lists what does not fit); with
    strict=False, every tensor that fits by key, shape and dtype, the rest keeping its
    initialisation, and the module's `weights_report` says what was transferred (archspec.diff.Diff;
    `print(model.weights_report.summary())`). Raises SpecError, listing every problem with its
    location, if the spec is wrong. `limits` (archspec.Limits) bound the work and the memory a spec
    and a weights file may take (docs/limits.md). `memory_efficient` True (or False) turns
    torchvision's checkpointed bottleneck on (off) in every dense block, whatever the spec says; None
    keeps each block's own `memory_efficient` field.
    """
    from .analyses.analyze import analyze
    from .backends.live import build_model  # imports torch
    from .core.limits import applied
    from .kinds.blocks import memory_efficient as dense_memory_efficient

    with applied(limits):
        module = build_model(dense_memory_efficient(analyze(spec, overrides), memory_efficient))
        if weights is not None:
            from .backends.weights import load_weights

            module.weights_report = load_weights(module, weights, strict)
    return module
