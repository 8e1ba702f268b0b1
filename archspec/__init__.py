"""archspec: compile YAML architecture specs into checked shapes and PyTorch modules.

`import archspec` does not import torch; only `compile_spec` does, when called.
"""

from __future__ import annotations

from .errors import Diagnostic, SpecError, UsageError, WeightsError

__version__ = "0.1.0"
__all__ = ["Diagnostic", "SpecError", "UsageError", "WeightsError", "__version__", "analyze", "compile_spec"]


def analyze(spec, overrides: dict | None = None):
    """The statically shaped IR of `spec` (see archspec.pipeline.analyze); imports no torch."""
    from .pipeline import analyze

    return analyze(spec, overrides)


def compile_spec(spec, overrides: dict | None = None, weights=None):
    """A torch.nn.Module for `spec` (a path, YAML text, a dict or a schema.Spec).

    `overrides` replace values of the spec's vars, e.g. {"num_classes": 10}. `weights` is a
    state_dict file to load strictly (WeightsError lists what does not fit). Raises SpecError,
    listing every problem with its location, if the spec is wrong.
    """
    from .pipeline import analyze
    from .torch_builder import build_model

    module = build_model(analyze(spec, overrides))
    if weights is not None:
        from .weights import load_weights

        load_weights(module, weights)
    return module
