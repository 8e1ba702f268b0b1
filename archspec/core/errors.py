"""Diagnostics: located, coded errors meant for people, collected and raised together."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import NamedTuple


class Location(NamedTuple):
    """Where in which file. (A NamedTuple: loading a spec records one per YAML node.)"""

    path: str
    line: int  # 1-based
    col: int  # 1-based

    def __str__(self) -> str:
        return f"{printable(self.path)}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Diagnostic:
    message: str
    code: str
    loc: Location | None = None
    notes: tuple[tuple[Location | None, str], ...] = ()

    def __post_init__(self):
        if not isinstance(self.code, Code):
            raise TypeError(f"a diagnostic's code is an errors.Code constant, not {self.code!r}")
        # Bounded output whatever the spec: long names shortened, long messages cut, notes capped.
        object.__setattr__(self, "message", shorten_message(self.message))
        if len(self.notes) > MAX_NOTES or any(len(text) > MAX_MESSAGE for _, text in self.notes):
            object.__setattr__(self, "notes", _capped_notes(self.notes))

    def format(self) -> str:
        where = f"{self.loc}: " if self.loc else ""
        lines = [f"{where}error: {self.message} [{self.code}]"]
        for loc, text in self.notes:
            lines.append(f"{loc}: note: {text}" if loc else f"note: {text}")
        return "\n".join(lines)


class Code(str):
    """An error code: the short name printed in brackets, with what it means.

    Codes are module constants (BAD_VALUE, ...), so a misspelt code is an import error, not a new
    code; a Diagnostic refuses a plain string.
    """

    description: str

    def __new__(cls, name: str, description: str):
        code = super().__new__(cls, name)
        code.description = description
        CODES[name] = description
        return code


# The registry of error codes, in the order a spec meets them.
CODES: dict[str, str] = {}
YAML_SYNTAX = Code("yaml-syntax", "the file is not well-formed YAML")
YAML_DUPLICATE_KEY = Code("yaml-duplicate-key", "a mapping repeats a key")
YAML_TAG = Code("yaml-tag", "a YAML tag other than the plain data types")
YAML_DOCUMENTS = Code("yaml-documents", "the file holds more or fewer than one YAML document")
BAD_EXTENDS = Code("bad-extends", "the base spec named by extends is missing, unreadable, or makes a cycle")
BAD_VAR = Code("bad-var", "vars is malformed, or a var is defined in terms of itself")
BAD_EXPRESSION = Code("bad-expression", "an expression uses an unknown var or is not simple arithmetic")
BAD_BLOCK = Code("bad-block", "a user-defined block is malformed")
BAD_ARGUMENT = Code("bad-argument", "a block is used with a missing, unknown or mistyped argument")
BLOCK_RECURSION = Code("block-recursion", "a block uses itself, directly or through other blocks")
BAD_OVERRIDE = Code("bad-override", "override names no layer, or is malformed")
LAYER_FORM = Code("layer-form", "a layer entry is not `kind`, `kind: value` or `kind: {fields}`")
UNKNOWN_KIND = Code("unknown-kind", "no layer kind has this name")
UNKNOWN_FIELD = Code("unknown-field", "the layer kind or spec has no such field")
MISSING_FIELD = Code("missing-field", "a required field is absent")
BAD_VALUE = Code("bad-value", "a field's value has the wrong type or range")
BAD_NAME = Code("bad-name", "a name is not a Python identifier, or is a keyword")
DUPLICATE_NAME = Code("duplicate-name", "two layers in one scope share a name")
FORMAT_VERSION = Code("format-version", "the spec's format version is not supported")
BAD_INPUT = Code("bad-input", "the input shape is malformed")
OUTPUT_SIZE = Code("output-size", "a layer's output would have a size below 1")
CHANNEL_MISMATCH = Code("channel-mismatch", "a layer's channel count does not fit its input")
BRANCH_MISMATCH = Code("branch-mismatch", "the branches of an elementwise add or mul disagree in shape")
BAD_REFERENCE = Code("bad-reference", "from: names no earlier layer of the same sequence")
CONCAT_MISMATCH = Code("concat-mismatch", "tensors concatenated on channels differ in spatial size")
NEEDS_FLATTEN = Code("needs-flatten", "a layer needs a flat (features,) input")
RANK = Code("rank", "a layer does not accept an input of this rank")
NO_SOURCE_FORM = Code("no-source-form", "a plugin kind gives no source form, so --emit-python cannot write it")
BAD_ARG = Code("bad-arg", "an argument combination PyTorch rejects")
LIMIT = Code(
    "limit", "the spec would cause more work than a limit allows (docs/limits.md); the message says how to raise it"
)
PLUGIN = Code("plugin", "a plugin's rule failed, or returned what archspec cannot use (docs/extending.md)")


@dataclass
class SpecError(Exception):
    """One or more user mistakes in a spec. Never carries a traceback to the user."""

    diagnostics: list[Diagnostic] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(d.format() for d in self.diagnostics)


def in_file_order(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """Sorted by position, each once (the copies of a repeated layer share their mistakes)."""
    unique = list(dict.fromkeys(diagnostics))
    return sorted(unique, key=lambda d: (d.loc.line, d.loc.col) if d.loc else (0, 0))


class UsageError(Exception):
    """A mistake in how archspec was called (no such file, bad option): exit status 2."""


class WeightsError(Exception):
    """A weights file that cannot be read, or does not fit the model: exit status 1."""


# ---------------------------------------------------------------- bounded messages
#
# A message shows what the spec wrote, and a spec may be hostile: a name of a megabyte, a number
# of thousands of digits (Python refuses to print those past 4,300), thousands of vars. Every
# message that prints a value, a name or a list of names goes through these helpers.

MAX_NAME = 60  # characters of a name (or any unbroken word) shown in a message
MAX_LIST = 10  # names listed before "and N more"
MAX_NOTES = 10  # notes kept on one diagnostic (the first ones and the last, with a count between)
MAX_MESSAGE = 2_000  # characters of one message; longer ones are cut in the middle
_SUGGEST_LENGTH = 100  # words and candidates longer than this get no "did you mean"
_SUGGEST_CANDIDATES = 500  # candidates compared, the closest in length first


def digits(value: int) -> int:
    """The number of decimal digits of abs(value), without converting it to text."""
    value = abs(value)
    if value < 10**18:
        return len(str(value))
    estimate = int(value.bit_length() * 0.30102999566398120) + 1  # never more than one too many
    return estimate if value >= 10 ** (estimate - 1) else estimate - 1


def show_number(value: int | float) -> str:
    """A number as a message shows it: in full up to MAX_NAME digits, else `1234...5678 (5,000 digits)`."""
    if isinstance(value, bool) or not isinstance(value, int):
        return repr(value)
    count = digits(value)
    if count <= MAX_NAME:
        return str(value)
    sign = "-" if value < 0 else ""
    magnitude = abs(value)
    head = magnitude // 10 ** (count - 4)
    tail = magnitude % 10**4
    return f"{sign}{head}...{tail:04d} ({count:,} digits)"


# What could move a terminal's cursor, change its colours, forge or reorder what it shows: C0 and C1
# controls but newline and tab, the bidirectional controls, and the line and paragraph separators.
_TERMINAL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: str) -> str:
    """`text` with every terminal control escaped (`\\x1b`, `\\u202e`): everything archspec writes to
    stdout and stderr passes through here (cli), whatever part of it came from outside."""
    return _TERMINAL.sub(lambda found: repr(found.group())[1:-1], text)


def printable(text: str | os.PathLike, width: int = 300) -> str:
    """A path or name from outside as a message shows it: every unprintable character escaped (a
    newline too, which would split the `path:line:col` prefix), a very long one shortened."""
    text = os.fsdecode(text) if not isinstance(text, str) else text
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return (
        text if len(text) <= width else f"{text[: width * 3 // 5]}...{text[-width // 3 :]} ({len(text):,} characters)"
    )


def shorten(text: str, width: int = MAX_NAME) -> str:
    """`text` if it is at most `width` characters, else its head and tail around `...`."""
    text = str(text)
    if len(text) <= width:
        return text
    keep = max(width - 3, 2)
    return f"{text[: (keep + 1) // 2]}...{text[len(text) - keep // 2 :]}"


def show_value(value, width: int = 40) -> str:
    """A value from a spec as a message shows it (repr-like), bounded in size whatever it holds:
    big numbers as `1234...5678 (5,000 digits)`, a long string by its head and tail, a container
    by its beginning, and deep or self-referencing containers without recursing."""
    if isinstance(value, int) and not isinstance(value, bool):
        return show_number(value)
    if isinstance(value, str):
        return shorten(repr(value), width)
    text = _repr(value, 3, width + 1)
    return text if len(text) <= width else text[: width - 3] + "..."


def _repr(value, levels: int, room: int) -> str:
    """repr(value), bounded: `room` characters are enough (the caller cuts), `levels` deep."""
    if isinstance(value, int) and not isinstance(value, bool):
        return show_number(value)
    if isinstance(value, str):
        return repr(value[:room]) if len(value) > room else repr(value)
    if isinstance(value, (list, tuple, dict)):
        opening, closing = ("[", "]") if isinstance(value, list) else ("(", ")") if isinstance(value, tuple) else "{}"
        if levels == 0:
            return f"{opening}...{closing}"
        parts, used = [], 0
        items = value.items() if isinstance(value, dict) else value
        for item in items:
            if used > room:
                parts.append("...")
                break
            if isinstance(value, dict):
                key, item = item
                part = f"{_repr(key, levels - 1, room)}: {_repr(item, levels - 1, room)}"
            else:
                part = _repr(item, levels - 1, room)
            parts.append(part)
            used += len(part) + 2
        comma = "," if isinstance(value, tuple) and len(value) == 1 else ""
        return opening + ", ".join(parts) + comma + closing
    try:
        text = repr(value)
    except Exception:  # a value whose repr fails (an object of a plugin's): its type
        text = f"<{type(value).__name__}>"
    return text[:room]


def show_names(names, limit: int = MAX_LIST) -> str:
    """Names for a message, each shortened: all of them, or the first `limit` and how many more."""
    names = list(names)
    shown = ", ".join(shorten(name) for name in names[:limit])
    more = len(names) - limit
    return f"{shown} and {more:,} more" if more > 0 else shown


def did_you_mean(word: str, choices) -> str:
    import difflib  # only on the error path: keeps `check` of a good spec fast

    if not isinstance(word, str):
        return ""
    if not word or len(word) > _SUGGEST_LENGTH:  # difflib is quadratic in the length of similar words
        return ""
    candidates = [c for c in choices if isinstance(c, str) and len(c) <= _SUGGEST_LENGTH]
    if len(candidates) > _SUGGEST_CANDIDATES:  # the ones closest in length can be the closest at all
        candidates = sorted(candidates, key=lambda c: (abs(len(c) - len(word)), c))[:_SUGGEST_CANDIDATES]
    match = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return f'; did you mean "{shorten(match[0])}"?' if match else ""


_LONG_WORD = None


def shorten_message(message: str) -> str:
    """`message` with every unbroken word longer than MAX_NAME shortened, at most MAX_MESSAGE long."""
    global _LONG_WORD
    if len(message) <= MAX_NAME:
        return message
    if _LONG_WORD is None:
        import re

        _LONG_WORD = re.compile(rf"[A-Za-z0-9_]{{{MAX_NAME + 1},}}")
    message = _LONG_WORD.sub(lambda m: _short_word(m.group()), message)
    return shorten(message, MAX_MESSAGE)


def _short_word(word: str) -> str:
    if word.isdigit():
        return f"{word[:4]}...{word[-4:]} ({len(word):,} digits)"
    return shorten(word)


def _capped_notes(notes: tuple) -> tuple:
    notes = tuple((loc, shorten_message(text)) for loc, text in notes)
    if len(notes) <= MAX_NOTES:
        return notes
    first, last = notes[: MAX_NOTES - 2], notes[-1:]
    skipped = len(notes) - len(first) - len(last)
    return (*first, (None, f"... {skipped:,} more notes like these ..."), *last)
