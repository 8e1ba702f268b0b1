"""Activations: one row each. A row makes the layer kind and, for `function`, a residual activation."""

from __future__ import annotations

from typing import ClassVar, Literal

from ..fields import Float, Layer
from ..registry import Activation, LayerKind, call, register
from .layers import same_shape


class LeakyReLU(Layer):
    primary: ClassVar = "slope"
    kind: Literal["leaky_relu"]
    slope: Float = 0.01


class GELU(Layer):
    kind: Literal["gelu"]
    approximate: Literal["none", "tanh"] = "none"


def activation(
    name: str,
    module: str,
    function: str,
    doc: str,
    fields=None,
    arguments=lambda args: ((), {}),
    defaults=None,
    saves=("input",),
) -> None:
    """Register the layer `name` (torch's `module`) and the residual activation applying `function`.

    `arguments` maps the layer's fields to the module's (positional, keyword) arguments; PyTorch's
    `defaults` are left out of emitted calls. A kind without fields is emitted as `function(x)`
    where it is unnamed. `saves`: what its backward keeps (see registry.LayerKind).
    """

    def build(op):
        args, kwargs = arguments(op.args)
        return call(module, *args, defaults=defaults, **kwargs)

    functional = f"{function}({{x}})" if fields is None else None
    register(LayerKind(name, doc, fields, same_shape, build, functional=functional, saves=saves))
    register(Activation(name, function))


activation("relu", "nn.ReLU", "torch.relu", "max(x, 0)", saves=("output",))
activation("sigmoid", "nn.Sigmoid", "torch.sigmoid", "1 / (1 + exp(-x))", saves=("output",))
activation("tanh", "nn.Tanh", "torch.tanh", "hyperbolic tangent", saves=("output",))
activation("silu", "nn.SiLU", "F.silu", "x * sigmoid(x) (swish)")
activation("hardswish", "nn.Hardswish", "F.hardswish", "x * relu6(x + 3) / 6 (MobileNetV3)")
activation(
    "leaky_relu",
    "nn.LeakyReLU",
    "F.leaky_relu",
    "x, or slope * x below 0; as a residual activation, slope 0.01",
    LeakyReLU,
    lambda a: ((a["slope"],), {}),
)
activation(
    "gelu",
    "nn.GELU",
    "F.gelu",
    "Gaussian error linear unit; as a residual activation, the exact form",
    GELU,
    lambda a: ((), {"approximate": a["approximate"]}),
    defaults={"approximate": "none"},
)
register(Activation("identity", None))  # `activation: identity` on a residual: nothing after the add
