"""The torch modules of the kinds torch.nn has no class for: imported only where a model is built
(the live builder, and each kind's `module` rule), never on `check`'s path."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


class KeepBuffers:
    """The recompute context of a checkpointed bottleneck: its modules' buffers (the norms' running
    statistics and num_batches_tracked) come out as the forward left them. The forward updated them
    already; the recompute updates copies, thrown away. (torchvision's memory_efficient updates them
    twice per step.)"""

    def __init__(self, *modules: nn.Module):
        self.modules = modules

    def __enter__(self):
        self.kept = [(m, name, buffer) for m in self.modules for name, buffer in m.named_buffers(recurse=False)]
        for module, name, buffer in self.kept:
            setattr(module, name, buffer.clone())

    def __exit__(self, *exc):
        for module, name, buffer in self.kept:
            setattr(module, name, buffer)


class DenseLayer(nn.Sequential):
    """One layer of a dense block: given the concatenation of the block input and every earlier
    output, a plain sequence. Given the list of them instead (the block's memory-efficient path),
    its first three modules (norm, relu, conv: torchvision's `bn_function`) and the concatenation are
    checkpointed (torch.utils.checkpoint, non-reentrant): recomputed in backward instead of kept, as
    torchvision's _DenseLayer(memory_efficient=True), and the rest follow.
    """

    BOTTLENECK = 3  # norm, relu, conv (norm1 relu1 conv1 with bn_size)

    def __init__(self, layers: OrderedDict, memory_efficient: bool = False):
        super().__init__(layers)
        self.memory_efficient = memory_efficient

    def bn_function(self, *inputs: torch.Tensor) -> torch.Tensor:
        x = torch.cat(inputs, 1)
        for module in list(self._modules.values())[: self.BOTTLENECK]:
            x = module(x)
        return x

    def recompute_context(self):
        """checkpoint's context_fn: nothing around the forward, KeepBuffers around the recompute."""
        return KeepBuffers(), KeepBuffers(*list(self._modules.values())[: self.BOTTLENECK])

    def forward(self, x):
        if isinstance(x, torch.Tensor):
            return super().forward(x)
        x = checkpoint(self.bn_function, *x, use_reentrant=False, context_fn=self.recompute_context)
        for module in list(self._modules.values())[self.BOTTLENECK :]:
            x = module(x)
        return x


class DenseBlock(nn.ModuleDict):
    """Each layer sees the concatenation of the block input and every earlier layer's output.

    A memory-efficient layer is handed the list instead, while any of it requires grad (training, or
    eval with gradients): it concatenates inside its checkpoint. No-grad runs take the plain path."""

    def forward(self, x):
        features = [x]
        for layer in self.values():
            if layer.memory_efficient and any(tensor.requires_grad for tensor in features):
                features.append(layer(features))
            else:
                features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


class FrozenBatchNorm(nn.Module):
    """Batch normalisation with fixed statistics and affine, as torchvision.ops.FrozenBatchNorm2d (the
    same state_dict keys and arithmetic) for any rank: its four tensors are buffers."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        for name, value in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
            self.register_buffer(name, torch.full((num_features,), value))

    def _load_from_state_dict(self, state_dict, prefix, *args):
        state_dict.pop(prefix + "num_batches_tracked", None)  # a BatchNorm's checkpoint loads as it is
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(self, x):
        shape = (1, -1) + (1,) * (x.dim() - 2)
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        bias = self.bias - self.running_mean * scale
        return x * scale.reshape(shape) + bias.reshape(shape)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class L2Norm(nn.Module):
    """Each position's channel vector divided by its L2 norm: F.normalize(x, dim=1)."""

    def __init__(self, eps: float = 1e-12):
        super().__init__()
        self.eps = eps

    def forward(self, x):
        return nn.functional.normalize(x, dim=1, eps=self.eps)


class Resize(nn.Module):
    """Resizes its input to the spatial size of a second tensor, read at run time, as torchvision's
    segmentation heads do: F.interpolate(x, size=like.shape[2:], mode=mode, align_corners=align_corners)."""

    def __init__(self, mode: str = "nearest", align_corners: bool | None = None):
        super().__init__()
        self.mode, self.align_corners = mode, align_corners

    def forward(self, x, like):
        return nn.functional.interpolate(x, size=like.shape[2:], mode=self.mode, align_corners=self.align_corners)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, align_corners={self.align_corners}"


class Chunk(nn.Module):
    """One of `parts` equal slices of the channels (dim 1), by index: a view, as x.chunk(parts, 1)[index]."""

    def __init__(self, parts: int, index: int):
        super().__init__()
        self.parts, self.index = parts, index

    def forward(self, x):
        return x.chunk(self.parts, 1)[self.index]


class Permute(nn.Module):
    """Reorders the dims of its input, as torchvision.ops.Permute: a view."""

    def __init__(self, dims: list[int]):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return torch.permute(x, self.dims)


class LayerNorm2d(nn.LayerNorm):
    """Layer normalisation over the channels at each position, as torchvision's ConvNeXt."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Normalize(nn.Module):
    """Per-channel (x - mean) / std, like torchvision's transforms.Normalize, as a layer."""

    def __init__(self, mean, std, rank: int):
        super().__init__()
        view = (len(mean),) + (1,) * (rank - 1)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(view))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(view))

    def forward(self, x):
        return (x - self.mean) / self.std


class StochasticDepth(nn.Module):
    """torchvision.ops.StochasticDepth: in training, zeroes the whole input of each sample ("row") or of
    the batch ("batch") with probability p and scales what survives by 1 / (1 - p); the identity in eval."""

    def __init__(self, p: float, mode: str = "row"):
        super().__init__()
        self.p, self.mode = p, mode

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        survival_rate = 1.0 - self.p
        size = [x.shape[0]] + [1] * (x.ndim - 1) if self.mode == "row" else [1] * x.ndim
        noise = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(survival_rate)
        if survival_rate > 0.0:
            noise.div_(survival_rate)
        return x * noise

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"
