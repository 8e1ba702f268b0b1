"""Bounds on the work a spec or a weights file may cause, each checked where that work happens.

Specs and weights travel between people, so no input may hang the machine or exhaust its memory.
Every limit is generous enough for the torchvision zoo and a 100,000-layer spec; each can be
raised, from the command line (`--limit layers=1000000`) or the API (`analyze(spec,
limits=Limits(layers=1_000_000))`). docs/limits.md lists them.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


@dataclass(frozen=True)
class Limits:
    spec_bytes: int = 16 * MiB  # a spec file's size, checked before it is read
    yaml_nodes: int = 1_000_000  # YAML nodes once aliases are expanded
    depth: int = 100  # nesting: YAML collections, blocks within blocks, the extends: chain
    layers: int = 250_000  # layers once repeats, blocks and dense blocks are expanded (a million take minutes)
    expression_size: int = 1_000  # operators and operands in one expression
    digits: int = 60  # decimal digits of any integer a spec computes (10**60 is far beyond any tensor)
    weights_bytes: int = 64 * GiB  # a weights file's tensors once inflated, from the archive's metadata
    memory: int | None = None  # bytes a build may allocate; None: the machine's available memory

    def __post_init__(self):
        for item in fields(self):
            value = getattr(self, item.name)
            if value is None and item.name == "memory":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"limit {item.name} must be a positive integer, not {value!r}")


DEFAULT = Limits()
NAMES = tuple(item.name for item in fields(Limits))
UNITS = {"spec_bytes", "weights_bytes", "memory"}  # limits in bytes: accept 16M, 2G, ...
_active: contextvars.ContextVar[Limits] = contextvars.ContextVar("archspec_limits", default=DEFAULT)


def current() -> Limits:
    """The limits in force: those of the innermost `applied`, else the defaults."""
    return _active.get()


@contextlib.contextmanager
def applied(limits: Limits | Mapping | None):
    """Run a block of work under `limits`: a Limits, or a mapping of some limits to their values
    (the others are the defaults); None keeps those in force."""
    if limits is None:
        yield current()
        return
    limits = _as_limits(limits)
    token = _active.set(limits)
    try:
        yield limits
    finally:
        _active.reset(token)


def _as_limits(limits: object) -> Limits:
    if isinstance(limits, Limits):
        return limits
    if not isinstance(limits, Mapping):
        raise TypeError(f"limits must be an archspec.Limits or a mapping of limit names, not {type(limits).__name__}")
    unknown = [name for name in limits if name not in NAMES]
    if unknown:
        raise ValueError(f"no limit named {str(unknown[0])[:40]!r}; the limits are {', '.join(NAMES)}")
    return Limits(**limits)


def ensure_stack() -> None:
    """Room on Python's stack for layers nested limit depth deep: each level of nesting takes a few
    frames in each stage (loading, expansion, resolution, shapes, costs), more than Python's default
    1,000 leave at 100 levels. The limit is raised only where the frames left are too few (a test
    runner's own limit is kept where it leaves room), never by more than 10,000 frames (past that a
    stage reports the nesting as an error rather than recurse), and never lowered again: threads
    share the limit, and one lowering it would fail another one deep inside."""
    frames, frame = 0, sys._getframe()
    while frame is not None:
        frames, frame = frames + 1, frame.f_back
    wanted = frames + min(15 * current().depth + 200, 10_000)
    if sys.getrecursionlimit() < wanted:
        sys.setrecursionlimit(wanted)


def magnitude_bounds() -> tuple[int, float]:
    """(int bound, float bound): every number a spec holds or computes is below them in magnitude
    (limit digits: 10**60 by default, far beyond any tensor)."""
    digits = current().digits
    return 10**digits, float(10**digits) if digits <= 308 else math.inf


def too_big(value) -> bool:
    """Whether a number is at or beyond the bound of limit digits (or not finite)."""
    if type(value) is int:
        bound = magnitude_bounds()[0]
        return not -bound < value < bound
    if type(value) is float:
        return not math.isfinite(value) or abs(value) >= magnitude_bounds()[1]
    return False


def how_to_raise(name: str) -> str:
    """The end of every message about a limit: which one, and how to raise it."""
    value = getattr(current(), name)
    shown = "the available memory" if value is None else show_size(value) if name in UNITS else f"{value:,}"
    return f"limit {name} = {shown}; raise it with --limit {name}=N or archspec.Limits({name}=N)"


def parse(assignments: list[str], base: Limits = DEFAULT) -> Limits:
    """Limits from `NAME=VALUE` strings (the CLI's --limit); ValueError names what is wrong."""
    changes: dict[str, int] = {}
    for text in assignments:
        name, equals, value = text.partition("=")
        name = name.strip().replace("-", "_")
        if not equals or name not in NAMES:
            raise ValueError(f"--limit takes NAME=VALUE with NAME one of {', '.join(NAMES)}; got {text!r}")
        changes[name] = parse_size(value) if name in UNITS else _parse_int(value, name)
    return replace(base, **changes)


_SUFFIXES = {"": 1, "K": KiB, "M": MiB, "G": GiB, "T": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes from `123`, `16M`, `2G`, `1.5G` (binary units; a trailing B or iB is allowed)."""
    cleaned = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = cleaned[-1:] if cleaned[-1:] in _SUFFIXES else ""
    number = cleaned[: len(cleaned) - len(unit)]
    try:
        value = float(number) if "." in number else int(number)
    except ValueError:
        raise ValueError(f"not a size: {text!r} (write bytes, or a number with K, M, G or T)") from None
    if not 0 < value < 1 << 62:
        raise ValueError(f"a size must be positive, not {text!r}")
    return int(value * _SUFFIXES[unit])


def _parse_int(text: str, name: str) -> int:
    cleaned = text.strip().replace("_", "").replace(",", "")
    if not cleaned.isdigit() or len(cleaned) > 18 or int(cleaned) < 1:
        raise ValueError(f"--limit {name} takes a positive integer, not {text!r}")
    return int(cleaned)


def show_size(size: int) -> str:
    """Bytes for people: 16 MiB, 1.5 GiB, 512 bytes."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"
