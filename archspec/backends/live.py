"""Stage 5a: build a live torch.nn.Module from the shaped IR. The only module that imports torch."""

from __future__ import annotations

import functools
from collections import OrderedDict

import torch
from torch import nn

from .. import registry
from ..analyses.dataflow import Dataflow, is_plain
from ..analyses.fit import check_fits
from ..core.ir import INPUT, Block, Model, Node, Op
from ..kinds.torch_modules import DenseBlock, DenseLayer


def function(name: str | None):
    """The torch function a registry entry names ("torch.relu", "F.gelu"); None is the identity."""
    if name is None:
        return None
    namespace, _, attribute = name.partition(".")
    return getattr({"torch": torch, "F": nn.functional}[namespace], attribute)


def merge(name: str, tensors: list) -> torch.Tensor:
    return registry.merge(name).live(tensors, torch)


class Wiring:
    """Where each layer of a sequence takes its input from, when not from the layer before it.

    A layer with `exports` returns (output, *exported inner outputs); a sequence with exports of
    its own returns its output followed by those it hands out. A block that captures tensors of
    the sequences around it (`/backbone.16`) takes them after its input, in its `captures` order.
    """

    def __init__(self, block: Block, flow: Dataflow):
        sequence = flow.of(block)
        self.inputs = {child.name: (child.inputs, child.merge) for child in block.children if child.inputs}
        self.child_exports = {child.name: child.exports for child in block.children if child.exports}
        self.exports = block.exports
        self.captures = block.captures
        self.keep = sequence.kept
        self.passes = {name: handed for name, handed in sequence.passes.items() if name != block.shortcut_name}
        self.likes = {child.name: child.like for child in block.children if isinstance(child, Op) and child.like}
        self.shortcut = sequence.passes.get(block.shortcut_name, ()) if block.shortcut is not None else ()

    def start(self, x, captured: tuple) -> dict:
        """The tensors a sequence keeps before its first layer: its input, for `from: input`, and
        what it was handed."""
        saved = dict(zip(self.captures, captured))
        if INPUT in self.keep:
            saved[INPUT] = x
        return saved

    def run(self, layers, x, captured: tuple = ()):
        """Apply (name, module) pairs in order, feeding `from:` inputs and keeping what is needed later."""
        saved = self.start(x, captured)
        for name, layer in layers:
            if name in self.inputs:
                inputs, how = self.inputs[name]
                tensors = [saved[source] for source in inputs]
                x = tensors[0] if len(tensors) == 1 else merge(how, tensors)
            if name in self.passes:
                x = layer(x, *(saved[reference] for reference in self.passes[name]))
            elif name in self.likes:
                x = layer(x, saved[self.likes[name]])
            else:
                x = layer(x)
            if name in self.child_exports:
                x, *inner = x
                saved.update((f"{name}.{path}", tensor) for path, tensor in zip(self.child_exports[name], inner))
            if name in self.keep:
                saved[name] = x
        return (x, *(saved[path] for path in self.exports)) if self.exports else x

    def handed(self, captured: tuple) -> tuple:
        """What a residual's shortcut is handed, of what the block was."""
        saved = dict(zip(self.captures, captured))
        return tuple(saved[reference] for reference in self.shortcut)


def adopt(owner: nn.Module, layers: OrderedDict) -> tuple[str, ...]:
    """Register each layer on `owner` (a bare parameter as a parameter); their names, in order."""
    for name, layer in layers.items():
        if isinstance(layer, nn.Parameter):
            owner.register_parameter(name, layer)
        else:
            owner.add_module(name, layer)
    return tuple(layers)


def steps(owner: nn.Module, names: tuple[str, ...]):
    """(name, callable) of each layer of `owner` in order; a bare parameter multiplies its input.
    Looked up on every call, so a parameter replaced by load_state_dict(assign=True) or .to() is the one used."""
    for name in names:
        layer = getattr(owner, name)
        yield name, (functools.partial(_scale, layer) if isinstance(layer, nn.Parameter) else layer)


def _scale(parameter: nn.Parameter, x: torch.Tensor) -> torch.Tensor:
    """A bare parameter applied: a (C,) one viewed to broadcast over the spatial dims (SSD's scale_weight)."""
    if parameter.dim() == 1 and x.dim() > 2:
        return parameter.view(-1, *(1,) * (x.dim() - 2)) * x
    return torch.mul(parameter, x)


class Sequence(nn.Sequential):
    """nn.Sequential whose layers may take their input from earlier named layers (`from:`), or be
    bare parameters (layer_scale)."""

    def __init__(self, layers: OrderedDict, wiring: Wiring):
        super().__init__()
        self._order = adopt(self, layers)  # underscored: never collides with a layer name
        self._wiring = wiring

    def forward(self, x, *captured):
        return self._wiring.run(steps(self, self._order), x, captured)


