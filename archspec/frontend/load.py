"""Stage 1: read YAML safely into plain data, remembering where every node came from."""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..core.errors import (
    BAD_VALUE,
    LIMIT,
    YAML_DOCUMENTS,
    YAML_DUPLICATE_KEY,
    YAML_SYNTAX,
    YAML_TAG,
    Diagnostic,
    Location,
    SpecError,
    UsageError,
    printable,
    shorten,
    show_value,
)
from ..core.limits import current, ensure_stack, how_to_raise, show_size

try:
    _Loader = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml
    _Loader = yaml.SafeLoader

_PLAIN_TAGS = {f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null")}
_STR = "tag:yaml.org,2002:str"
_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"

YamlPath = tuple  # keys and indices from the document root


@dataclass
class Document:
    """A loaded spec: plain Python data plus the source position of every node."""

    path: str
    data: object
    values: dict[YamlPath, yaml.Mark] = field(default_factory=dict)  # where every value starts (0-based)
    keys: dict[YamlPath, yaml.Mark] = field(default_factory=dict)  # where every mapping key starts

    def locate(self, path: YamlPath, *, key: bool = False) -> Location:
        """The position of `path`, or of its nearest ancestor the file has."""
        if not self.values:  # data given as such (a dict to analyze()): every path is the document's
            return Location(self.path, 1, 1)
        path = tuple(path)
        while path:
            found = (self.keys if key else self.values).get(path) or self.values.get(path)
            if found:
                return _location(self.path, found)
            path = path[:-1]
        found = self.values.get(())
        return _location(self.path, found) if found else Location(self.path, 1, 1)


class UnreadableFile(UsageError):
    """A spec path that names no regular file archspec can read (missing, a directory, a FIFO, a
    device, a name the system refuses). The CLI's usage error for its argument (exit 2); for an
    `extends:`, expand reports it at that line."""

    def __init__(self, path: str, problem: str, missing: bool = False):
        super().__init__(problem)
        self.path, self.missing = path, missing


_KINDS = {  # what a path names instead of a regular file
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def load_file(path: str | Path) -> Document:
    """The spec at `path`: a regular file no larger than limit spec_bytes, read without ever blocking
    (a FIFO or a device is refused, not opened for reading). UnreadableFile (a UsageError) when the
    path names nothing readable; SpecError, located at the file, when what it holds is no spec."""
    data = read_spec_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = Location(str(path), 1, 1)
        raise SpecError([Diagnostic(f"the file is not UTF-8 text (byte {exc.start})", YAML_SYNTAX, where)]) from None
    return load_text(text, str(path))


def read_spec_bytes(path: str | Path) -> bytes:
    name = os.fspath(path)
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    if "\0" in name:
        raise UnreadableFile(name, f"cannot read {printable(name)}: a path cannot hold a NUL byte")
    try:
        _regular(name, os.stat(name))  # before opening: a device is never opened at all
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise _unreadable(name, exc) from None
    try:
        info = os.fstat(fd)  # what was opened, should the path have changed since the stat
        _regular(name, info)
        limit = current().spec_bytes
        if info.st_size > limit:
            _too_large(name, info.st_size)
        chunks, size = [], 0
        while size <= limit:  # at most limit + 1 bytes, should the file grow while it is read
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            _too_large(name, size)
        return b"".join(chunks)
    except OSError as exc:
        raise _unreadable(name, exc) from None
    finally:
        os.close(fd)


def _regular(name: str, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
        raise UnreadableFile(name, f"{printable(name)} is {kind}, not a spec file")


def _unreadable(name: str, exc: OSError) -> UnreadableFile:
    if exc.errno == errno.ENOENT:
        return UnreadableFile(name, f"no such file: {printable(name)}", missing=True)
    if exc.errno == errno.EISDIR:
        return UnreadableFile(name, f"{printable(name)} is a directory, not a spec file")
    return UnreadableFile(name, f"cannot read {printable(name)}: {exc.strerror or exc}")


def _too_large(name: str, size: int) -> None:
    message = f"the file is {show_size(size)}, more than a spec may be ({how_to_raise('spec_bytes')})"
    raise SpecError([Diagnostic(message, LIMIT, Location(name, 1, 1))])


def load_text(text: str, path: str = "<string>") -> Document:
    """`text` read through PyYAML's safe composer (libyaml's where PyYAML has it): any YAML, every
    error located. Text given as such (to analyze()) is bounded by limit spec_bytes as a file is."""
    limit = current().spec_bytes
    if len(text) > limit or len(text.encode("utf-8", "surrogatepass")) > limit:
        size = len(text.encode("utf-8", "surrogatepass"))
        message = f"the spec text is {show_size(size)}, more than a spec may be ({how_to_raise('spec_bytes')})"
        raise SpecError([Diagnostic(message, LIMIT, Location(path, 1, 1))])
    doc = Document(path, None)
    try:
        _check_nesting(text, path)
        nodes = []
        for node in yaml.compose_all(text, Loader=_Loader):
            nodes.append(node)
            if len(nodes) > 1:
                break  # one document too many is enough to say so
    except RecursionError:  # the pure-Python composer, without libyaml: its recursion, not ours
        message = "invalid YAML: nested too deep for the YAML reader"
        raise SpecError([Diagnostic(message, LIMIT, Location(path, 1, 1))]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = _location(path, mark) if mark else None
        problem = exc.problem or str(exc)
        if "maximum nesting depth" in problem:  # libyaml 0.2.6's own bound (1,000 levels), met before limit depth
            depth = current().depth
            message = f"nested more than {depth:,} deep ({how_to_raise('depth')})" if depth < 1_000 else ""
            message = f"the document is {message or 'nested deeper than the YAML reader goes'}"
            raise SpecError([Diagnostic(message, LIMIT, where)]) from None
        raise SpecError([Diagnostic(f"invalid YAML: {problem}", YAML_SYNTAX, where)]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Diagnostic(f"invalid YAML: {exc}", YAML_SYNTAX, Location(path, 1, 1))]) from None
    if len(nodes) != 1:
        where = _location(path, nodes[1].start_mark) if len(nodes) > 1 else Location(path, 1, 1)
        what = f"{len(nodes)} YAML documents" if nodes else "no YAML document"
        raise SpecError([Diagnostic(f"a spec is one YAML document; found {what}", YAML_DOCUMENTS, where)])
    if "&" in text and "*" in text:  # anchors and aliases, perhaps: count what they expand to before expanding anything
        _check_expansion(nodes[0], path)
    errors: list[Diagnostic] = []
    ensure_stack()
    try:
        doc.data = _Converter(doc, errors).convert(nodes[0], ())
    except RecursionError:  # only with limit depth raised past what Python's stack takes
        message = f"the document nests too deeply for Python's stack; lower the nesting or {how_to_raise('depth')}"
        raise SpecError([*errors, Diagnostic(message, LIMIT, Location(path, 1, 1))]) from None
    if errors:
        raise SpecError(errors)
    return doc


COMPOSABLE = 5_000  # nesting libyaml's composer takes: it recurses in C (at ~30,000 levels the stack overflows)
_SURELY_SHALLOW = 1_000  # a bound at most this: composing is safe, and the converter enforces limit depth


def _check_nesting(text: str, path: str) -> None:
    """Refuse nesting deeper than limit depth before composing, which recurses once per level.

    A cheap bound first: block collections nest at most one level per column of a line's indentation
    and `- `, `? `, `: ` indicators (two where a sequence sits at its key's indentation), flow
    collections one per bracket, or, in a text whose brackets surely are the YAML's, as deep as its
    brackets do. Only a text whose bound is still high is walked event by event, without recursion,
    before it is composed.
    """
    brackets = text.count("[") + text.count("{")
    lines = text.splitlines()
    if brackets + 2 * max(map(len, lines), default=0) + 4 <= _SURELY_SHALLOW:
        return
    flow = _flow_depth(text) if brackets else 0
    if flow + max((len(line) - len(line.lstrip(" \t-?:")) for line in lines), default=0) + 4 <= _SURELY_SHALLOW:
        return
    limit = min(current().depth + 1, COMPOSABLE)  # + 1: the converter counts a node's ancestors
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        kind = type(event)
        if kind is yaml.SequenceStartEvent or kind is yaml.MappingStartEvent:
            depth += 1
            if depth > limit:
                deeper = f"nested more than {limit - 1:,} deep ({how_to_raise('depth')})"
                if limit == COMPOSABLE:
                    deeper = f"nested more than {COMPOSABLE:,} deep, as deep as the YAML reader goes"
                where = _location(path, event.start_mark)
                raise SpecError([Diagnostic(f"the document is {deeper}", LIMIT, where)])
        elif kind is yaml.SequenceEndEvent or kind is yaml.MappingEndEvent:
            depth -= 1


_COMMENT = r"(?m)(?:^|[ \t])#.*"  # patterns compiled when first needed (by re's cache), not at import
_NOT_BRACKETS = r"[^][{}]+"


def _flow_depth(text: str) -> int:
    """At least as many flow collections ([...], {...}) as are open at once anywhere in `text`.

    Outside comments, a text with no quotes and no tags has no bracket that is not the YAML's, save
    in plain scalars outside flow collections (`a[b`, `c]`): there a closing bracket closes nothing
    (the count stays at least 0) and an opening one counts one too many, which only raises the
    bound. Any other text is bounded by its number of opening brackets."""
    code = re.sub(_COMMENT, "", text) if "#" in text else text
    if "'" in code or '"' in code or "!" in code:  # a bracket may be quoted, or part of a tag
        return text.count("[") + text.count("{")
    depth = deepest = 0
    for bracket in re.sub(_NOT_BRACKETS, "", code):
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif depth:
            depth -= 1
    return deepest


def _check_expansion(root, path: str) -> None:
    """Refuse a document whose aliases expand to more than limit yaml_nodes nodes (a "billion
    laughs": a few lines of anchors, each aliased four times in the next, make 10^8 nodes), from the
    composed graph, counting each distinct node once. Reported where the expansion concentrates:
    the deepest node whose expansion alone is over the limit."""
    limit = current().yaml_nodes
    sizes: dict[int, int] = {}
    stack = [(root, False)]
    while stack:  # post-order without recursion; a node on the way down counts 1 (an alias cycle)
        node, done = stack.pop()
        if done:
            sizes[id(node)] = min(1 + sum(sizes.get(id(child), 1) for child in _children(node)), limit + 1)
        elif id(node) not in sizes:
            sizes[id(node)] = 1
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node) if id(child) not in sizes)
    if sizes[id(root)] <= limit:
        return
    node = root
    while True:
        bigger = next((child for child in _children(node) if sizes.get(id(child), 1) > limit), None)
        if bigger is None or bigger is node:
            break
        node = bigger
    message = f"the document is more than {limit:,} nodes once aliases are expanded ({how_to_raise('yaml_nodes')})"
    raise SpecError([Diagnostic(message, LIMIT, _location(path, node.start_mark))])


def _children(node) -> list:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [item for pair in node.value for item in pair]
    return []


def _location(path: str, mark) -> Location:
    return Location(path, mark.line + 1, mark.column + 1)


class _Converter:
    """Turns composed nodes into dicts, lists and scalars; refuses every non-data tag."""

    def __init__(self, doc: Document, errors: list[Diagnostic]):
        self.doc = doc
        self.errors = errors
        self.scalars = yaml.SafeLoader("")  # only its scalar constructors are used
        self.active: set[int] = set()
        self.count = 0
        self.limits = current()

    def convert(self, node, path: YamlPath):
        self.doc.values[path] = node.start_mark
        self.count += 1
        if len(self.active) > self.limits.depth:
            limit = f"nested more than {self.limits.depth:,} deep ({how_to_raise('depth')})"
            raise SpecError([Diagnostic(f"the document is {limit}", LIMIT, self.doc.locate(path))])
        if self.count > self.limits.yaml_nodes:
            limit = f"more than {self.limits.yaml_nodes:,} nodes once aliases are expanded"
            limit += f" ({how_to_raise('yaml_nodes')})"
            raise SpecError([Diagnostic(f"the document is {limit}", LIMIT, self.doc.locate(path))])
        if id(node) in self.active:
            self._error(node, "a YAML alias refers to the node that contains it", YAML_SYNTAX)
            return None
        if isinstance(node, yaml.ScalarNode) and node.tag in _PLAIN_TAGS:
            return self._scalar(node)
        if isinstance(node, yaml.SequenceNode) and node.tag == "tag:yaml.org,2002:seq":
            self.active.add(id(node))
            items = [self.convert(item, path + (i,)) for i, item in enumerate(node.value)]
            self.active.discard(id(node))
            return items
        if isinstance(node, yaml.MappingNode) and node.tag == "tag:yaml.org,2002:map":
            self.active.add(id(node))
            mapping = self._mapping(node, path)
            self.active.discard(id(node))
            return mapping
        if node.tag == "tag:yaml.org,2002:timestamp":
            self._error(node, "YAML reads this unquoted date as a timestamp; put it in quotes", YAML_TAG)
        else:
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            self._error(node, f"the YAML tag {tag} is not allowed; a spec holds only plain data", YAML_TAG)
        return None

    def _mapping(self, node, path: YamlPath) -> dict:
        result: dict = {}
        for key_node, value_node in node.value:
            if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag == _STR):
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self._error(key_node, "YAML merge keys (<<) are not supported; write the fields out", YAML_TAG)
                else:
                    self._error(key_node, "mapping keys must be plain strings", YAML_TAG)
                continue
            key = key_node.value
            if key in result:
                first = self.doc.keys[path + (key,)]
                message = f'duplicate key "{key}" (first given at {first.line + 1}:{first.column + 1})'
                self._error(key_node, message, YAML_DUPLICATE_KEY)
                continue
            self.doc.keys[path + (key,)] = key_node.start_mark
            result[key] = self.convert(value_node, path + (key,))
        return result

    def _scalar(self, node):
        """A plain scalar's value, made by SafeLoader's constructor for its tag (not through
        construct_object, which also remembers every node it made, for aliases of collections)."""
        if node.tag == "tag:yaml.org,2002:int" and len(node.value) > self.limits.digits + 3:
            # (Python reads at most 4,300 digits)
            written = f"{node.value[:4]}...{node.value[-4:]} ({sum(c.isdigit() for c in node.value):,} digits)"
            message = f"the number {written} is longer than any spec needs; {how_to_raise('digits')}"
            self._error(node, message, LIMIT)
            return None
        value = self.scalars.yaml_constructors[node.tag](self.scalars, node)
        surprise = _yaml11_number(node.value, value) if node.tag in (_INT, _FLOAT) else None
        if surprise:
            self._error(node, surprise, YAML_TAG)
            return None
        return value

    def _error(self, node, message: str, code: str) -> None:
        self.errors.append(Diagnostic(message, code, _location(self.doc.path, node.start_mark)))


