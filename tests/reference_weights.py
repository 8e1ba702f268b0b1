"""Deterministic weights from arithmetic alone (no RNG), so two libraries can be given the same ones.

Used by tests/data/make_torchvision_reference.py (run where torchvision is installed) to record
torchvision's outputs, and by tests/test_zoo.py to check archspec's modules reproduce them.
"""

from __future__ import annotations

import math

import torch


# Normalisation scales per model, where unit scales would leave a layer untested: MobileNet's ReLU6
# never sees a value over 6 at scale 1, so ReLU would pass for it. At 4, pre-activations spread to
# about +-4 standard deviations of 1 and a good share of them is clipped. MobileNetV3's gains keep
# its hard-swish inputs partly inside (-3, 3) and its squeeze-excitation gates unsaturated, so
# swapping hardswish for ReLU or hardsigmoid for sigmoid changes the output by 5% to 500%.
# EfficientNet: where unit scales leave squeeze-excitation nearly without effect (b2, b5, b7) or
# the output in the hundreds (b4); V2-S's output is in the tens at unit scale.
GAINS = {
    "mobilenet_v2": 4.0,
    "mobilenet_v3_large": 1.2,
    "mobilenet_v3_small": 2.0,
    "efficientnet_b2": 1.5,
    "efficientnet_b4": 0.75,
    "efficientnet_b5": 1.5,
    "efficientnet_b7": 1.5,
    "efficientnet_v2_s": 0.75,
}


def fill(state_dict: dict[str, torch.Tensor], gain: float = 1.0) -> dict[str, torch.Tensor]:
    """The same keys with deterministic values that keep activations in a sensible range; `gain`
    scales every normalisation weight (see GAINS)."""
    filled = {}
    for index, (key, tensor) in enumerate(state_dict.items()):
        if not tensor.is_floating_point():
            filled[key] = tensor.clone()
            continue
        wave = torch.sin(torch.arange(tensor.numel(), dtype=torch.float64) * 0.618 + index).reshape(tensor.shape)
        if key.endswith("running_var"):
            value = 1.0 + 0.25 * wave.abs()
        elif key.endswith("running_mean") or key.endswith("bias"):
            value = 0.05 * wave
        elif tensor.dim() == 1:  # batchnorm weight
            value = gain * (1.0 + 0.1 * wave)
        else:  # conv or linear weight: unit-variance-ish outputs
            fan_in = tensor[0].numel()
            value = wave * math.sqrt(3.0 / fan_in)
        filled[key] = value.to(tensor.dtype)
    return filled


def reference_input(shape: tuple[int, ...]) -> torch.Tensor:
    numel = math.prod(shape)
    return torch.cos(torch.arange(numel, dtype=torch.float64) * 0.01).reshape(1, *shape).float()
