"""Stage 4: infer every shape and parameter count statically, with PyTorch's own formulas.

`infer(model)` returns the same IR with `in_shape`, `out_shape` and `params` filled in, the
input channels/features of every layer in its args, and automatic residual shortcuts made
concrete. A layer whose input is unknown (an earlier error) is skipped, so each error is
reported once, at the layer that causes it, and all independent errors come out in one run.
"""

from __future__ import annotations

import math
from dataclasses import replace

from .errors import Diagnostic, SpecError, in_file_order
from .ir import Block, Model, Node, Op, Shape

SPATIAL_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}
CONV_FORMULA = "floor((in + 2p - d(k-1) - 1)/s) + 1"
TRANSPOSED_FORMULA = "(in-1)s - 2p + d(k-1) + output_padding + 1"


class ShapeError(Exception):
    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.message, self.code = message, code


def fmt_shape(shape: Shape | None) -> str:
    return "?" if shape is None else "(" + ", ".join(["B", *map(str, shape)]) + ")"


def infer(model: Model) -> Model:
    errors: list[Diagnostic] = []
    body = _infer(model.body, model.input_shape, errors)
    if errors:
        raise SpecError(in_file_order(errors))
    return replace(model, body=body)


def _infer(node: Node, shape: Shape | None, errors: list[Diagnostic]) -> Node:
    if shape is None:
        return node
    try:
        if isinstance(node, Op):
            rule = _RULES.get(node.kind)
            if rule is None:
                raise NotImplementedError(f"Unsupported node kind {node.kind!r}")
            out, params, args = rule(node, shape)
            return replace(node, in_shape=shape, out_shape=out, params=params, args={**node.args, **args})
        return _FLOWS[node.flow](node, shape, errors)
    except ShapeError as exc:
        message = f"{_describe(node)} on input {fmt_shape(shape)}: {exc.message}"
        errors.append(Diagnostic(message, exc.code, node.loc, node.notes))
        return replace(node, in_shape=shape)


def _describe(node: Node) -> str:
    return f"layer {node.path} ({node.kind})" if node.path else node.kind


# ---------------------------------------------------------------- blocks


def _sequential(block: Block, shape: Shape, errors) -> Block:
    children = []
    current: Shape | None = shape
    produced: dict[str, Node] = {}
    for child in block.children:
        if child.inputs:
            current = _merged_input(child, [_find(produced, name) for name in child.inputs], errors)
        child = _infer(child, current, errors)
        children.append(child)
        produced[child.name] = child
        current = child.out_shape
    return _done(block, shape, current, children)


def _find(produced: dict[str, Node], reference: str) -> Node:
    """The (shaped) layer a `from:` names: an earlier sibling, or a layer inside one."""
    head, *rest = reference.split(".")
    node = produced[head]
    for part in rest:
        node = next(child for child in node.children if child.name == part)
    return node


def _merged_input(child: Node, sources: list[Node], errors) -> Shape | None:
    """The shape `child` receives from its `from:` layers: one output, or several concatenated or added."""
    shapes = [source.out_shape for source in sources]
    if any(s is None for s in shapes):
        return None
    if len(shapes) == 1:
        return shapes[0]
    listed = ", ".join(f"{name} {fmt_shape(source.out_shape)}" for name, source in zip(child.inputs, sources))
    if child.merge == "add":
        if len(set(shapes)) == 1:
            return shapes[0]
        message, code = f"cannot add the outputs of {listed}: their shapes differ", "branch-mismatch"
    elif len({len(s) for s in shapes}) == 1 and len({s[1:] for s in shapes}) == 1 and len(shapes[0]) >= 2:
        return (sum(s[0] for s in shapes), *shapes[0][1:])
    else:
        message = f"cannot concatenate the outputs of {listed} on the channel axis: the sizes after the channel differ"
        code = "concat-mismatch"
    errors.append(Diagnostic(f"{_describe(child)}: {message}", code, child.loc, child.notes))
    return None


def _residual(block: Block, shape: Shape, errors) -> Block:
    body = _sequential(replace(block, flow="sequential"), shape, errors)
    out = body.out_shape
    shortcut, short_out = block.shortcut, shape
    if block.shortcut_mode == "explicit":
        shortcut = _infer(shortcut, shape, errors)
        short_out = shortcut.out_shape
    elif block.shortcut_mode == "auto" and out is not None and (out != shape or (block.stride or 1) != 1):
        shortcut = _infer(_projection(block, shape, out), shape, errors)
        short_out = shortcut.out_shape
    if out is not None and short_out is not None and out != short_out:
        raise ShapeError(
            f"cannot add the body's output {fmt_shape(out)} to the shortcut's {fmt_shape(short_out)}"
            + (" (the shortcut is identity)" if block.shortcut_mode == "identity" else ""),
            "branch-mismatch",
        )
    done = _done(block, shape, out if short_out is not None else None, body.children)
    return replace(done, shortcut=shortcut, params=done.params + (shortcut.params if shortcut else 0))


