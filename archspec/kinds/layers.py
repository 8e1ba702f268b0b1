"""The layer kinds that are one torch module each: fields, shape rule, parameters, constructor.

Each `register(LayerKind(...))` is the whole of what archspec knows of a kind. Shape rules use
PyTorch's own formulas and return (output shape, parameter count); they raise ShapeError with the
formula and the numbers filled in.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic_core import PydanticCustomError

from ..core.errors import BAD_ARG, CHANNEL_MISMATCH, NEEDS_FLATTEN, OUTPUT_SIZE, RANK
from ..core.shape_rules import (
    CONV_FORMULA,
    SPATIAL_NAMES,
    TRANSPOSED_FORMULA,
    ShapeError,
    Window,
    below_one,
    dims,
    fmt_shape,
    groups_divide,
    per_dim,
    spatial,
)
from ..registry import Call, LayerKind, call, register
from ..registry.fields import (
    Bool,
    Eps,
    Fields,
    Float,
    Int,
    Means,
    Momentum,
    NonNegSizes,
    Padding,
    Permutation,
    PosFloatOrSizes,
    PosInt,
    Probability,
    Reference,
    Sizes,
    Stds,
    after,
)


def same_shape(op, shape):
    return shape, 0


def weight_shared_macs(op) -> int:
    """torchinfo's rule for convolutions: every weight and bias is used once per output position."""
    return op.params * math.prod(op.out_shape[1:])


def extent(kernel: int, dilation: int) -> int:
    return dilation * (kernel - 1) + 1


# ---------------------------------------------------------------- convolutions


class Conv(Fields):
    primary: ClassVar = "out"
    kind: Literal["conv"]
    out: PosInt
    kernel: Sizes
    stride: Sizes = 1
    padding: Padding = 0
    dilation: Sizes = 1
    groups: PosInt = 1
    bias: Bool = True


