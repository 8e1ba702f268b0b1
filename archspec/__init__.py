"""archspec: compile YAML architecture specs into checked shapes and PyTorch modules.

`import archspec` does not import torch; only `compile_spec` does, when called.
"""

from __future__ import annotations

from .errors import Diagnostic, SpecError, UsageError, WeightsError
from .limits import Limits

__version__ = "0.2.0"
DISTRIBUTION = "archspec-nn"  # pip install archspec-nn; PyPI's "archspec" is another project
__all__ = [
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


def analyze(spec, overrides: dict | None = None, input_shape: tuple | None = None, limits: Limits | None = None):
    """The statically shaped IR of `spec` (see archspec.pipeline.analyze); imports no torch.

    Every node carries its shapes, `params` and `macs` (multiply-adds per sample); `measure`
    gives the rest of the costs. `limits` bound the work a spec may cause (docs/limits.md)."""
    from .pipeline import analyze

    return analyze(spec, overrides, input_shape, limits)


def measure(model, batch: int = 1, dtype: str = "float32"):
    """The costs of an analyzed model (archspec.costs.Costs): per-layer rows with params, MACs,
    receptive field, activation memory; totals; a training peak estimate at `batch`. No torch."""
    from .costs import measure

    return measure(model, batch, dtype)


def compile_spec(
    spec,
    overrides: dict | None = None,
    weights=None,
    strict: bool = True,
    limits: Limits | None = None,
    memory_efficient: bool | None = None,
):
    """A torch.nn.Module for `spec` (a path, YAML text, a dict or a schema.Spec).

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
    from .kinds.blocks import memory_efficient as dense_memory_efficient
    from .limits import applied
    from .pipeline import analyze
    from .torch_builder import build_model

    with applied(limits):
        module = build_model(dense_memory_efficient(analyze(spec, overrides), memory_efficient))
        if weights is not None:
            from .weights import load_weights

            module.weights_report = load_weights(module, weights, strict)
    return module
