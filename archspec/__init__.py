"""archspec: compile YAML architecture specs into checked shapes and PyTorch modules.

`import archspec` does not import torch; only `compile_spec` does, when called.
"""

from __future__ import annotations

from .errors import Diagnostic, SpecError, UsageError
from .pipeline import analyze

__version__ = "0.1.0"
__all__ = ["compile_spec", "analyze", "SpecError", "UsageError", "Diagnostic", "__version__"]


def compile_spec(spec, overrides: dict | None = None):
    """A torch.nn.Module for `spec` (a path, YAML text, a dict or a schema.Spec).

    `overrides` replace values of the spec's vars, e.g. {"num_classes": 10}. Raises SpecError,
    listing every problem with its location, if the spec is wrong.
    """
    from .torch_builder import build_model

    return build_model(analyze(spec, overrides))
