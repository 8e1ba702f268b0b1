"""Which weights survive a change: two state_dicts compared key by key (`archspec diff`, partial loads).

archspec's state_dict keys are the layers' names, not their positions, so inserting or removing a
layer moves no other key: a tensor transfers exactly when the new model has its key, with its shape
and a compatible dtype. The manifests come from a model built on torch's meta device, which
allocates nothing, so even a spec of 10^12 parameters is compared in a moment and the keys, shapes
and dtypes are torch's own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from ..core.errors import LIMIT, Diagnostic, SpecError, printable
from ..core.ir import Op, walk

SHOWN = 20  # keys listed per section of the text report before "and N more"


class Tensor(NamedTuple):
    """One state_dict entry."""

    key: str
    shape: tuple[int, ...]
    dtype: str  # "float32", "int64"
    parameter: bool  # False: a buffer (running statistics, num_batches_tracked)

    @property
    def numel(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count


class Changed(NamedTuple):
    """A key both sides have, with a different shape or an incompatible dtype."""

    old: Tensor
    new: Tensor


class Diff(NamedTuple):
    """`old` -> `new`, key by key: kept (same shape, compatible dtype), changed, removed, added."""

    kept: tuple[Tensor, ...]  # as `new` has them
    changed: tuple[Changed, ...]
    removed: tuple[Tensor, ...]
    added: tuple[Tensor, ...]
    old_params: int
    new_params: int

    @property
    def transferred_params(self) -> int:
        return sum(t.numel for t in self.kept if t.parameter)

    @property
    def new_tensors(self) -> int:
        return len(self.kept) + len(self.changed) + len(self.added)

    def summary(self) -> str:
        """One line: how much of the new model the old weights fill."""
        share = self.transferred_params / self.new_params if self.new_params else 1.0
        return (
            f"transferred {len(self.kept)}/{self.new_tensors} tensors, "
            f"{self.transferred_params:,}/{self.new_params:,} parameters ({share:.2%})"
        )


def compatible(old: str, new: str) -> bool:
    """Whether a tensor of dtype `old` loads into one of dtype `new` without changing what it means:
    floating point into floating point (a float16 checkpoint into a float32 model), else equal."""
    floating = ("float16", "bfloat16", "float32", "float64")
    return old == new or (old in floating and new in floating)


def compare(old: Iterable[Tensor], new: Iterable[Tensor]) -> Diff:
    old, new = list(old), list(new)
    before = {t.key: t for t in old}
    after = {t.key for t in new}
    kept, changed, added = [], [], []
    for tensor in new:
        previous = before.get(tensor.key)
        if previous is None:
            added.append(tensor)
        elif previous.shape == tensor.shape and compatible(previous.dtype, tensor.dtype):
            kept.append(tensor)
        else:
            changed.append(Changed(previous, tensor))
    removed = [t for t in old if t.key not in after]
    return Diff(
        tuple(kept),
        tuple(changed),
        tuple(removed),
        tuple(added),
        sum(t.numel for t in old if t.parameter),
        sum(t.numel for t in new if t.parameter),
    )


# ---------------------------------------------------------------- manifests (these import torch)


def manifest(model) -> list[Tensor]:
    """The state_dict entries of the analyzed `model` (ir.Model), in order, built without memory."""
    import torch

    from .live import build_model

    try:
        with torch.device("meta"):
            module = build_model(model)
    except (TypeError, RuntimeError, OverflowError, ValueError) as exc:  # a size past what torch holds (int64)
        largest = max((n for n in walk(model.body) if isinstance(n, Op)), key=lambda n: n.params, default=model.body)
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        message = f"torch cannot make the tensors of {model.name}, even on its meta device: {reason}"
        raise SpecError([Diagnostic(message, LIMIT, largest.loc, largest.notes)]) from None
    return module_manifest(module)


def module_manifest(module) -> list[Tensor]:
    parameters = {name for name, _ in module.named_parameters()}
    return [_entry(key, tensor, key in parameters) for key, tensor in module.state_dict().items()]


def state_manifest(state: dict, parameters: set[str] = frozenset()) -> list[Tensor]:
    """A state_dict read from a file; which keys are parameters is the model's to say."""
    return [_entry(key, tensor, key in parameters) for key, tensor in state.items()]


def _entry(key: str, tensor, parameter: bool) -> Tensor:
    return Tensor(key, tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."), parameter)


def load_partially(module, state: dict) -> Diff:
    """Copy into `module` every tensor of `state` that fits by key, shape and dtype; the rest of the
    module keeps its initialisation. Returns what was transferred and what was not."""
    import torch

    own = module_manifest(module)
    parameters = {t.key for t in own if t.parameter}
    found = compare(state_manifest(state, parameters), own)
    fitting = {t.key: state[t.key] for t in found.kept}
    with torch.no_grad():
        module.load_state_dict(fitting, strict=False)
    return found


# ---------------------------------------------------------------- reports


def text(diff: Diff, old_label: str, new_label: str, show_all: bool = False) -> str:
    lines = [f"{printable(old_label)} -> {printable(new_label)}"]
    sections = (
        ("kept, same shape", [(t.key, _shape(t)) for t in diff.kept], False),
        ("kept, new shape", [(c.new.key, f"{_shape(c.old)} -> {_shape(c.new)}") for c in diff.changed], True),
        ("removed", [(t.key, _shape(t)) for t in diff.removed], True),
        ("added", [(t.key, _shape(t)) for t in diff.added], True),
    )
    for title, rows, listed in sections:
        lines.append(f"{title}: {len(rows)}")
        shown = [(printable(key, 160), what) for key, what in (rows if show_all else rows[:SHOWN])]
        if listed or show_all:
            width = max((len(key) for key, _ in shown), default=0)
            lines += [f"  {key:<{width}}  {what}" for key, what in shown]
            if len(shown) < len(rows):
                lines.append(f"  and {len(rows) - len(shown)} more (--all lists every key)")
    change = diff.new_params - diff.old_params
    lines.append(f"parameters: {diff.old_params:,} -> {diff.new_params:,} ({change:+,})")
    lines.append(diff.summary())
    return "\n".join(lines)


def as_json(diff: Diff, old: dict, new: dict) -> dict:
    """The diff as one document (`format: archspec-diff`, version 1; see docs/diff.md)."""

    def entry(t: Tensor) -> dict:
        return {"key": t.key, "shape": list(t.shape), "dtype": t.dtype, "parameter": t.parameter}

    return {
        "format": "archspec-diff",
        "version": 1,
        "old": old,
        "new": new,
        "kept": [entry(t) for t in diff.kept],
        "changed": [{"key": c.new.key, "old": entry(c.old), "new": entry(c.new)} for c in diff.changed],
        "removed": [entry(t) for t in diff.removed],
        "added": [entry(t) for t in diff.added],
        "parameters": {"old": diff.old_params, "new": diff.new_params, "transferred": diff.transferred_params},
        "tensors": {"new": diff.new_tensors, "transferred": len(diff.kept)},
    }


def _shape(t: Tensor) -> str:
    shape = "(" + ", ".join(map(str, t.shape)) + ("," if len(t.shape) == 1 else "") + ")"
    return shape if t.dtype == "float32" else f"{shape} {t.dtype}"
