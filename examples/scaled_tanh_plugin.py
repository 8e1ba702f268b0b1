"""An archspec plugin: the layer kind `scaled_tanh`, `scale * tanh(x / scale)` (a soft clip).

Use it with `archspec check SPEC --plugin examples/scaled_tanh_plugin.py` (or `--plugin MODULE`
for an importable module), or from Python by importing this file before compiling a spec.
docs/extending.md walks through it.
"""

from __future__ import annotations

import functools
from typing import ClassVar

from archspec.fields import Layer, PosFloat
from archspec.registry import LayerKind, call, register

# 1. The fields a spec may give, with their defaults. `primary` is the field `- scaled_tanh: 3.0` sets.


class ScaledTanhFields(Layer):
    primary: ClassVar = "scale"
    scale: PosFloat = 1.0


# 2. The shape rule: (op, input shape) -> (output shape, parameter count). No torch here: `check`
#    stays static. Raise archspec.shapes.ShapeError(message, code) for an input the layer refuses.


def scaled_tanh_shape(op, shape):
    return shape, 0


# 3. The torch module, imported only when a model is built (so `check` never imports torch) ...


@functools.cache
def scaled_tanh_module():
    import torch
    from torch import nn

    class ScaledTanh(nn.Module):
        def __init__(self, scale: float = 1.0) -> None:
            super().__init__()
            self.scale = scale

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.scale * torch.tanh(x / self.scale)

    return ScaledTanh


# 4. ... and the same class as source, for `archspec build --emit-python`.

SCALED_TANH_SOURCE = '''class ScaledTanh(nn.Module):
    """scale * tanh(x / scale): a soft clip to (-scale, scale)."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.tanh(x / self.scale)
'''

register(LayerKind(
    name="scaled_tanh",
    doc="scale * tanh(x / scale): a soft clip to (-scale, scale)",
    fields=ScaledTanhFields,
    shape=scaled_tanh_shape,
    build=lambda op: call("ScaledTanh", scale=op.args["scale"], defaults={"scale": 1.0}),
    module=scaled_tanh_module,
    source=SCALED_TANH_SOURCE,
))