def _conv_shape(op, shape):
    n = spatial(op, shape)
    channels, out_channels = shape[0], op.args["out"]
    kernel, stride, dilation = (per_dim(op, f, n) for f in ("kernel", "stride", "dilation"))
    if op.args["padding"] == "same" and any(s != 1 for s in stride):
        raise ShapeError("padding='same' needs stride 1, as in PyTorch", BAD_ARG)
    sizes = []
    for dim, (size, window, k, s, p, d) in enumerate(
        zip(shape[1:], _conv_windows(op, n), kernel, stride, _pads(op, n), dilation)
    ):
        out = window.sized(size)[0]
        if out < 1:
            below_one(dim, n, CONV_FORMULA, f"floor(({size} + 2*{p} - {d}*({k}-1) - 1)/{s}) + 1", out)
        sizes.append(out)
    weights = out_channels * (channels // op.args["groups"]) * math.prod(kernel)
    result = (out_channels, *sizes), weights + (out_channels if op.args["bias"] else 0)
    groups_divide(op, channels, out_channels, result)  # after the sizes: the layers after it are still checked
    return result


def _conv_windows(op, n: int) -> tuple[Window, ...]:
    padding = op.args["padding"]
    windows = []
    for k, s, d, p in zip(*(per_dim(op, f, n) for f in ("kernel", "stride", "dilation")), _pads(op, n)):
        e = extent(k, d)
        total = e - 1 if padding == "same" else 2 * p  # PyTorch puts the odd one of "same" at the end
        windows.append(Window(e, s, total // 2 if padding == "same" else p, total))
    return tuple(windows)


def _pads(op, n) -> tuple[int, ...]:
    return (0,) * n if op.args["padding"] in ("same", "valid") else per_dim(op, "padding", n)


def _conv_call(op) -> Call:
    a = op.args
    return call(
        f"nn.Conv{dims(op)}d",
        op.in_shape[0],
        a["out"],
        kernel_size=a["kernel"],
        stride=a["stride"],
        padding=a["padding"],
        dilation=a["dilation"],
        groups=a["groups"],
        bias=a["bias"],
        defaults=dict(stride=1, padding=0, dilation=1, groups=1, bias=True),
    )


register(
    LayerKind(
        "conv",
        "convolution (Conv1d/2d/3d by the input's rank)",
        Conv,
        _conv_shape,
        _conv_call,
        stride=lambda op: op.args["stride"],
        macs=weight_shared_macs,
        window=lambda op: _conv_windows(op, dims(op)),
        fresh=True,
        channels=(0, 1, "groups"),
    )
)


class ConvTranspose(Fields):
    primary: ClassVar = "out"
    kind: Literal["conv_transpose"]
    out: PosInt
    kernel: Sizes
    stride: Sizes = 1
    padding: NonNegSizes = 0
    output_padding: NonNegSizes = 0
    dilation: Sizes = 1
    groups: PosInt = 1
    bias: Bool = True


def _conv_transpose_shape(op, shape):
    n = spatial(op, shape)
    channels, out_channels = shape[0], op.args["out"]
    kernel, stride, padding, out_pad, dilation = (
        per_dim(op, f, n) for f in ("kernel", "stride", "padding", "output_padding", "dilation")
    )
    sizes, windows = [], _transposed_windows(op, n)
    for dim, (size, k, s, p, extra, d) in enumerate(zip(shape[1:], kernel, stride, padding, out_pad, dilation)):
        if extra >= max(s, d):
            raise ShapeError(f"output_padding ({extra}) must be smaller than stride ({s}) or dilation ({d})", BAD_ARG)
        out = windows[dim].sized(size)[0]
        if out < 1:
            below_one(dim, n, TRANSPOSED_FORMULA, f"({size}-1)*{s} - 2*{p} + {d}*({k}-1) + {extra} + 1", out)
        sizes.append(out)
    weights = channels * (out_channels // op.args["groups"]) * math.prod(kernel)
    result = (out_channels, *sizes), weights + (out_channels if op.args["bias"] else 0)
    groups_divide(op, channels, out_channels, result)
    return result


def _transposed_windows(op, n: int) -> tuple[Window, ...]:
    fields = (per_dim(op, f, n) for f in ("kernel", "stride", "padding", "output_padding", "dilation"))
    return tuple(
        Window(extent(k, d), s, p, 2 * p, transposed=True, output_padding=extra, dilation=d)
        for k, s, p, extra, d in zip(*fields)
    )


def _conv_transpose_call(op) -> Call:
    a = op.args
    return call(
        f"nn.ConvTranspose{dims(op)}d",
        op.in_shape[0],
        a["out"],
        kernel_size=a["kernel"],
        stride=a["stride"],
        padding=a["padding"],
        output_padding=a["output_padding"],
        groups=a["groups"],
        bias=a["bias"],
        dilation=a["dilation"],
        defaults=dict(stride=1, padding=0, output_padding=0, groups=1, bias=True, dilation=1),
    )


register(
    LayerKind(
        "conv_transpose",
        "transposed convolution (ConvTranspose1d/2d/3d)",
        ConvTranspose,
        _conv_transpose_shape,
        _conv_transpose_call,
        macs=weight_shared_macs,
        window=lambda op: _transposed_windows(op, dims(op)),
        fresh=True,
        channels=(0, 1, "groups"),
    )
)


# ---------------------------------------------------------------- normalisation


class BatchNorm(Fields):
    kind: Literal["batchnorm"]
    eps: Eps = 1e-5
    momentum: Momentum | None = 0.1
    affine: Bool = True
    track_running_stats: Bool = True


def _norm_call(module: str, op, stateful: bool) -> Call:
    """The constructor of a batch or instance norm: the same four fields. PyTorch's defaults differ
    only in affine and track_running_stats: both on for batch norm (`stateful`), both off for instance norm."""
    a = op.args
    return call(
        module,
        op.in_shape[0],
        eps=a["eps"],
        momentum=a["momentum"],
        affine=a["affine"],
        track_running_stats=a["track_running_stats"],
        defaults=dict(eps=1e-5, momentum=0.1, affine=stateful, track_running_stats=stateful),
    )


def _running_stats(op) -> tuple:
    """A tracking norm's buffers: running mean and variance per channel, and num_batches_tracked."""
    return ((2 * op.in_shape[0], "float"), (1, "int64")) if op.args["track_running_stats"] else ()


def _batchnorm_call(op) -> Call:
    rank = 1 if len(op.in_shape) <= 2 else dims(op)
    return _norm_call(f"nn.BatchNorm{rank}d", op, stateful=True)


register(
    LayerKind(
        "batchnorm",
        "batch normalisation over the channels (BatchNorm1d/2d/3d)",
        BatchNorm,
        lambda op, shape: (shape, 2 * shape[0] if op.args["affine"] else 0),
        _batchnorm_call,
        buffers=_running_stats,
        fresh=True,
        channels=(0,),
        keeps_shape=True,
    )
)


class FrozenBatchNorm(Fields):
    kind: Literal["frozen_batchnorm"]
    eps: Eps = 1e-5


def _frozen_batchnorm_module():
    from .torch_modules import FrozenBatchNorm as module

    return module


register(
    LayerKind(
        "frozen_batchnorm",
        "batch normalisation with fixed statistics and affine (torchvision's FrozenBatchNorm2d, what its "
        "pretrained detectors use): weight, bias, running_mean and running_var are buffers, none learns",
        FrozenBatchNorm,
        lambda op, shape: (shape, 0),
        lambda op: call("FrozenBatchNorm", op.in_shape[0], eps=op.args["eps"], defaults=dict(eps=1e-5)),
        buffers=lambda op: ((4 * op.in_shape[0], "float"),),
        macs=lambda op: 0,
        saves=(),
        fresh=True,
        module=_frozen_batchnorm_module,
        template="frozen_batchnorm.py.jinja",
        channels=(0,),
        keeps_shape=True,
    )
)


class LayerNorm(Fields):
    primary: ClassVar = "dims"
    kind: Literal["layernorm"]
    dims: PosInt | None = None  # how many trailing per-sample dims to normalise; all by default
    eps: Eps = 1e-5
    affine: Bool = True
    bias: Bool = True


def _normalized_shape(op, shape) -> tuple[int, ...]:
    count = op.args["dims"] or len(shape)
    if count > len(shape):
        raise ShapeError(f"cannot normalise the last {count} dims of a rank-{len(shape)} input", RANK)
    return tuple(shape[-count:])


def _layernorm_shape(op, shape):
    size = math.prod(_normalized_shape(op, shape))
    return shape, (size + (size if op.args["bias"] else 0)) if op.args["affine"] else 0


def _layernorm_call(op) -> Call:
    a, normalized = op.args, _normalized_shape(op, op.in_shape)
    return call(
        "nn.LayerNorm",
        normalized[0] if len(normalized) == 1 else list(normalized),
        eps=a["eps"],
        elementwise_affine=a["affine"],
        bias=a["bias"],
        defaults=dict(eps=1e-5, elementwise_affine=True, bias=True),
    )


register(
    LayerKind(
        "layernorm",
        "layer normalisation over the last `dims` per-sample dims",
        LayerNorm,
        _layernorm_shape,
        _layernorm_call,
        fresh=True,
        channels=(),
    )
)


class LayerNorm2d(Fields):
    kind: Literal["layernorm2d"]
    eps: Eps = 1e-5
    affine: Bool = True
    bias: Bool = True


def _layernorm2d_shape(op, shape):
    if len(shape) != 3:
        raise ShapeError(f"layernorm2d normalises the channels of a (C, H, W) input, not a rank-{len(shape)} one", RANK)
    channels = shape[0]
    return shape, (channels + (channels if op.args["bias"] else 0)) if op.args["affine"] else 0


def _layernorm2d_module():
    from .torch_modules import LayerNorm2d as module

    return module


register(
    LayerKind(
        "layernorm2d",
        "layer normalisation over the channels at each position of a (C, H, W) input (ConvNeXt's LayerNorm2d)",
        LayerNorm2d,
        _layernorm2d_shape,
        lambda op: call(
            "LayerNorm2d",
            op.in_shape[0],
            eps=op.args["eps"],
            elementwise_affine=op.args["affine"],
            bias=op.args["bias"],
            defaults=dict(eps=1e-5, elementwise_affine=True, bias=True),
        ),
        module=_layernorm2d_module,
        template="layernorm2d.py.jinja",
    )
)


class LayerScale(Fields):
    primary: ClassVar = "init"
    kind: Literal["layer_scale"]
    init: Float = 1e-6
    flat: Bool = False  # a (C,) parameter, viewed as (C, 1, 1) where applied (SSD's scale_weight)


def _layer_scale_shape(op, shape):
    return shape, shape[0]


def _layer_scale_size(op) -> tuple[int, ...]:
    """One factor per channel, broadcast over the spatial dims: (C, 1, 1) for a (C, H, W) input."""
    return (op.in_shape[0],) if op.args["flat"] else (op.in_shape[0],) + (1,) * (len(op.in_shape) - 1)


register(
    LayerKind(
        "layer_scale",
        "multiplies each channel by a learnt factor, starting at `init`: a parameter of the enclosing module "
        "named as the layer (ConvNeXt's layer_scale), not a module of its own",
        LayerScale,
        _layer_scale_shape,
        lambda op: Call("torch.full", (_layer_scale_size(op), op.args["init"])),
        parameter=True,
        macs=lambda op: 0,  # torchinfo counts no mult-adds for a module's own parameters
    )
)


class L2Norm(Fields):
    kind: Literal["l2norm"]
    eps: Eps = 1e-12


def _l2norm_module():
    from .torch_modules import L2Norm as module

    return module


register(
    LayerKind(
        "l2norm",
        "divides each position's channel vector by its L2 norm (F.normalize(x, dim=1); SSD's conv4_3)",
        L2Norm,
        lambda op, shape: (shape, 0),
        lambda op: call("L2Norm", eps=op.args["eps"], defaults=dict(eps=1e-12)),
        module=_l2norm_module,
        template="l2norm.py.jinja",
        channels=(),
        keeps_shape=True,
    )
)


class GroupNorm(Fields):
    primary: ClassVar = "groups"
    kind: Literal["groupnorm"]
    groups: PosInt
    eps: Eps = 1e-5
    affine: Bool = True


def _groupnorm_shape(op, shape):
    groups, channels = op.args["groups"], shape[0]
    result = shape, 2 * channels if op.args["affine"] else 0
    if channels % groups:  # its output is known all the same: the layers after it are still checked
        raise ShapeError(f"groups={groups} does not divide the {channels} input channels", CHANNEL_MISMATCH, result)
    return result


register(
    LayerKind(
        "groupnorm",
        "group normalisation; `groups` must divide the channels",
        GroupNorm,
        _groupnorm_shape,
        lambda op: call(
            "nn.GroupNorm",
            op.args["groups"],
            op.in_shape[0],
            eps=op.args["eps"],
            affine=op.args["affine"],
            defaults=dict(eps=1e-5, affine=True),
        ),
        fresh=True,
        channels=(1,),
        keeps_shape=True,
    )
)


class InstanceNorm(Fields):
    kind: Literal["instance_norm"]
    eps: Eps = 1e-5
    momentum: Momentum | None = 0.1
    affine: Bool = False
    track_running_stats: Bool = False


def _instance_norm_shape(op, shape):
    n = spatial(op, shape)
    result = shape, 2 * shape[0] if op.args["affine"] else 0
    if math.prod(shape[1:]) == 1:  # PyTorch refuses it in training, and without running stats always
        raise ShapeError(
            f"instance norm needs more than one spatial position per channel; the input has {n} spatial "
            f"dim{'s' if n > 1 else ''} of size 1",
            BAD_ARG,
            result,
        )
    return result


def _instance_norm_call(op) -> Call:
    return _norm_call(f"nn.InstanceNorm{dims(op)}d", op, stateful=False)


register(
    LayerKind(
        "instance_norm",
        "instance normalisation: each channel of each sample over its positions (InstanceNorm1d/2d/3d)",
        InstanceNorm,
        _instance_norm_shape,
        _instance_norm_call,
        buffers=_running_stats,
        fresh=True,
        channels=(0,),
        keeps_shape=True,
    )
)


class Normalize(Fields):
    kind: Literal["normalize"]
    mean: Means
    std: Stds

    @after
    def _same_length(self):
        if len(self.mean) != len(self.std):
            raise PydanticCustomError(
                "bad_value", "mean has {m} values but std has {s}", {"m": len(self.mean), "s": len(self.std)}
            )
        return self


def _normalize_shape(op, shape):
    if len(op.args["mean"]) != shape[0]:
        raise ShapeError(
            f"mean and std have {len(op.args['mean'])} values but the input has {shape[0]} channels", CHANNEL_MISMATCH
        )
    return shape, 0


def _normalize_module():
    from .torch_modules import Normalize as module

    return module


register(
    LayerKind(
        "normalize",
        "per-channel (x - mean) / std as a layer, like torchvision's transforms.Normalize",
        Normalize,
        _normalize_shape,
        lambda op: call("Normalize", list(op.args["mean"]), list(op.args["std"]), len(op.in_shape)),
        buffers=lambda op: ((2 * op.in_shape[0], "float"),),
        saves=(),
        module=_normalize_module,
        template="normalize.py.jinja",
        channels=(),
    )
)


# ---------------------------------------------------------------- pooling


class MaxPool(Fields):
    primary: ClassVar = "kernel"
    kind: Literal["maxpool"]
    kernel: Sizes
    stride: Sizes | None = None  # defaults to kernel, as in PyTorch
    padding: NonNegSizes = 0
    dilation: Sizes = 1
    ceil_mode: Bool = False


class AvgPool(Fields):
    primary: ClassVar = "kernel"
    kind: Literal["avgpool"]
    kernel: Sizes
    stride: Sizes | None = None
    padding: NonNegSizes = 0
    ceil_mode: Bool = False
    count_include_pad: Bool = True


def pool_stride(op):
    return op.args["kernel"] if op.args["stride"] is None else op.args["stride"]


def _pool_shape(op, shape):
    n = spatial(op, shape)
    kernel, padding = per_dim(op, "kernel", n), per_dim(op, "padding", n)
    stride = per_dim(op, "stride", n, pool_stride(op))
    dilation = per_dim(op, "dilation", n) if "dilation" in op.args else (1,) * n
    ceil, windows = op.args["ceil_mode"], _pool_windows(op, n)
    sizes, refused = [], None  # what PyTorch refuses although the output size is known
    for dim, (size, k, s, p, d) in enumerate(zip(shape[1:], kernel, stride, padding, dilation)):
        if p > k // 2:
            refused = refused or f"padding {p} is more than half the kernel ({k}); PyTorch allows at most {k // 2}"
        if op.kind == "avgpool" and n == 3 and size < k:  # only avg_pool3d checks the unpadded size
            refused = refused or (
                f"input {SPATIAL_NAMES[n][dim]} = {size} is smaller than the kernel ({k}); "
                f"PyTorch's 3-d average pooling needs at least the kernel"
            )
        out, dropped = windows[dim].sized(size)
        formula, filled = CONV_FORMULA, f"floor(({size} + 2*{p} - {d}*({k}-1) - 1)/{s}) + 1"
        if op.kind == "avgpool":
            formula, filled = "floor((in + 2p - k)/s) + 1", f"floor(({size} + 2*{p} - {k})/{s}) + 1"
        if ceil:
            # PyTorch's ceil_mode: round up, but the last window must start inside the input or left padding.
            formula = formula.replace("floor", "ceil") + ", minus 1 if the last window starts past in + p"
            filled = filled.replace("floor", "ceil") + (" - 1" if dropped else "")
        if out < 1 and refused is None:
            below_one(dim, n, formula, filled, out)
        sizes.append(out)
    if refused is not None:  # the layers after it are still checked, when its output is a size
        raise ShapeError(refused, BAD_ARG, ((shape[0], *sizes), 0) if min(sizes) >= 1 else None)
    return (shape[0], *sizes), 0


def _pool_windows(op, n: int) -> tuple[Window, ...]:
    kernel, padding = per_dim(op, "kernel", n), per_dim(op, "padding", n)
    stride = per_dim(op, "stride", n, pool_stride(op))
    dilation = per_dim(op, "dilation", n) if "dilation" in op.args else (1,) * n
    return tuple(
        Window(extent(k, d), s, p, 2 * p, ceil=op.args["ceil_mode"])
        for k, s, p, d in zip(kernel, stride, padding, dilation)
    )


def _maxpool_call(op) -> Call:
    a = op.args
    return call(
        f"nn.MaxPool{dims(op)}d",
        a["kernel"],
        stride=pool_stride(op),
        padding=a["padding"],
        dilation=a["dilation"],
        ceil_mode=a["ceil_mode"],
        defaults=dict(stride=a["kernel"], padding=0, dilation=1, ceil_mode=False),
    )


def _avgpool_call(op) -> Call:
    a = op.args
    return call(
        f"nn.AvgPool{dims(op)}d",
        a["kernel"],
        stride=pool_stride(op),
        padding=a["padding"],
        ceil_mode=a["ceil_mode"],
        count_include_pad=a["count_include_pad"],
        defaults=dict(stride=a["kernel"], padding=0, ceil_mode=False, count_include_pad=True),
    )


register(
    LayerKind(
        "maxpool",
        "max pooling; the stride defaults to the kernel",
        MaxPool,
        _pool_shape,
        _maxpool_call,
        stride=pool_stride,
        window=lambda op: _pool_windows(op, dims(op)),
        saves=("input", "indices"),
    )
)
register(
    LayerKind(
        "avgpool",
        "average pooling; the stride defaults to the kernel",
        AvgPool,
        _pool_shape,
        _avgpool_call,
        stride=pool_stride,
        window=lambda op: _pool_windows(op, dims(op)),
        saves=(),
    )
)


class AdaptivePool(Fields):
    primary: ClassVar = "size"
    kind: Literal["adaptive_avgpool", "adaptive_maxpool"]
    size: Sizes


def _adaptive_shape(op, shape):
    return (shape[0], *per_dim(op, "size", spatial(op, shape))), 0


for _name, _module, _what in (
    ("adaptive_avgpool", "AdaptiveAvgPool", "average"),
    ("adaptive_maxpool", "AdaptiveMaxPool", "max"),
):
    register(
        LayerKind(
            _name,
            f"adaptive {_what} pooling to a fixed output size",
            AdaptivePool,
            _adaptive_shape,
            lambda op, m=_module: call(f"nn.{m}{dims(op)}d", op.args["size"]),
            # to one position in every dim it is a global pool: each output sees the whole input
            window=lambda op: tuple(Window(size=n, whole=set(op.out_shape[1:]) == {1}) for n in op.out_shape[1:]),
            saves=("input", "indices") if _what == "max" else (),
        )
    )

register(
    LayerKind(
        "global_avgpool",
        "average over all spatial positions; keeps the dims (follow with flatten)",
        None,
        lambda op, shape: ((shape[0], *(1,) * spatial(op, shape)), 0),
        lambda op: call(f"nn.AdaptiveAvgPool{dims(op)}d", 1),
        functional="F.adaptive_avg_pool{n}d({x}, 1)",
        window=lambda op: (Window(size=1, whole=True),) * dims(op),
        saves=(),
    )
)


# ---------------------------------------------------------------- resampling


class Upsample(Fields):
    primary: ClassVar = "scale"
    kind: Literal["upsample"]
    scale: PosFloatOrSizes | None = None
    size: Sizes | None = None
    size_of: Reference | None = None  # the spatial size of another tensor (or `input`), at run time
    mode: Literal["nearest", "linear", "bilinear", "bicubic", "trilinear"] = "nearest"
    align_corners: Bool | None = None

    @after
    def _scale_or_size(self):
        if sum(value is not None for value in (self.scale, self.size, self.size_of)) != 1:
            raise PydanticCustomError("bad_value", "give exactly one of scale, size and size_of")
        if self.align_corners is not None and self.mode == "nearest":
            raise PydanticCustomError("bad_value", "align_corners only applies to the interpolating modes, not nearest")
        return self


_UPSAMPLE_RANKS = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}


def _upsample_shape(op, shape):
    n = spatial(op, shape)
    mode = op.args["mode"]
    if _UPSAMPLE_RANKS.get(mode, n) != n:
        raise ShapeError(f"mode {mode!r} needs {_UPSAMPLE_RANKS[mode]} spatial dims, the input has {n}", RANK)
    if op.args["size"] is not None:
        return (shape[0], *per_dim(op, "size", n)), 0
    if op.args["size_of"] is not None:
        like = op.like_shape
        if len(like) != len(shape):
            got = f"{len(like) - 1} spatial dims" if len(like) > 1 else "no spatial dims"
            raise ShapeError(f"size_of {op.args['size_of']} {fmt_shape(like)} has {got}, the input {n}", RANK)
        return (shape[0], *like[1:]), 0
    scale = op.args["scale"]
    scales = (scale,) * n if isinstance(scale, (int, float)) else tuple(scale)
    if len(scales) != n:
        raise ShapeError(f"scale has {len(scales)} values but the input has {n} spatial dims", RANK)
    sizes = []
    for dim, (size, factor) in enumerate(zip(shape[1:], scales)):
        product = size * float(factor)
        if not math.isfinite(product):  # a scale near the largest float: no size at all
            name = SPATIAL_NAMES[n][dim]
            raise ShapeError(f"output {name} would be floor({size} * {factor:g}), beyond any size", OUTPUT_SIZE)
        out = math.floor(product)
        if out < 1:
            below_one(dim, n, "floor(in * scale)", f"floor({size} * {factor:g})", out)
        sizes.append(out)
    return (shape[0], *sizes), 0


def _resize_module():
    from .torch_modules import Resize as module

    return module


_TAPS = {"nearest": 1, "linear": 2, "bilinear": 2, "trilinear": 2, "bicubic": 4}  # input positions one output reads


def _upsample_window(op) -> tuple[Window, ...]:
    n, taps = dims(op), _TAPS[op.args["mode"]]
    if op.args["size"] is not None or op.args["size_of"] is not None:
        return tuple(Window(taps, size=size) for size in op.out_shape[1:])
    scale = op.args["scale"]
    scales = (scale,) * n if isinstance(scale, (int, float)) else tuple(scale)
    return tuple(Window(taps, scale=float(factor)) for factor in scales)


def _upsample_call(op) -> Call:
    a = op.args
    if a["size_of"] is not None:  # the size is known only at run time: Resize takes that tensor too
        return call(
            "Resize",
            mode=a["mode"],
            align_corners=a["align_corners"],
            defaults=dict(mode="nearest", align_corners=None),
        )
    scale = a["scale"]
    if scale is not None:
        scale = float(scale) if isinstance(scale, (int, float)) else tuple(float(s) for s in scale)
    return call(
        "nn.Upsample",
        size=a["size"],
        scale_factor=scale,
        mode=a["mode"],
        align_corners=a["align_corners"],
        defaults=dict(size=None, scale_factor=None, mode="nearest", align_corners=None),
    )


register(
    LayerKind(
        "upsample",
        "resize by a scale, to a size, or to another tensor's size (nearest or interpolating)",
        Upsample,
        _upsample_shape,
        _upsample_call,
        window=_upsample_window,
        saves=(),
        module=_resize_module,
        template="resize.py.jinja",
        like="size_of",
    )
)


# ---------------------------------------------------------------- padding and rearranging


class ZeroPad(Fields):
    primary: ClassVar = "padding"
    kind: Literal["zero_pad"]
    padding: NonNegSizes  # zeros before each dim's first position, and after its last unless `after` says
    after: NonNegSizes | None = None  # zeros after each dim's last position, where they differ from `padding`


def _zero_pad_sides(op, n) -> tuple[tuple[int, int], ...]:
    """(before, after) per spatial dim."""
    before = per_dim(op, "padding", n)
    after = before if op.args["after"] is None else per_dim(op, "after", n)
    return tuple(zip(before, after))


def _zero_pad_shape(op, shape):
    n = spatial(op, shape)
    return (shape[0], *(size + b + a for size, (b, a) in zip(shape[1:], _zero_pad_sides(op, n)))), 0


def _zero_pad_call(op) -> Call:
    sides = _zero_pad_sides(op, dims(op))
    flat = [side for pair in reversed(sides) for side in pair]  # PyTorch's order: the last dim first
    return call(f"nn.ZeroPad{dims(op)}d", flat[0] if len(set(flat)) == 1 else tuple(flat))


register(
    LayerKind(
        "zero_pad",
        "pads each spatial dim with zeros: `padding` before, and after (or `after`)",
        ZeroPad,
        _zero_pad_shape,
        _zero_pad_call,
        window=lambda op: tuple(Window(pad=b, pad_total=b + a) for b, a in _zero_pad_sides(op, dims(op))),
        saves=(),
    )
)


class PixelShuffle(Fields):
    primary: ClassVar = "factor"
    kind: Literal["pixel_shuffle", "pixel_unshuffle"]
    factor: PosInt


def _two_spatial(op, shape):
    n = spatial(op, shape)
    if n != 2:
        raise ShapeError(
            f"{op.kind} needs (channels, H, W), as in PyTorch; the input has {n} spatial dim{'s' if n > 1 else ''}",
            RANK,
        )


def _pixel_shuffle_shape(op, shape):
    _two_spatial(op, shape)
    f, channels = op.args["factor"], shape[0]
    out = (channels // (f * f), *(size * f for size in shape[1:]))
    if channels % (f * f):
        raise ShapeError(
            f"the {channels} input channels are not divisible by factor^2 = {f}^2 = {f * f}; out = in / factor^2",
            CHANNEL_MISMATCH,
            (out, 0) if out[0] >= 1 else None,
        )
    return out, 0


def _pixel_unshuffle_shape(op, shape):
    _two_spatial(op, shape)
    f = op.args["factor"]
    out = (shape[0] * f * f, *(size // f for size in shape[1:]))
    for dim, size in enumerate(shape[1:]):
        if size % f:
            raise ShapeError(
                f"input {SPATIAL_NAMES[2][dim]} = {size} is not divisible by factor {f}; out = in / factor",
                BAD_ARG,
                (out, 0) if min(out[1:]) >= 1 else None,
            )
    return out, 0


register(
    LayerKind(
        "pixel_shuffle",
        "(C*f*f, H, W) -> (C, H*f, W*f): channels into space, factor f (sub-pixel upsampling)",
        PixelShuffle,
        _pixel_shuffle_shape,
        lambda op: call("nn.PixelShuffle", op.args["factor"]),
        # one output position reads one input position: a transposed window of stride f, one tap per output
        window=lambda op: (Window(op.args["factor"], op.args["factor"], transposed=True),) * 2,
        saves=(),
    )
)
register(
    LayerKind(
        "pixel_unshuffle",
        "(C, H, W) -> (C*f*f, H/f, W/f): space into channels, factor f; H and W must divide by f",
        PixelShuffle,
        _pixel_unshuffle_shape,
        lambda op: call("nn.PixelUnshuffle", op.args["factor"]),
        # the channels of one output position read an f x f patch: a window of f, stride f, sizes multiples of f
        window=lambda op: (Window(op.args["factor"], op.args["factor"], exact=True),) * 2,
        saves=(),
    )
)


class ChannelShuffle(Fields):
    primary: ClassVar = "groups"
    kind: Literal["channel_shuffle"]
    groups: PosInt


def _channel_shuffle_shape(op, shape):
    spatial(op, shape)
    groups, channels = op.args["groups"], shape[0]
    if channels % groups:
        raise ShapeError(f"groups={groups} does not divide the {channels} input channels", CHANNEL_MISMATCH, (shape, 0))
    return shape, 0


register(
    LayerKind(
        "channel_shuffle",
        "interleaves the channels of `groups` groups (ShuffleNet): (g, C/g) -> (C/g, g)",
        ChannelShuffle,
        _channel_shuffle_shape,
        lambda op: call("nn.ChannelShuffle", op.args["groups"]),
        saves=(),
    )
)


class Chunk(Fields):
    kind: Literal["chunk"]
    parts: PosInt
    index: Int

    @after
    def _index_in_range(self):
        if not 0 <= self.index < self.parts:
            raise PydanticCustomError(
                "bad_value",
                "index {i} is not one of the {p} parts (0 to {last})",
                {"i": self.index, "p": self.parts, "last": self.parts - 1},
            )
        return self


def _chunk_shape(op, shape):
    parts, channels = op.args["parts"], shape[0]
    if channels % parts:
        raise ShapeError(f"{parts} parts do not divide the {channels} input channels", CHANNEL_MISMATCH)
    return (channels // parts, *shape[1:]), 0


def _chunk_module():
    from .torch_modules import Chunk as module

    return module


register(
    LayerKind(
        "chunk",
        "one of `parts` equal slices of the channels, by index (ShuffleNet's x.chunk(2, dim=1)); a view",
        Chunk,
        _chunk_shape,
        lambda op: call("Chunk", op.args["parts"], op.args["index"]),
        saves=("view",),
        module=_chunk_module,
        template="chunk.py.jinja",
        channels=(),
    )
)


# ---------------------------------------------------------------- the rest


class Dropout(Fields):
    primary: ClassVar = "p"
    kind: Literal["dropout"]
    p: Probability = 0.5
    channels: Bool = False  # zero whole channels (Dropout1d/2d/3d by the input's rank), not elements


def _dropout_shape(op, shape):
    if op.args["channels"] and len(shape) < 2:
        raise ShapeError(
            "channel dropout (channels: true) needs (channels, 1 to 3 spatial dims), not a flat input; "
            "without channels it zeroes features",
            RANK,
            (shape, 0),
        )
    return shape, 0


register(
    LayerKind(
        "dropout",
        "zeroes each element (or, with channels, each channel) with probability p while training",
        Dropout,
        _dropout_shape,
        lambda op: call(f"nn.Dropout{dims(op)}d" if op.args["channels"] else "nn.Dropout", op.args["p"]),
        # an element mask; a channel dropout keeps one factor per channel, next to nothing
        saves=lambda op: () if op.args["channels"] else ("mask",),
        keeps_shape=True,
    )
)


class StochasticDepth(Fields):
    primary: ClassVar = "p"
    kind: Literal["stochastic_depth"]
    p: Probability
    mode: Literal["row", "batch"] = "row"


def _stochastic_depth_module():
    from .torch_modules import StochasticDepth as module

    return module


register(
    LayerKind(
        "stochastic_depth",
        "zeroes the whole input of a sample (row) or of the batch with probability p while training, "
        "scaling the rest by 1 / (1 - p) (torchvision.ops.StochasticDepth)",
        StochasticDepth,
        same_shape,
        lambda op: call("StochasticDepth", op.args["p"], mode=op.args["mode"], defaults={"mode": "row"}),
        # its backward keeps only the noise, one factor per sample (row) or one in all (batch): next
        # to nothing, as for a channel dropout
        saves=(),
        module=_stochastic_depth_module,
        template="stochastic_depth.py.jinja",
        keeps_shape=True,
    )
)


class Permute(Fields):
    primary: ClassVar = "dims"
    kind: Literal["permute"]
    dims: Permutation


def _permute_shape(op, shape):
    order = op.args["dims"]
    if len(order) != len(shape) + 1:
        raise ShapeError(
            f"dims {list(order)} order {len(order)} dims, but the batched input (B, {', '.join(map(str, shape))}) "
            f"has {len(shape) + 1}",
            RANK,
        )
    return tuple(shape[d - 1] for d in order[1:]), 0


def _permute_module():
    from .torch_modules import Permute as module

    return module


register(
    LayerKind(
        "permute",
        "reorders the dims of the batched tensor, the batch first (torchvision's Permute: ConvNeXt's "
        "channels-last [0, 2, 3, 1] and back [0, 3, 1, 2]); a view",
        Permute,
        _permute_shape,
        lambda op: call("Permute", list(op.args["dims"])),
        saves=("view",),
        module=_permute_module,
        template="permute.py.jinja",
    )
)


def _flatten_shape(op, shape):
    return (math.prod(shape),), 0


register(
    LayerKind(
        "flatten",
        "(C, H, W) -> (C*H*W,)",
        None,
        _flatten_shape,
        lambda op: Call("nn.Flatten"),
        functional="torch.flatten({x}, 1)",
        window=lambda op: (Window(whole=True),) * (len(op.in_shape) - 1),
        saves=("view",),
    )
)
STANDIN = "identity"  # the kind a wrong layer stands in as, its output unknown, so that the rest is still checked
register(
    LayerKind(STANDIN, "passes its input through", None, same_shape, lambda op: Call("nn.Identity"), saves=("view",))
)


class Linear(Fields):
    primary: ClassVar = "out"
    kind: Literal["linear"]
    out: PosInt
    bias: Bool = True
    last_dim: Bool = False  # over the last dim at every position, as after a permute to channels-last


def _linear_shape(op, shape):
    if len(shape) != 1 and not op.args["last_dim"]:
        raise ShapeError(
            f"linear needs a flat (B, features) input; put a flatten before it (it would give "
            f"{math.prod(shape)} features), or set last_dim: true to apply it over the last dim",
            NEEDS_FLATTEN,
        )
    features, out = shape[-1], op.args["out"]
    return (*shape[:-1], out), features * out + (out if op.args["bias"] else 0)


register(
    LayerKind(
        "linear",
        "fully connected layer; needs a flat input",
        Linear,
        _linear_shape,
        lambda op: call("nn.Linear", op.in_shape[-1], op.args["out"], bias=op.args["bias"], defaults=dict(bias=True)),
        # output elements x (in_features + 1 with bias): its parameters at every position. torchinfo
        # counts a linear on a (B, ..., features) input once per sample (tests/data: linear_3d)
        macs=lambda op: math.prod(op.out_shape[:-1]) * op.params,
        fresh=True,
        channels=(0, 1),
        classes_arg=1,
    )
)


class Softmax(Fields):
    primary: ClassVar = "dim"
    kind: Literal["softmax"]
    dim: Int = 1  # of the batched tensor: 1 is the channel or feature axis


def _softmax_shape(op, shape):
    dim, rank = op.args["dim"], len(shape) + 1
    if not -rank <= dim < rank:
        raise ShapeError(f"dim {dim} is out of range for a batched tensor of rank {rank}", BAD_ARG)
    return shape, 0


register(
    LayerKind(
        "softmax",
        "softmax over `dim` of the batched tensor",
        Softmax,
        _softmax_shape,
        lambda op: call("nn.Softmax", dim=op.args["dim"]),
        saves=("output",),
    )
)
