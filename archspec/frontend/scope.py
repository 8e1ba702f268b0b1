"""What a spec writes, evaluated: where each value came from (`Origin`), and the scopes of vars and
block parameters its expressions are evaluated in.

Vars are evaluated each after the vars it uses, in any order written (a cycle is reported); every
number is bounded by limit digits; a layer name's `{expression}` parts are filled in. Mistakes are
reported where they were written, and evaluation goes on, so one run reports them all.
"""

from __future__ import annotations

import keyword
import math
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..core.errors import (
    BAD_VALUE,
    BAD_VAR,
    LIMIT,
    Diagnostic,
    Location,
    UsageError,
    did_you_mean,
    shorten,
    show_names,
    show_number,
    show_value,
)
from ..core.limits import current as current_limits
from ..core.limits import how_to_raise, magnitude_bounds, too_big
from .expressions import ExpressionError, Failed, evaluate, names_in
from .load import Document

Note = tuple[Location, str]


class Origin(NamedTuple):
    doc: Document
    ypath: tuple
    trace: tuple[Note, ...] = ()  # the block uses this node was expanded through, innermost last

    def at(self, *rest) -> Origin:
        """The origin of a value inside this one."""
        return Origin(self.doc, self.ypath + rest, self.trace)


@dataclass
class Part:
    """A value of the spec and where it was written."""

    value: Any
    origin: Origin


class Scope(dict):
    """A scope of names: local values over an enclosing scope."""

    def __init__(self, outer, local: dict):
        super().__init__(outer if isinstance(outer, dict) else outer.items())
        self.update(local)


class LazyScope:
    """Vars seen from another var's expression: evaluated on first use, in any order."""

    def __init__(self, parts: dict, value_of):
        self.parts, self.value_of = parts, value_of

    def __contains__(self, name) -> bool:
        return name in self.parts

    def __getitem__(self, name):
        return self.value_of(name)

    def __iter__(self):
        return iter(self.parts)

    def items(self):
        return ((name, self.value_of(name)) for name in self.parts)


class Evaluator:
    """Evaluates what a spec writes, reporting each mistake at its place in `errors`."""

    def __init__(self, errors: list[Diagnostic]):
        self.errors = errors
        self.parsed: dict = {}  # the texts parsed so far (expressions.parse): a spec repeats its texts
        self.bound = magnitude_bounds()[0]  # 10**digits: every number is below it in magnitude

    def error(self, message: str, code: str, origin: Origin, rest: tuple = (), key: bool = False) -> None:
        where = origin.doc.locate(origin.ypath + rest, key=key)
        self.errors.append(Diagnostic(message, code, where, tuple(reversed(origin.trace))))

    def var_definitions(self, value: Any, origin: Origin) -> dict[str, Part]:
        if not isinstance(value, dict):
            self.error("vars is a mapping of names to numbers or expressions", BAD_VAR, origin)
            return {}
        result = {}
        for name, definition in value.items():
            if not is_identifier(name):
                self.error(
                    f"a var name must be an ASCII identifier and not a Python keyword, not {show_value(name)}",
                    BAD_VAR,
                    origin,
                    (name,),
                    key=True,
                )
                continue
            result[name] = Part(definition, origin.at(name))
        return result

    def variables(self, var_parts: dict[str, Part], overrides: dict[str, Any]) -> dict[str, Any]:
        """The vars' values, `--set` overrides applied; a wrong var's value is Failed."""
        _check_overrides(var_parts, overrides)
        raw = {name: overrides.get(name, part.value) for name, part in var_parts.items()}
        values: dict[str, Any] = {}
        scope = LazyScope(var_parts, values.__getitem__)  # knows every var; holds those evaluated

        def uses(name: str):
            return iter(dict.fromkeys(used for used in names_in(raw[name], self.parsed) if used in var_parts))

        failed: set[str] = set()  # vars whose definition is wrong
        for name in self._in_order(var_parts, uses, values):
            errors = len(self.errors)
            if any(used in failed for used in uses(name)):  # reported there: not again at each var using it
                self.errors, kept = [], self.errors
                self.values(raw[name], var_parts[name].origin, (), scope)
                self.errors = kept
                failed.add(name)
            else:
                values[name] = self.values(raw[name], var_parts[name].origin, (), scope)
                if len(self.errors) > errors:
                    failed.add(name)
            if name in failed:  # its uses say so, rather than show its text as the value
                values[name] = Failed(name)
        return {name: values[name] for name in var_parts}

    def _in_order(self, var_parts: dict[str, Part], uses, values: dict):
        """Every var, each after the vars it uses, in any order written (a var in a cycle is reported
        and taken as 0): a depth-first walk with a stack of its own, so a chain of thousands of vars
        takes no Python recursion."""
        done: set[str] = set()
        for root in var_parts:
            if root in done:
                continue
            path, stack = [root], [uses(root)]
            while stack:
                for used in stack[-1]:
                    if used in done:
                        continue
                    if used in path:
                        cycle = path[path.index(used) :] + [used]
                        chain = " -> ".join(cycle) if len(cycle) <= MAX_CYCLE else long_chain(cycle)
                        message = f"var {used} is defined in terms of itself ({chain})"
                        self.error(message, BAD_VAR, var_parts[used].origin)
                        values.setdefault(used, 0)
                        continue
                    path.append(used)
                    stack.append(uses(used))
                    break
                else:
                    stack.pop()
                    name = path.pop()
                    yield name
                    done.add(name)

    def values(self, value: Any, origin: Origin, rest: tuple, scope) -> Any:
        """`value` with every expression string in it evaluated; every number in it bounded."""
        if isinstance(value, str):
            try:
                return evaluate(value, scope, self.parsed)
            except ExpressionError as exc:
                self.error(str(exc), exc.code, origin, rest)
                return value
        if isinstance(value, list):
            return [self.values(v, origin, rest + (i,), scope) for i, v in enumerate(value)]
        if type(value) is int and -self.bound < value < self.bound:
            return value
        if _is_number(value) and too_big(value) and (type(value) is int or math.isfinite(value)):
            digits = current_limits().digits
            what = (
                f"{show_number(value)} is a number of more than {digits} digits"
                if type(value) is int
                else f"{value:.3g} is beyond 10**{digits}"
            )
            self.error(f"{what}; {how_to_raise('digits')}", LIMIT, origin, rest)
        return value

    def count(self, value: Any, origin: Origin, key: str, scope, what: str) -> int:
        """A number of copies (`repeat:`, a flat repeat's `times:`): an integer >= 0; 1 where it is
        not one (reported)."""
        count = self.values(value, origin, (key,), scope)
        if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
            return count
        self.error(f"{what} must be an integer >= 0, got {show_value(count)}", BAD_VALUE, origin, (key,))
        return 1

    def name_of(self, name: Any, origin: Origin, scope) -> Any:
        """A layer name with its `{expression}` parts filled in (`block{s + 1}-{i}` in a repeat gives
        block1-0, block1-1, ...). Each part is evaluated like a field and must give an integer >= 0,
        so a name holds only what validation then checks: letters, digits, _ and -."""
        if not is_template(name):
            return name

        def filled(part: re.Match) -> str:
            text = part.group(1).strip()
            value = evaluate(text, scope, self.parsed)
            if isinstance(value, str):  # what evaluate hands back as text: a number, or a bare unknown name
                if not (text.isascii() and text.isdecimal()):
                    known = show_names(sorted(scope)) or "none"
                    raise ExpressionError(
                        f'no var named "{shorten(text)}" in the name {show_value(name, 80)} (known: {known})'
                    )
                value = int(text)
            if type(value) is not int or value < 0:
                raise ExpressionError(f"a name's {{{text}}} must give an integer >= 0, got {show_value(value)}")
            return str(value)

        try:
            return NAME_PART.sub(filled, name)
        except ExpressionError as exc:
            self.error(str(exc), exc.code, origin, ("name",))
            return None  # a stand-in with no name: the layer is still checked

    # ---- override: patches of named parts


