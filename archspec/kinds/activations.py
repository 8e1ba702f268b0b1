"""Activations: one row each. A row makes the layer kind and, for `function`, a residual activation.

A row with `inplace` (the function PyTorch gives `inplace=True`) gives its kind the field `inplace`:
absent, archspec applies it in place where that is safe (archspec/inplace.py decides, once, for both
backends); `true` asks for it (a located error where it is not safe); `false` never.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic_core import PydanticCustomError

from ..registry import Activation, LayerKind, call, register
from ..registry.fields import Bool, Fields, Float, PosFloat, after
from .layers import same_shape


class InPlace(Fields):
    """The fields of an activation PyTorch can apply in place (nn.ReLU(inplace=True))."""

    inplace: Bool | None = None  # None: in place where archspec finds it safe (archspec/inplace.py)


class LeakyReLU(InPlace):
    primary: ClassVar = "slope"
    kind: Literal["leaky_relu"]
    slope: Float = 0.01


class GELU(Fields):
    kind: Literal["gelu"]
    approximate: Literal["none", "tanh"] = "none"


class ELU(InPlace):
    primary: ClassVar = "alpha"
    kind: Literal["elu"]
    alpha: Float = 1.0


class Softplus(Fields):
    primary: ClassVar = "beta"
    kind: Literal["softplus"]
    beta: PosFloat = 1.0
    threshold: Float = 20.0  # above threshold / beta, x itself (PyTorch's, for numerical stability)


class Hardtanh(InPlace):
    kind: Literal["hardtanh"]
    min: Float = -1.0  # PyTorch's min_val: x below it becomes min
    max: Float = 1.0  # PyTorch's max_val: x above it becomes max

    @after
    def _ordered(self):
        if self.max <= self.min:
            raise PydanticCustomError(
                "bad_value",
                "max ({max}) must be greater than min ({min})",
                {"max": f"{self.max:g}", "min": f"{self.min:g}"},
            )
        return self


class PReLU(Fields):
    kind: Literal["prelu"]
    per_channel: Bool = False  # one slope per input channel (num_parameters = channels); else one in all
    init: Float = 0.25  # the slopes' initial value


def activation(
    name: str,
    module: str,
    function: str,
    doc: str,
    fields=None,
    arguments=lambda args: ((), {}),
    defaults=None,
    saves=("input",),
    inplace=None,
    refusal=None,
) -> None:
    """Register the layer `name` (torch's `module`) and the residual activation applying `function`.

    `arguments` maps the layer's fields to the module's (positional, keyword) arguments; PyTorch's
    `defaults` are left out of emitted calls. A kind without fields (but `inplace`) is emitted as
    `function(x)` where it is unnamed. `saves`: what its backward keeps (see registry.LayerKind).
    `inplace`: the function that takes `inplace=True`, for a kind whose module takes `inplace`;
    `refusal`: (fields, auto) -> why such a layer is not in place (see registry.Activation).
    """

    def build(op):
        args, kwargs = arguments(op.args)
        if inplace is not None:  # archspec/inplace.py's decision; `inplace=False` is PyTorch's default
            kwargs["inplace"] = op.inplace
        return call(module, *args, defaults={**(defaults or {}), "inplace": False}, **kwargs)

    functional = f"{function}({{x}})" if fields is None else None
    if inplace is not None and fields is None:
        fields = InPlace
    register(LayerKind(name, doc, fields, same_shape, build, functional=functional, saves=saves, keeps_shape=True))
    register(Activation(name, function, inplace, refusal))


def _negative(field: str):
    """PyTorch refuses the backward of an in-place leaky_relu or elu with a negative slope or alpha."""
    return lambda args, auto: (
        f"PyTorch has no in-place backward for a negative {field} ({args[field]:g})" if args[field] < 0 else None
    )


def _elu_refusal(args, auto):
    if auto:  # its in-place backward computes the gradient from the output: equal to the last bits only
        return "archspec applies elu in place only when asked (inplace: true)"
    return _negative("alpha")(args, auto)


activation("relu", "nn.ReLU", "torch.relu", "max(x, 0)", saves=("output",), inplace="F.relu")
activation("sigmoid", "nn.Sigmoid", "torch.sigmoid", "1 / (1 + exp(-x))", saves=("output",))
activation("tanh", "nn.Tanh", "torch.tanh", "hyperbolic tangent", saves=("output",))
activation("silu", "nn.SiLU", "F.silu", "x * sigmoid(x) (swish)", inplace="F.silu")
activation("hardswish", "nn.Hardswish", "F.hardswish", "x * relu6(x + 3) / 6 (MobileNetV3)", inplace="F.hardswish")
activation(
    "leaky_relu",
    "nn.LeakyReLU",
    "F.leaky_relu",
    "x, or slope * x below 0; as a residual activation, slope 0.01",
    LeakyReLU,
    lambda a: ((a["slope"],), {}),
    inplace="F.leaky_relu",
    refusal=_negative("slope"),
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
activation("relu6", "nn.ReLU6", "F.relu6", "min(max(x, 0), 6) (MobileNetV2)", inplace="F.relu6")
activation(
    "hardsigmoid",
    "nn.Hardsigmoid",
    "F.hardsigmoid",
    "relu6(x + 3) / 6 (MobileNetV3's squeeze-excitation gate)",
    inplace="F.hardsigmoid",
)
activation("mish", "nn.Mish", "F.mish", "x * tanh(softplus(x))", inplace="F.mish")
activation(
    "elu",
    "nn.ELU",
    "F.elu",
    "x, or alpha * (exp(x) - 1) below 0; as a residual activation, alpha 1",
    ELU,
    lambda a: ((), {"alpha": a["alpha"]}),
    defaults={"alpha": 1.0},
    inplace="F.elu",
    refusal=_elu_refusal,
)
activation(
    "softplus",
    "nn.Softplus",
    "F.softplus",
    "log(1 + exp(beta * x)) / beta, x itself above threshold / beta; as a residual activation, beta 1",
    Softplus,
    lambda a: ((), {"beta": a["beta"], "threshold": a["threshold"]}),
    defaults={"beta": 1.0, "threshold": 20.0},
)
activation(
    "hardtanh",
    "nn.Hardtanh",
    "F.hardtanh",
    "x clamped to [min, max]; as a residual activation, [-1, 1]",
    Hardtanh,
    lambda a: ((), {"min_val": a["min"], "max_val": a["max"]}),
    defaults={"min_val": -1.0, "max_val": 1.0},
    inplace="F.hardtanh",
)


def _prelu_shape(op, shape):
    return shape, shape[0] if op.args["per_channel"] else 1


# Not a residual activation: its slopes are parameters, and a residual's activation is a function.
register(
    LayerKind(
        "prelu",
        "x, or a learnt slope * x below 0: one slope, or one per channel (per_channel)",
        PReLU,
        _prelu_shape,
        lambda op: call(
            "nn.PReLU",
            num_parameters=op.in_shape[0] if op.args["per_channel"] else 1,
            init=op.args["init"],
            defaults={"num_parameters": 1, "init": 0.25},
        ),
        channels=("num_parameters",),
    )
)
register(Activation("identity", None, doc="nothing after the add"))  # `activation: identity` on a residual
