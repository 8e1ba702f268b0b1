"""A quick reader for the plain YAML specs are written in, beside libyaml's, which reads the rest.

libyaml's composer makes a Python node and two marks for every scalar, and the loader then walks
those nodes again: most of the load of a long spec. Specs are written in a small part of YAML:
block mappings and sequences, one-line flow collections, plain scalars and quotes without escapes,
comments. `read` reads a text written only in that part, line by line, straight into the data and
the positions `load.Document` holds, and returns None for anything else. None is also its answer
wherever libyaml would report something: an error, a duplicate key, a tag, a limit; the loader
then reads the text through libyaml, which says what is wrong. So `read` never decides anything
libyaml would decide differently: tests/test_load.py holds the two to the same data and positions
on generated texts.

What it reads: printable ASCII and newlines only (no tab, no carriage return); mapping keys that
are identifiers; plain scalars that start with a letter, digit, `_`, `$`, `(` or `.` (or a sign
before a digit or `.`) and hold no `:`, `#` or quote (nor, in a flow collection, `,` or a bracket);
quoted scalars without escapes or doubled quotes; flow collections that close on their line,
without a trailing comma; a sequence item on its line or a mapping starting there. A scalar's
tag is the one PyYAML's resolver gives its text, and its value what SafeLoader's constructor
makes of it, as for libyaml's nodes.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import yaml

from .limits import current

_OUTSIDE = re.compile(r"[^\n\x20-\x7e]")  # anything but printable ASCII and newlines
_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):(?: +|$)")
_FLOW_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*): +")
_ITEM = re.compile(r"- +")
_FLOW_PLAIN = re.compile(r"(?:[A-Za-z0-9_$(.]|[-+](?=[0-9.]))[A-Za-z0-9_$().+\-*/%<>=^~ ]*")
_PLAIN = re.compile(r"(?:[A-Za-z0-9_$(.]|[-+](?=[0-9.]))[A-Za-z0-9_$().+\-*/%<>=^~ ,\[\]{}]*")  # in block context
_QUOTED = {'"': re.compile(r'"[^"\\]*"'), "'": re.compile(r"'[^']*'")}

_STR = "tag:yaml.org,2002:str"
_SCALAR_TAGS = frozenset(f"tag:yaml.org,2002:{name}" for name in ("int", "float", "bool", "null"))


class Mark(NamedTuple):
    """Where a node starts, 0-based, as libyaml's marks say it."""

    line: int
    column: int


_new_mark = tuple.__new__  # a NamedTuple's own __new__ is a Python function; one mark per node


class Declined(Exception):
    """The text is not in the part of YAML this reader reads."""


def read(text: str, resolver) -> tuple[object, dict, dict, dict] | None:
    """(data, value marks by path, key marks by path, one-line items by path) of `text`, or None
    where libyaml must read it. `resolver` resolves a scalar's tag as the loader's libyaml parser does.

    A sequence item written on one line (most layers of a spec) has no marks of its own: its path
    maps to (line, column of its "-", its Line), from which load.Document makes them when asked."""
    if _OUTSIDE.search(text):
        return None
    rows = []
    for number, line in enumerate(text.split("\n")):
        content = line.lstrip(" ")
        if content and content[0] != "#":
            rows.append((number, len(line) - len(content), content))
    if not rows or len(rows) > current().yaml_nodes:  # each line holds a node at least
        return None
    reader = _Reader(rows, resolver, {})
    try:
        data, end = reader.block(0, rows[0][1], ())
    except (Declined, RecursionError):  # nesting deeper than Python's stack, under a raised limit depth
        return None
    if end != len(rows) or len(reader.values) + reader.folded > current().yaml_nodes:
        return None
    return data, reader.values, reader.keys, reader.lines


class Line(NamedTuple):
    """A sequence item written on one line, read once however often the line recurs."""

    value: object  # copied for each use: later stages may change what they are given
    offset: int  # the item's column, from its "-"
    values: tuple[tuple[tuple, int], ...]  # (path from the item, column from its "-") of each node inside it
    keys: tuple[tuple[tuple, int], ...]  # the same for each key inside it
    depth: int  # how deep collections nest in it, itself included (0: a scalar)
    nodes: int  # its nodes, itself included
    copies: tuple  # _copy's plan of its value


def unfold(line: Line, number: int, column: int, path: tuple, values: dict, keys: dict) -> None:
    """The marks of the nodes inside `line`, the item at `path` written on line `number` from `column`."""
    for inner, offset in line.values:
        values[path + inner] = _new_mark(Mark, (number, column + offset))
    for inner, offset in line.keys:
        keys[path + inner] = _new_mark(Mark, (number, column + offset))