class SpecModel(Sequence):
    """The compiled spec: its layers in order, with the per-sample shape it expects. With named
    outputs it returns them as an ordered dict, as torchvision's segmentation models and FPNs do."""

    def __init__(
        self, layers: OrderedDict, wiring: Wiring, input_shape: tuple[int, ...], name: str, outputs: tuple = ()
    ):
        super().__init__(layers, wiring)
        self.input_shape = input_shape
        self._spec_name = name
        self._outputs = outputs  # (name, reference): the body's exports, in that order
        self.weights_report = None  # compile_spec(weights=..., strict=False): what was transferred

    def forward(self, x):
        if not self._outputs:
            return super().forward(x)
        found = dict(zip(self._wiring.exports, super().forward(x)[1:]))
        return OrderedDict((name, found[reference]) for name, reference in self._outputs)


class Residual(nn.Module):
    """body(x) + shortcut(x), then an optional activation; body layers are direct children.

    `inplace_add`: the add writes onto the body's output (`out += identity`, as torchvision's ResNet
    blocks); `inplace_activation`: the activation overwrites the sum. archspec.inplace decides both.
    """

    def __init__(
        self,
        body: OrderedDict,
        wiring: Wiring,
        shortcut_name: str,
        shortcut: nn.Module | None,
        activation: str | None,
        inplace_add: bool = False,
        inplace_activation: bool = False,
        shortcut_first: bool = False,
    ):
        super().__init__()
        layers = [*body.items(), (shortcut_name, shortcut)] if shortcut is not None else [*body.items()]
        if shortcut_first and shortcut is not None:  # its keys first in the state_dict, as RegNet's proj before f
            layers = layers[-1:] + layers[:-1]
        adopt(self, OrderedDict(layers))
        # Underscored, so they never collide with layer names (which start with a letter).
        self._body = tuple(body)
        self._wiring = wiring
        self._shortcut = shortcut_name if shortcut is not None else None
        self._activation = function(registry.ACTIVATIONS[activation].function) if activation else None
        if inplace_activation and self._activation is not None:
            self._activation = functools.partial(function(registry.ACTIVATIONS[activation].inplace), inplace=True)
        self._inplace_add = inplace_add

    def forward(self, x, *captured):
        identity = x if self._shortcut is None else getattr(self, self._shortcut)(x, *self._wiring.handed(captured))
        x = self._wiring.run(steps(self, self._body), x, captured)
        if self._inplace_add:
            x += identity
        else:
            x = x + identity
        return self._activation(x) if self._activation is not None else x


def build_model(model: Model) -> SpecModel:
    check_fits(model)  # SpecError with the figures, before the allocator fails (or the OOM killer strikes)
    builder = _Builder(Dataflow(model.body))
    body = model.body
    return SpecModel(builder.children(body), builder.wiring(body), model.input_shape, model.name, model.outputs)


class _Builder:
    """Builds each node of the shaped IR into its module, by its flow."""

    def __init__(self, flow: Dataflow):
        self.flow = flow

    def build(self, node: Node) -> nn.Module:
        if isinstance(node, Op):
            return _op(node)
        return getattr(self, node.flow)(node)

    def children(self, block: Block) -> OrderedDict:
        return OrderedDict((child.name, self.build(child)) for child in block.children)

    def wiring(self, block: Block) -> Wiring:
        return Wiring(block, self.flow)

    def sequential(self, block: Block) -> nn.Module:
        if is_plain(block):
            return nn.Sequential(self.children(block))
        return Sequence(self.children(block), self.wiring(block))

    def residual(self, block: Block) -> nn.Module:
        shortcut = self.build(block.shortcut) if block.shortcut is not None else None
        return Residual(
            self.children(block),
            self.wiring(block),
            block.shortcut_name,
            shortcut,
            block.activation,
            block.inplace_add,
            block.inplace_activation,
            block.args.get("shortcut_first", False),
        )

    def dense(self, block: Block) -> nn.Module:
        memory_efficient = block.args.get("memory_efficient", False)
        return DenseBlock(
            OrderedDict((layer.name, DenseLayer(self.children(layer), memory_efficient)) for layer in block.children)
        )


# ---------------------------------------------------------------- layers


def _op(op: Op) -> nn.Module | nn.Parameter:
    kind = registry.layer_kind(op.kind)
    call = kind.build(op)
    if kind.parameter:
        return nn.Parameter(torch.full(*call.args))
    namespace, _, name = call.func.partition(".")
    factory = getattr(nn, name) if namespace == "nn" and name else kind.module()
    return factory(*call.args, **dict(call.kwargs))
