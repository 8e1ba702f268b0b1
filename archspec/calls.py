"""The torch constructor call of every layer kind, as data: one source for both backends.

`layer_call(op)` gives ("nn.Conv2d", positional args, keyword args) for a shaped Op; the live
builder resolves the name in torch.nn and calls it, the emitter writes it out as source. Keyword
arguments equal to PyTorch's defaults are left out so emitted code reads like hand-written code.
Imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from .ir import Op


@dataclass(frozen=True)
class Call:
    func: str  # "nn.Conv2d", or "Normalize" for archspec's own layer classes
    args: tuple = ()
    kwargs: tuple[tuple[str, object], ...] = ()


def _dims(op: Op) -> int:
    return len(op.in_shape) - 1


def _call(func: str, *args, defaults: dict | None = None, **kwargs) -> Call:
    """A Call with the keyword arguments that differ from `defaults`."""
    defaults = defaults or {}
    kept = tuple((k, v) for k, v in kwargs.items() if k not in defaults or defaults[k] != v)
    return Call(func, args, kept)


def _conv(op: Op) -> Call:
    a = op.args
    return _call(f"nn.Conv{_dims(op)}d", a["in_channels"], a["out"], kernel_size=a["kernel"], stride=a["stride"],
                 padding=a["padding"], dilation=a["dilation"], groups=a["groups"], bias=a["bias"],
                 defaults=dict(stride=1, padding=0, dilation=1, groups=1, bias=True))  # fmt: skip


def _conv_transpose(op: Op) -> Call:
    a = op.args
    return _call(f"nn.ConvTranspose{_dims(op)}d", a["in_channels"], a["out"], kernel_size=a["kernel"],
                 stride=a["stride"], padding=a["padding"], output_padding=a["output_padding"],
                 groups=a["groups"], bias=a["bias"], dilation=a["dilation"],
                 defaults=dict(stride=1, padding=0, output_padding=0, groups=1, bias=True, dilation=1))  # fmt: skip


def _batchnorm(op: Op) -> Call:
    a = op.args
    dims = 1 if len(op.in_shape) <= 2 else _dims(op)
    return _call(f"nn.BatchNorm{dims}d", a["num_features"], eps=a["eps"], momentum=a["momentum"], affine=a["affine"],
                 track_running_stats=a["track_running_stats"],
                 defaults=dict(eps=1e-5, momentum=0.1, affine=True, track_running_stats=True))  # fmt: skip


def _layernorm(op: Op) -> Call:
    a = op.args
    shape = a["normalized_shape"]
    return _call("nn.LayerNorm", shape[0] if len(shape) == 1 else list(shape), eps=a["eps"],
                 elementwise_affine=a["affine"], bias=a["bias"],
                 defaults=dict(eps=1e-5, elementwise_affine=True, bias=True))  # fmt: skip


def _groupnorm(op: Op) -> Call:
    a = op.args
    return _call("nn.GroupNorm", a["groups"], a["num_channels"], eps=a["eps"], affine=a["affine"],
                 defaults=dict(eps=1e-5, affine=True))  # fmt: skip


def _maxpool(op: Op) -> Call:
    a = op.args
    return _call(f"nn.MaxPool{_dims(op)}d", a["kernel"], stride=a["stride"], padding=a["padding"],
                 dilation=a["dilation"], ceil_mode=a["ceil_mode"],
                 defaults=dict(stride=a["kernel"], padding=0, dilation=1, ceil_mode=False))  # fmt: skip


def _avgpool(op: Op) -> Call:
    a = op.args
    return _call(f"nn.AvgPool{_dims(op)}d", a["kernel"], stride=a["stride"], padding=a["padding"],
                 ceil_mode=a["ceil_mode"], count_include_pad=a["count_include_pad"],
                 defaults=dict(stride=a["kernel"], padding=0, ceil_mode=False, count_include_pad=True))  # fmt: skip


def _upsample(op: Op) -> Call:
    a = op.args
    scale = a["scale"]
    if scale is not None:
        scale = float(scale) if isinstance(scale, (int, float)) else tuple(float(s) for s in scale)
    return _call("nn.Upsample", size=a["size"], scale_factor=scale, mode=a["mode"], align_corners=a["align_corners"],
                 defaults=dict(size=None, scale_factor=None, mode="nearest", align_corners=None))  # fmt: skip


_CALLS = {
    "conv": _conv,
    "conv_transpose": _conv_transpose,
    "batchnorm": _batchnorm,
    "layernorm": _layernorm,
    "groupnorm": _groupnorm,
    "relu": lambda op: Call("nn.ReLU"),
    "leaky_relu": lambda op: _call("nn.LeakyReLU", op.args["slope"]),
    "sigmoid": lambda op: Call("nn.Sigmoid"),
    "tanh": lambda op: Call("nn.Tanh"),
    "gelu": lambda op: _call("nn.GELU", approximate=op.args["approximate"], defaults=dict(approximate="none")),
    "silu": lambda op: Call("nn.SiLU"),
    "softmax": lambda op: _call("nn.Softmax", dim=op.args["dim"]),
    "maxpool": _maxpool,
    "avgpool": _avgpool,
    "adaptive_avgpool": lambda op: _call(f"nn.AdaptiveAvgPool{_dims(op)}d", op.args["size"]),
    "adaptive_maxpool": lambda op: _call(f"nn.AdaptiveMaxPool{_dims(op)}d", op.args["size"]),
    "global_avgpool": lambda op: _call(f"nn.AdaptiveAvgPool{_dims(op)}d", 1),
    "upsample": _upsample,
    "dropout": lambda op: _call("nn.Dropout", op.args["p"], defaults={}),
    "flatten": lambda op: Call("nn.Flatten"),
    "linear": lambda op: _call("nn.Linear", op.args["in_features"], op.args["out"], bias=op.args["bias"],
                               defaults=dict(bias=True)),
    "identity": lambda op: Call("nn.Identity"),
    "normalize": lambda op: _call("Normalize", list(op.args["mean"]), list(op.args["std"]), len(op.in_shape)),
}  # fmt: skip


def layer_call(op: Op) -> Call:
    make = _CALLS.get(op.kind)
    if make is None:
        raise NotImplementedError(f"Unsupported node kind {op.kind!r}")
    return make(op)
