"""core.shape_rules.Window.out, the one sliding-window formula the shapes, costs and input sizes read, against torch."""

from __future__ import annotations

import itertools

import torch

from archspec.core.shape_rules import Window


def test_sliding_windows_give_torchs_output_size_or_none():
    """Max pooling over every small combination, ceil mode included: in ceil mode a window may
    still fit an input smaller than the kernel (SqueezeNet at 21 x 21 relies on it)."""
    for size, kernel, stride, pad, dilation, ceil in itertools.product(
        range(1, 9), range(1, 5), range(1, 4), range(0, 3), (1, 2), (False, True)
    ):
        if pad > kernel // 2:
            continue  # torch refuses padding over half the kernel (the shape stage reports it)
        extent = dilation * (kernel - 1) + 1
        window = Window(extent, stride, pad, 2 * pad, ceil, dilation=dilation)
        try:
            expected = torch.nn.functional.max_pool1d(
                torch.zeros(1, 1, size), kernel, stride, pad, dilation, ceil_mode=ceil
            ).shape[-1]
        except RuntimeError:
            expected = 0
        assert window.out(size) == expected, (size, kernel, stride, pad, dilation, ceil)