def _projection(block: Block, shape: Shape, out: Shape) -> Block:
    """The 1x1 conv + BN that maps the input onto the body's output shape."""
    if len(shape) < 2 or len(out) != len(shape):
        raise ShapeError(f"no 1x1 convolution maps the input onto the body's output {fmt_shape(out)}", "branch-mismatch")
    strides = []
    for dim, (size_in, size_out) in enumerate(zip(shape[1:], out[1:])):
        # Prefer the body's own stride (a ResNet block's), so both branches sample the same positions.
        body_stride = block.stride or math.prod(_stride_of(child, dim, len(shape) - 1) for child in block.children)
        candidates = (body_stride, *range(1, size_in + 1))
        stride = next((s for s in candidates if (size_in - 1) // s + 1 == size_out), None)
        if stride is None:
            raise ShapeError(
                f"no strided 1x1 convolution maps the input onto the body's output {fmt_shape(out)}; "
                f"give the shortcut explicitly",
                "branch-mismatch",
            )
        strides.append(stride)
    stride = strides[0] if len(set(strides)) == 1 else tuple(strides)
    path, loc = f"{block.path}.{block.shortcut_name}", block.loc
    conv = Op("conv", "0", f"{path}.0", loc, dict(out=out[0], kernel=1, stride=stride, padding=0, dilation=1,
                                                  groups=1, bias=False))  # fmt: skip
    norm = Op("batchnorm", "1", f"{path}.1", loc, dict(eps=1e-5, momentum=0.1, affine=True, track_running_stats=True))
    return Block("shortcut", block.shortcut_name, path, loc, "sequential", (conv, norm))


def _stride_of(node: Node, dim: int, n: int) -> int:
    if isinstance(node, Op) and node.kind in ("conv", "maxpool", "avgpool"):
        stride = node.args["stride"]
        return stride if isinstance(stride, int) else stride[dim] if len(stride) == n else 1
    return 1


def _dense(block: Block, shape: Shape, errors) -> Block:
    children = []
    current: Shape | None = shape
    for child in block.children:
        child = _infer(child, current, errors)
        children.append(child)
        out = child.out_shape
        if current is None or out is None:
            current = None
            continue
        if len(out) != len(current) or out[1:] != current[1:]:
            errors.append(Diagnostic(
                f"{_describe(child)}: cannot concatenate its output {fmt_shape(out)} with its input "
                f"{fmt_shape(current)} on the channel axis: the sizes after the channel differ",
                "concat-mismatch", child.loc, child.notes))  # fmt: skip
            current = None
            continue
        current = (current[0] + out[0], *current[1:])
    return _done(block, shape, current, children)


def _done(block: Block, shape: Shape, out: Shape | None, children) -> Block:
    params = sum(child.params for child in children)
    return replace(block, in_shape=shape, out_shape=out, children=tuple(children), params=params)


_FLOWS = {"sequential": _sequential, "residual": _residual, "dense": _dense}


# ---------------------------------------------------------------- per-dimension helpers


def _spatial(op: Op, shape: Shape, what: str = "spatial") -> int:
    """The number of spatial dims, after checking the input has 1 to 3 of them."""
    if not 2 <= len(shape) <= 4:
        raise ShapeError(f"{op.kind} needs (channels, 1 to 3 {what} dims), not a rank-{len(shape)} input", "rank")
    return len(shape) - 1


def _per_dim(op: Op, field: str, n: int) -> tuple[int, ...]:
    value = op.args[field]
    if isinstance(value, int):
        return (value,) * n
    if len(value) != n:
        raise ShapeError(f"{field} has {len(value)} values but the input has {n} spatial dims", "rank")
    return tuple(value)


def _as_arg(values: tuple[int, ...]):
    return values[0] if len(set(values)) == 1 else values


def _below_one(op: Op, dim: int, n: int, formula: str, filled: str, value: int):
    name = SPATIAL_NAMES[n][dim]
    raise ShapeError(f"output {name} would be {value}: out = {formula} = {filled} = {value}", "output-size")


def _groups_divide(op: Op, channels_in: int, channels_out: int):
    groups = op.args["groups"]
    if channels_in % groups or channels_out % groups:
        raise ShapeError(
            f"groups={groups} must divide both the input channels ({channels_in}) and the output channels "
            f"({channels_out})",
            "channel-mismatch",
        )


# ---------------------------------------------------------------- layer rules
# Each rule returns (output shape, parameter count, args to add) or raises ShapeError.


def _conv(op: Op, shape: Shape):
    n = _spatial(op, shape)
    channels = shape[0]
    from fractions import Fraction  # imported here: only transitions with a compression need it

    ratio = op.args.get("out_ratio")
    # Exact decimal arithmetic: 100 * 0.29 is 28.999... in floating point, but 29 channels are meant.
    out_channels = op.args["out"] if ratio is None else int(Fraction(repr(ratio)) * channels)
    if out_channels < 1:
        raise ShapeError(f"compression {op.args['out_ratio']} of {channels} channels leaves none", "channel-mismatch")
    _groups_divide(op, channels, out_channels)
    kernel, stride, dilation = (_per_dim(op, f, n) for f in ("kernel", "stride", "dilation"))
    padding = op.args["padding"]
    if padding == "same" and any(s != 1 for s in stride):
        raise ShapeError("padding='same' needs stride 1, as in PyTorch", "bad-arg")
    pads = (0,) * n if padding in ("same", "valid") else _per_dim(op, "padding", n)
    sizes = []
    for dim, (size, k, s, p, d) in enumerate(zip(shape[1:], kernel, stride, pads, dilation)):
        out = size if padding == "same" else (size + 2 * p - d * (k - 1) - 1) // s + 1
        if out < 1:
            _below_one(op, dim, n, CONV_FORMULA, f"floor(({size} + 2*{p} - {d}*({k}-1) - 1)/{s}) + 1", out)
        sizes.append(out)
    params = out_channels * (channels // op.args["groups"]) * math.prod(kernel) + (out_channels if op.args["bias"] else 0)
    return (out_channels, *sizes), params, {"in_channels": channels, "out": out_channels}


def _conv_transpose(op: Op, shape: Shape):
    n = _spatial(op, shape)
    channels, out_channels = shape[0], op.args["out"]
    _groups_divide(op, channels, out_channels)
    kernel, stride, padding, out_pad, dilation = (
        _per_dim(op, f, n) for f in ("kernel", "stride", "padding", "output_padding", "dilation")
    )
    sizes = []
    for dim, (size, k, s, p, op_, d) in enumerate(zip(shape[1:], kernel, stride, padding, out_pad, dilation)):
        if op_ >= max(s, d):
            raise ShapeError(f"output_padding ({op_}) must be smaller than stride ({s}) or dilation ({d})", "bad-arg")
        out = (size - 1) * s - 2 * p + d * (k - 1) + op_ + 1
        if out < 1:
            filled = f"({size}-1)*{s} - 2*{p} + {d}*({k}-1) + {op_} + 1"
            _below_one(op, dim, n, TRANSPOSED_FORMULA, filled, out)
        sizes.append(out)
    params = channels * (out_channels // op.args["groups"]) * math.prod(kernel) + (out_channels if op.args["bias"] else 0)
    return (out_channels, *sizes), params, {"in_channels": channels}


def _pool(op: Op, shape: Shape):
    n = _spatial(op, shape)
    kernel, stride, padding = (_per_dim(op, f, n) for f in ("kernel", "stride", "padding"))
    dilation = _per_dim(op, "dilation", n) if "dilation" in op.args else (1,) * n
    ceil = op.args["ceil_mode"]
    sizes = []
    for dim, (size, k, s, p, d) in enumerate(zip(shape[1:], kernel, stride, padding, dilation)):
        if p > k // 2:
            raise ShapeError(f"padding {p} is more than half the kernel ({k}); PyTorch allows at most {k // 2}", "bad-arg")
        if op.kind == "avgpool" and n == 3 and size < k:  # only avg_pool3d checks the unpadded size
            raise ShapeError(f"input {SPATIAL_NAMES[n][dim]} = {size} is smaller than the kernel ({k}); "
                             f"PyTorch's 3-d average pooling needs at least the kernel", "bad-arg")  # fmt: skip
        out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)) // s + 1
        formula, filled = CONV_FORMULA, f"floor(({size} + 2*{p} - {d}*({k}-1) - 1)/{s}) + 1"
        if op.kind == "avgpool":
            formula, filled = "floor((in + 2p - k)/s) + 1", f"floor(({size} + 2*{p} - {k})/{s}) + 1"
        if ceil:
            # PyTorch's ceil_mode: round up, but the last window must start inside the input or left padding.
            formula = formula.replace("floor", "ceil") + ", minus 1 if the last window starts past in + p"
            filled = filled.replace("floor", "ceil")
            if (out - 1) * s >= size + p:
                out -= 1
                filled += " - 1"
        if out < 1:
            _below_one(op, dim, n, formula, filled, out)
        sizes.append(out)
    return (shape[0], *sizes), 0, {}


def _adaptive_pool(op: Op, shape: Shape):
    n = _spatial(op, shape)
    return (shape[0], *_per_dim(op, "size", n)), 0, {}


def _global_pool(op: Op, shape: Shape):
    n = _spatial(op, shape)
    return (shape[0], *(1,) * n), 0, {}


_UPSAMPLE_RANKS = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}


def _upsample(op: Op, shape: Shape):
    n = _spatial(op, shape)
    mode = op.args["mode"]
    if _UPSAMPLE_RANKS.get(mode, n) != n:
        raise ShapeError(f"mode {mode!r} needs {_UPSAMPLE_RANKS[mode]} spatial dims, the input has {n}", "rank")
    if op.args["size"] is not None:
        return (shape[0], *_per_dim(op, "size", n)), 0, {}
    scale = op.args["scale"]
    scales = (scale,) * n if isinstance(scale, (int, float)) else tuple(scale)
    if len(scales) != n:
        raise ShapeError(f"scale has {len(scales)} values but the input has {n} spatial dims", "rank")
    sizes = []
    for dim, (size, factor) in enumerate(zip(shape[1:], scales)):
        out = math.floor(size * float(factor))
        if out < 1:
            _below_one(op, dim, n, "floor(in * scale)", f"floor({size} * {factor:g})", out)
        sizes.append(out)
    return (shape[0], *sizes), 0, {}


def _batchnorm(op: Op, shape: Shape):
    return shape, 2 * shape[0] if op.args["affine"] else 0, {"num_features": shape[0]}


def _layernorm(op: Op, shape: Shape):
    dims = op.args["dims"] or len(shape)
    if dims > len(shape):
        raise ShapeError(f"cannot normalise the last {dims} dims of a rank-{len(shape)} input", "rank")
    normalized = tuple(shape[-dims:])
    size = math.prod(normalized)
    params = (size + (size if op.args["bias"] else 0)) if op.args["affine"] else 0
    return shape, params, {"normalized_shape": normalized}


def _groupnorm(op: Op, shape: Shape):
    groups, channels = op.args["groups"], shape[0]
    if channels % groups:
        raise ShapeError(f"groups={groups} does not divide the {channels} input channels", "channel-mismatch")
    return shape, 2 * channels if op.args["affine"] else 0, {"num_channels": channels}


def _same(op: Op, shape: Shape):
    return shape, 0, {}


def _softmax(op: Op, shape: Shape):
    dim, rank = op.args["dim"], len(shape) + 1
    if not -rank <= dim < rank:
        raise ShapeError(f"dim {dim} is out of range for a batched tensor of rank {rank}", "bad-arg")
    return shape, 0, {}


def _flatten(op: Op, shape: Shape):
    return (math.prod(shape),), 0, {}


def _linear(op: Op, shape: Shape):
    if len(shape) != 1:
        raise ShapeError(
            f"linear needs a flat (B, features) input; put a flatten before it (it would give "
            f"{math.prod(shape)} features)",
            "needs-flatten",
        )
    features, out = shape[0], op.args["out"]
    return (out,), features * out + (out if op.args["bias"] else 0), {"in_features": features}


def _normalize(op: Op, shape: Shape):
    if len(op.args["mean"]) != shape[0]:
        raise ShapeError(f"mean and std have {len(op.args['mean'])} values but the input has {shape[0]} channels",
                         "channel-mismatch")  # fmt: skip
    return shape, 0, {}


_RULES = {
    "conv": _conv,
    "conv_transpose": _conv_transpose,
    "maxpool": _pool,
    "avgpool": _pool,
    "adaptive_avgpool": _adaptive_pool,
    "adaptive_maxpool": _adaptive_pool,
    "global_avgpool": _global_pool,
    "upsample": _upsample,
    "batchnorm": _batchnorm,
    "layernorm": _layernorm,
    "groupnorm": _groupnorm,
    "relu": _same,
    "leaky_relu": _same,
    "sigmoid": _same,
    "tanh": _same,
    "gelu": _same,
    "silu": _same,
    "identity": _same,
    "dropout": _same,
    "softmax": _softmax,
    "flatten": _flatten,
    "linear": _linear,
    "normalize": _normalize,
}
