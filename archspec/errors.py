"""Diagnostics: located, coded errors meant for people, collected and raised together."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Location:
    path: str
    line: int  # 1-based
    col: int  # 1-based

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Diagnostic:
    message: str
    code: str
    loc: Location | None = None
    notes: tuple[tuple[Location | None, str], ...] = ()

    def __post_init__(self):
        if not isinstance(self.code, Code):
            raise TypeError(f"a diagnostic's code is an errors.Code constant, not {self.code!r}")

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


def did_you_mean(word: str, choices) -> str:
    import difflib  # only on the error path: keeps `check` of a good spec fast

    match = difflib.get_close_matches(str(word), sorted(choices), n=1, cutoff=0.6)
    return f'; did you mean "{match[0]}"?' if match else ""
