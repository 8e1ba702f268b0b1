"""A plugin's rules, called through one guard: a rule that raises, or returns what archspec cannot
use (None, text, a negative or fractional size), is a located error that names the kind, the rule
and the plugin's module, never a traceback or a silent "-180 B". archspec's own rules are called as
they are: a fault in one of them is archspec's bug, and its traceback says where."""

from __future__ import annotations

from collections.abc import Callable

from ..core.errors import PLUGIN, Diagnostic, SpecError, printable, show_value
from ..core.shape_rules import ShapeError, Window


class PluginFault(ShapeError, SpecError):
    """A plugin rule's failure: located at the layer by the shape stage (a ShapeError there, so the
    layers after it are still checked) and by every later stage (a SpecError)."""

    def __init__(self, message: str, op):
        ShapeError.__init__(self, message, PLUGIN)
        self.diagnostics = [Diagnostic(f"layer {op.path} ({op.kind}): {message}", PLUGIN, op.loc, op.notes)]


def _count(value) -> str | None:
    return None if type(value) is int and value >= 0 else "not a whole number >= 0"


def _sizes(value) -> str | None:
    if not isinstance(value, (tuple, list)) or not all(type(v) is int and v >= 1 for v in value):
        return "not a tuple of whole sizes >= 1"
    return None


def _shape(value) -> str | None:
    if not (isinstance(value, tuple) and len(value) == 2):
        return "not (output shape, parameter count)"
    if not isinstance(value[0], tuple) or _sizes(value[0]):
        return "its output shape is not a tuple of whole sizes >= 1"
    if _count(value[1]):
        return f"its parameter count is {_count(value[1])}"
    return None


def _stride(value) -> str | None:
    return None if type(value) is int and value >= 1 else _sizes(value)


def _windows(value) -> str | None:
    ok = isinstance(value, (tuple, list)) and all(isinstance(w, Window) for w in value)
    return None if ok else "not a tuple of archspec.shapes.Window"


def _buffers(value) -> str | None:
    ok = isinstance(value, (tuple, list)) and all(
        isinstance(b, tuple) and len(b) == 2 and type(b[0]) is int and b[0] >= 0 and b[1] in ("float", "int64")
        for b in value
    )
    return None if ok else 'not a tuple of (element count, "float" or "int64")'


def _saves(value) -> str | None:
    known = {"input", "output", "indices", "mask", "view"}
    ok = isinstance(value, tuple) and all(isinstance(v, str) and v in known for v in value)
    return None if ok else f"not a tuple of {', '.join(sorted(known))}"


CHECKS: dict[str, Callable] = {  # and "build", a registry.Call, which the registry checks itself
    "shape": _shape,
    "stride": _stride,
    "macs": _count,
    "window": _windows,
    "buffers": _buffers,
    "saves": _saves,
}


def guarded(kind: str, rule: str, func: Callable, check: Callable) -> Callable:
    """`func`, a plugin's `rule` of `kind`, called through the guard, its result judged by `check`
    (a reason, or None); archspec's own rule as it is."""
    module = getattr(func, "__module__", None) or "?"
    if module == "archspec" or module.startswith("archspec."):
        return func
    where = f"the {rule} rule of kind {kind} (plugin {printable(module, 80)})"

    def call(op, *args):
        try:
            result = func(op, *args)
        except ShapeError:
            raise  # a located refusal, as the rule meant
        except Exception as exc:
            why = printable(f"{type(exc).__name__}: {exc}", 200)
            raise PluginFault(f"{where} raised {why}", op) from None
        problem = check(result)
        if problem:
            raise PluginFault(f"{where} returned {show_value(result, 60)}: {problem}", op)
        return result

    return call