def _yaml11_number(written: str, value) -> str | None:
    """Why a number YAML 1.1 reads is not the one a person (and YAML 1.2) reads, if it is not: base 60
    (`1:30` is 90) and a leading zero (`010` is octal 8)."""
    plain = written.replace("_", "").lstrip("+-")
    if ":" in plain:
        how = "a base-60 number"
    elif len(plain) > 1 and plain[0] == "0" and plain.isdigit() and int(plain, 8) != int(plain):
        how = "an octal number"
    else:
        return None
    read = f"YAML 1.1 reads {shorten(written, 40)} as {how} ({show_value(value)})"
    return f"{read}; write the number you mean, or quote it"


def check_plain_data(doc: Document) -> None:
    """SpecError unless `doc.data` is a tree of plain data within limits: nested at most limit depth
    deep, with at most limit yaml_nodes nodes (shared ones counted each time), and holding no
    container inside itself. YAML's loader checks the same of a file; a dict given to analyze() is
    checked here, before anything walks it."""
    limits = current()
    containers = (dict, list, tuple)
    nodes, on_path = 1, set()
    # Only containers are pushed, each with its (key, parent entry): a path is spelled out only for
    # an error. A pushed id with depth 0 leaves that container.
    stack: list = [(doc.data, 1, None)]
    problem = limit = place = None
    while stack and problem is None:
        entry = stack.pop()
        node, depth, place = entry
        if depth == 0:
            on_path.discard(node)
        elif not isinstance(node, containers):
            pass  # a scalar spec: the stages after this one say what is wrong with it
        elif id(node) in on_path:
            problem = "holds itself (a container inside itself)"
        elif depth > limits.depth:
            problem, limit = f"nests more than {limits.depth:,} deep", "depth"
        else:
            on_path.add(id(node))
            stack.append((id(node), 0, None))
            for key, value in node.items() if isinstance(node, dict) else enumerate(node):
                nodes += 1
                if nodes > limits.yaml_nodes:
                    problem, limit, place = f"has more than {limits.yaml_nodes:,} values", "yaml_nodes", (key, entry)
                    break
                if isinstance(value, containers):
                    stack.append((value, depth + 1, (key, entry)))
    if problem:
        path = _spelled_path(place)
        at = ".".join(show_value(part) if isinstance(part, int) else shorten(str(part), 20) for part in path[:12])
        where = f" at {at}{' ...' if len(path) > 12 else ''}" if path else ""
        message = f"the spec data {problem}{where}" + (f"; {how_to_raise(limit)}" if limit else "")
        raise SpecError([Diagnostic(message, LIMIT if limit else BAD_VALUE, doc.locate(()))])


def _spelled_path(place) -> tuple:
    """The keys from the root down to a node, given its (key, parent entry) link."""
    path = []
    while place is not None:
        key, parent = place
        path.append(key)
        place = parent[2]
    return tuple(reversed(path))


# ---------------------------------------------------------------- expansion
