"""The rules every shape rule shares: the sliding-window formula, shape errors, per-dim fields.

One formula maps an input size to an output size for every conv, pooling, padding and resizing
kind (`Window.out`); shapes, receptive fields and accepted input sizes all read it. Imports
nothing of archspec.
"""

from __future__ import annotations

from typing import NamedTuple

from .errors import CHANNEL_MISMATCH, OUTPUT_SIZE, RANK, Code
from .ir import Op, Shape

SPATIAL_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}
CONV_FORMULA = "floor((in + 2p - d(k-1) - 1)/s) + 1"
TRANSPOSED_FORMULA = "(in-1)s - 2p + d(k-1) + output_padding + 1"


class ShapeError(Exception):
    """A layer that cannot take its input. `result`, when given, is the (output shape, params) it
    would still have (a `groups` that does not divide): the layers after it are checked too."""

    def __init__(self, message: str, code: Code, result: tuple | None = None):
        super().__init__(message)
        self.message, self.code, self.result = message, code, result


def fmt_shape(shape: Shape | None) -> str:
    return "?" if shape is None else "(" + ", ".join(["B", *map(str, shape)]) + ")"


class Window(NamedTuple):
    """How a layer maps positions along one spatial dim, for receptive fields and valid input sizes.

    A sliding window (conv, pooling): out = floor((in + pad_total - extent) / stride) + 1, rounded up
    with `ceil` (PyTorch's ceil_mode), where extent = dilation * (kernel - 1) + 1 and `pad` is the
    padding before the first position. `transposed`: out = (in - 1) * stride - pad_total + extent
    + output_padding, stride being the upsampling factor. `scale`: out = floor(in * scale) with an
    interpolation `extent` (1 nearest, 2 linear, 4 cubic). `size`: out = size whatever the input
    (adaptive pooling, resizing to a size). `whole`: after it one output sees every input position
    (a global pool, with size 1; a flatten, with no size: its features count on the input's size).
    `exact`: the input size must be a multiple of the stride (pixel_unshuffle); `out` is 0 for any other.
    """

    extent: int = 1
    stride: int = 1
    pad: int = 0
    pad_total: int = 0
    ceil: bool = False
    transposed: bool = False
    output_padding: int = 0
    dilation: int = 1  # transposed: the kernel's positions are 0, dilation, ..., extent - 1
    scale: float | None = None
    size: int | None = None
    whole: bool = False
    exact: bool = False

    def out(self, size: int) -> int:
        """The output size for an input of `size`, as PyTorch computes it; 0 where none fits."""
        return max(self.sized(size)[0], 0)

    def sized(self, size: int) -> tuple[int, bool]:
        """(output size by the formula, below 1 where none fits; whether ceil mode dropped a last
        window that would start past the input). The shape rules show it as they compute it."""
        if self.size is not None:
            return self.size, False
        if self.scale is not None:
            return int(size * self.scale), False
        if self.transposed:
            return (size - 1) * self.stride - self.pad_total + self.extent + self.output_padding, False
        if self.exact and size % self.stride:
            return 0, False
        span = size + self.pad_total - self.extent  # may be negative: in ceil mode one window still fits
        out = (span + (self.stride - 1 if self.ceil else 0)) // self.stride + 1  # floor, as PyTorch's div_rtn
        dropped = self.ceil and (out - 1) * self.stride >= size + self.pad  # the last window starts past it
        return out - dropped, dropped


def spatial(node: Op, shape: Shape) -> int:
    """The number of spatial dims, after checking the input has 1 to 3 of them."""
    if not 2 <= len(shape) <= 4:
        raise ShapeError(f"{node.kind} needs (channels, 1 to 3 spatial dims), not a rank-{len(shape)} input", RANK)
    return len(shape) - 1


def dims(node: Op) -> int:
    """The spatial rank of a shaped layer: the 1/2/3 of Conv1d/2d/3d."""
    return len(node.in_shape) - 1


def per_dim(node: Op, field: str, n: int, value=None) -> tuple[int, ...]:
    """A size field (`value`, or the node's own) as one integer per spatial dim."""
    value = node.args[field] if value is None else value
    if isinstance(value, int):
        return (value,) * n
    if len(value) != n:
        raise ShapeError(f"{field} has {len(value)} values but the input has {n} spatial dims", RANK)
    return tuple(value)


def below_one(dim: int, n: int, formula: str, filled: str, value: int):
    name = SPATIAL_NAMES[n][dim]
    raise ShapeError(f"output {name} would be {value}: out = {formula} = {filled} = {value}", OUTPUT_SIZE)


def groups_divide(node: Op, channels_in: int, channels_out: int, result: tuple | None = None):
    """`groups` must divide both channel counts; `result` is what the layer gives regardless."""
    groups = node.args["groups"]
    if channels_in % groups or channels_out % groups:
        raise ShapeError(
            f"groups={groups} must divide both the input channels ({channels_in}) and the output channels "
            f"({channels_out})",
            CHANNEL_MISMATCH,
            result,
        )