MAX_CYCLE = 12  # vars shown in a cycle's message


def long_chain(cycle: list[str]) -> str:
    skipped = len(cycle) - MAX_CYCLE
    return " -> ".join([*cycle[: MAX_CYCLE - 4], f"({skipped:,} more)", *cycle[-4:]])


def _check_overrides(var_parts: dict[str, Part], overrides: dict[str, Any]) -> None:
    """UsageError unless every `--set` names a var and fits it (a list for a list)."""
    unknown = [name for name in overrides if name not in var_parts]
    if unknown:
        known = show_names(sorted(var_parts)) or "none"
        raise UsageError(
            f'no var named "{shorten(unknown[0])}" to override{did_you_mean(unknown[0], var_parts)} '
            f"(known vars: {known})"
        )
    for name, value in overrides.items():
        declared = var_parts[name].value
        if isinstance(declared, list) != isinstance(value, list):
            raise UsageError(_override_mismatch(name, declared, value))


def _override_mismatch(name: str, declared, value) -> str:
    """Why `--set name=value` does not fit the spec's var: a list for a number or the reverse."""
    if isinstance(declared, list):
        example = ", ".join([str(value)] * len(declared))
        return (
            f"--set {name}={value}: {name} is a list of {len(declared)} in the spec; "
            f'give a list, e.g. --set "{name}=[{example}]"'
        )
    return f"--set {name}: {name} is a single value in the spec, not a list"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def key_shown(key) -> str:
    """A mapping key as a message shows it: a string as it is, anything else (from a dict given as
    such: a number of any size) bounded."""
    return key if isinstance(key, str) else show_value(key)


NAME_PART = re.compile(r"\{([^{}]*)\}")


def is_template(name) -> bool:
    return isinstance(name, str) and NAME_PART.search(name) is not None


def is_identifier(name) -> bool:
    """A name usable in expressions and, in emitted code, as a parameter: ASCII, so two names that
    Python's NFKC normalisation makes equal (`ａbc`, `abc`) cannot both exist."""
    return isinstance(name, str) and name.isascii() and name.isidentifier() and not keyword.iskeyword(name)
