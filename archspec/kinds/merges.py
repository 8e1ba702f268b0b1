"""Merges: how the outputs of several `from:` layers combine into one input."""

from __future__ import annotations

import functools
import operator

from ..core.errors import BRANCH_MISMATCH, CONCAT_MISMATCH
from ..core.shape_rules import ShapeError, fmt_shape
from ..registry import Merge, register


def _listed(named: list) -> str:
    return ", ".join(f"{name} {fmt_shape(shape)}" for name, shape in named)


def _concat(named: list):
    """Along dim 1: channels, or a flat tensor's features."""
    shapes = [shape for _, shape in named]
    if len({len(s) for s in shapes}) == 1 and len({s[1:] for s in shapes}) == 1:
        return (sum(s[0] for s in shapes), *shapes[0][1:])
    if len({len(s) for s in shapes}) > 1:
        why = "their ranks differ"
    else:
        why = "the sizes after the channel differ"
    raise ShapeError(f"cannot concatenate the outputs of {_listed(named)} on the channel axis: {why}", CONCAT_MISMATCH)


def _add(named: list):
    if len({shape for _, shape in named}) == 1:
        return named[0][1]
    raise ShapeError(f"cannot add the outputs of {_listed(named)}: their shapes differ", BRANCH_MISMATCH)


def _broadcast(named: list):
    """PyTorch's broadcasting over per-sample shapes of one rank: each size equal, or 1."""
    shapes = [shape for _, shape in named]
    if len({len(s) for s in shapes}) == 1:
        out = []
        for sizes in zip(*shapes):
            wider = {size for size in sizes if size != 1}
            if len(wider) > 1:
                break
            out.append(wider.pop() if wider else 1)
        else:
            return tuple(out)
    raise ShapeError(
        f"cannot multiply the outputs of {_listed(named)}: their shapes do not broadcast (each size "
        f"must be equal or 1, in the same rank)",
        BRANCH_MISMATCH,
    )


DEFAULT = "concat"  # how several `from:` inputs combine where `merge:` says nothing
register(
    Merge(
        DEFAULT,
        "concatenate on the channel axis, or a flat tensor's features (the default for several inputs)",
        _concat,
        source=lambda names: f"torch.cat([{', '.join(names)}], 1)",
        live=lambda tensors, torch: torch.cat(tensors, 1),
        fresh=True,
    )
)
register(
    Merge(
        "add",
        "add elementwise; the shapes must be equal",
        _add,
        source=lambda names: " + ".join(names),
        live=lambda tensors, torch: functools.reduce(operator.add, tensors),
        fresh=True,
    )
)
register(
    Merge(
        "mul",
        "multiply elementwise, with broadcasting (a (C, 1, 1) gate scales a (C, H, W) tensor)",
        _broadcast,
        source=lambda names: " * ".join(names),
        live=lambda tensors, torch: functools.reduce(operator.mul, tensors),
        fresh=True,
        keeps_inputs=True,
        broadcasts=True,
    )
)