def _copy(value: dict | list, plan: tuple) -> dict | list:
    """A copy of the collection `value`, whose collections inside are at the keys or indices of
    `plan`, each with its own plan (a layer on one line is a mapping holding a mapping of scalars)."""
    copied = value.copy()
    for at, inner in plan:
        copied[at] = _copy(value[at], inner)
    return copied


def _plan(value: dict | list) -> tuple:
    """_copy's plan of `value`."""
    places = value.items() if type(value) is dict else enumerate(value)
    return tuple((at, _plan(item)) for at, item in places if type(item) is dict or type(item) is list)


class _Reader:
    def __init__(self, rows: list[tuple[int, int, str]], resolver, templates: dict | None):
        self.rows = rows
        self.resolver = resolver
        self.values: dict[tuple, Mark] = {}
        self.keys: dict[tuple, Mark] = {}
        self.lines: dict[tuple, tuple[int, int, Line]] = {}
        self.templates = templates  # a line's text -> its Line (Declined: not read here); None: not used
        self.once: set[str] = set()  # lines of one-line items met once, read in place
        self.folded = 0  # nodes of the items in self.lines
        self.deepest = 0  # the longest path of a collection
        self.tags: dict[str, str] = {}  # plain text -> its tag
        self.made: dict[tuple[str, str], object] = {}  # (tag, text) -> the number, bool or null it reads as
        self.constructor = None
        limits = current()
        self.max_depth, self.max_digits = limits.depth, limits.digits

    # ------------------------------------------------------------ block collections

    def block(self, i: int, column: int, path: tuple):
        """The collection whose first line is row i, at `column`; and the row after it."""
        text = self.rows[i][2]
        if text[0] == "-":
            return self.sequence(i, column, path)
        return self.mapping(i, column, text, path)

    def sequence(self, i: int, column: int, path: tuple):
        rows, values, templates = self.rows, self.values, self.templates
        self._enter(path)
        values[path] = _new_mark(Mark, (rows[i][0], column))
        items: list = []
        while i < len(rows):
            number, at, text = rows[i]
            if at != column or text[0] != "-":
                break
            line = None
            if templates is not None and (i + 1 == len(rows) or rows[i + 1][1] <= column):  # on one line
                line = templates.get(text)
                if line is None and text in self.once:  # a line that recurs: read once, for every place
                    line = templates[text] = self._template(text)
                elif line is None:  # read in place: most lines that differ (named layers) never recur
                    self.once.add(text)
            if line is not None:
                if line is Declined or (line.depth and len(path) + line.depth >= self.max_depth):
                    raise Declined
                item_path = path + (len(items),)
                items.append(_copy(line.value, line.copies) if line.depth else line.value)
                self.lines[item_path] = (number, column, line)
                self.folded += line.nodes
                i += 1
                continue
            dash = _ITEM.match(text)
            if dash is None or dash.end() == len(text):  # "-" alone, "--", a number: libyaml decides
                raise Declined
            rest, start = text[dash.end() :], column + dash.end()
            item_path = path + (len(items),)
            if _KEY.match(rest):  # a mapping that starts on the item's line
                value, i = self.mapping(i, start, rest, item_path)
            else:
                value = self.inline(rest, number, start, item_path)
                i += 1
            items.append(value)
            if i < len(rows) and rows[i][1] > column:  # a scalar going on, or a misplaced line
                raise Declined
        return items, i

    def mapping(self, i: int, column: int, text: str, path: tuple):
        """The mapping whose first key is `text` (row i's text, or what follows its "- ") at `column`."""
        rows, values, keys = self.rows, self.values, self.keys
        self._enter(path)
        number = rows[i][0]
        values[path] = _new_mark(Mark, (number, column))
        result: dict = {}
        while True:
            key_match = self.key(_KEY, text, 0, result)
            key = key_match.group(1)
            at = path + (key,)
            keys[at] = _new_mark(Mark, (number, column))
            rest = text[key_match.end() :]
            if rest and rest[0] != "#":
                result[key] = self.inline(rest, number, column + key_match.end(), at)
                i += 1
            else:  # the value is on the lines below
                i += 1
                if i == len(rows):
                    raise Declined  # a null: libyaml marks it
                below, below_text = rows[i][1], rows[i][2]
                if below > column or (below == column and below_text[0] == "-"):
                    result[key], i = self.block(i, below, at)
                else:
                    raise Declined
            if i == len(rows):
                break
            number, at_column, text = rows[i]
            if at_column < column:
                break
            if at_column > column or text[0] == "-":
                raise Declined
        return result, i

    def _enter(self, path: tuple) -> None:
        """Before a collection's children, one level deeper than `path`: past limit depth, the loader's error."""
        if len(path) >= self.max_depth:
            raise Declined
        if len(path) > self.deepest:
            self.deepest = len(path)

    def _template(self, text: str) -> Line | type[Declined]:
        """The Line of an item written as `text`, read as a sequence of that one item at column 0."""
        reader = _Reader([(0, 0, text)], self.resolver, None)
        reader.tags, reader.made = self.tags, self.made  # (its depth is a bound: the item sits at least one deep)
        try:
            (value,), _ = reader.sequence(0, 0, ())
        except Declined:
            return Declined  # (kept: the same line is declined at once wherever it recurs)
        inside = lambda marks: tuple((path[1:], mark.column) for path, mark in marks.items() if len(path) > 1)
        offset = reader.values[(0,)].column
        plan = _plan(value) if reader.deepest else ()
        values, keys = inside(reader.values), inside(reader.keys)
        return Line(value, offset, values, keys, reader.deepest, len(reader.values) - 1, plan)

    # ------------------------------------------------------------ one line's values

    def inline(self, text: str, number: int, column: int, path: tuple):
        """The value that `text` (the rest of a line, at `column`) holds, up to a comment."""
        first = text[0]
        if first == "[" or first == "{":
            value, end = self.flow(text, 0, number, column, path)
        else:
            value, end = self.scalar(text, 0, number, column, path)
        end = _skip(text, end)
        if end < len(text) and (text[end] != "#" or text[end - 1] != " "):  # a comment follows a space
            raise Declined
        return value

    def scalar(self, text: str, start: int, number: int, column: int, path: tuple, plain: re.Pattern = _PLAIN):
        first = text[start] if start < len(text) else ""
        quoted = _QUOTED.get(first)
        if quoted is not None:
            match = quoted.match(text, start)
            if match is None:
                raise Declined
            self.values[path] = _new_mark(Mark, (number, column + start))
            return match.group()[1:-1], match.end()
        match = plain.match(text, start)
        if match is None:
            raise Declined
        self.values[path] = _new_mark(Mark, (number, column + start))
        return self.plain(match.group().rstrip(" ")), match.end()

    def plain(self, text: str):
        tag = self.tags.get(text)
        if tag is None:
            tag = self.tags[text] = self.resolver(yaml.ScalarNode, text, (True, False))
        if tag == _STR:
            return text
        if tag not in _SCALAR_TAGS:  # a timestamp, a merge key, "=": libyaml's node goes to the loader's errors
            raise Declined
        made = self.made.get((tag, text), _UNMADE)
        if made is _UNMADE:
            if tag.endswith(":int") and len(text) > self.max_digits + 3:
                raise Declined  # the loader's error for it
            if self.constructor is None:
                self.constructor = yaml.SafeLoader("")
            node = yaml.ScalarNode(tag, text)
            made = self.made[(tag, text)] = self.constructor.yaml_constructors[tag](self.constructor, node)
        return made

    def key(self, pattern: re.Pattern, text: str, at: int, taken: dict) -> re.Match:
        """The key a mapping's entry at text[at] starts with: an identifier that reads as a string,
        not in `taken` (a duplicate: the loader's error)."""
        match = pattern.match(text, at)
        if match is None or match.group(1) in taken or self.tag(match.group(1)) != _STR:
            raise Declined
        return match

    def tag(self, key: str) -> str:
        tag = self.tags.get(key)
        if tag is None:
            tag = self.tags[key] = self.resolver(yaml.ScalarNode, key, (True, False))
        return tag

    def flow(self, text: str, start: int, number: int, column: int, path: tuple):
        """The flow collection opening at text[start], which must close on this line; and the index after it."""
        self._enter(path)
        self.values[path] = _new_mark(Mark, (number, column + start))
        closing = "]" if text[start] == "[" else "}"
        at = _skip(text, start + 1)
        result: list | dict = [] if closing == "]" else {}
        if text.startswith(closing, at):
            return result, at + 1
        while True:
            if closing == "]":
                item_path = path + (len(result),)
            else:
                key_match = self.key(_FLOW_KEY, text, at, result)
                key = key_match.group(1)
                item_path = path + (key,)
                self.keys[item_path] = _new_mark(Mark, (number, column + at))
                at = key_match.end()
            if at < len(text) and (text[at] == "[" or text[at] == "{"):
                value, at = self.flow(text, at, number, column, item_path)
            else:
                value, at = self.scalar(text, at, number, column, item_path, _FLOW_PLAIN)
            if closing == "]":
                result.append(value)
            else:
                result[key] = value
            at = _skip(text, at)
            if text.startswith(closing, at):
                return result, at + 1
            if not text.startswith(",", at):
                raise Declined
            at = _skip(text, at + 1)
            if at == len(text) or text[at] in "]},":
                raise Declined  # a trailing comma, an empty entry: libyaml decides


def _skip(text: str, at: int) -> int:
    while at < len(text) and text[at] == " ":
        at += 1
    return at


_UNMADE = object()
