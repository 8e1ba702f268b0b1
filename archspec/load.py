"""Stage 1: read YAML safely into plain data, remembering where every node came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import YAML_DOCUMENTS, YAML_DUPLICATE_KEY, YAML_SYNTAX, YAML_TAG, Diagnostic, Location, SpecError

try:
    _Loader = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml
    _Loader = yaml.SafeLoader

_PLAIN_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"

YamlPath = tuple  # keys and indices from the document root


@dataclass
class Document:
    """A loaded spec: plain Python data plus the source position of every node."""

    path: str
    data: object
    values: dict[YamlPath, Location] = field(default_factory=dict)
    keys: dict[YamlPath, Location] = field(default_factory=dict)

    def locate(self, path: YamlPath, *, key: bool = False) -> Location:
        """The position of `path`, or of its nearest ancestor the file has."""
        path = tuple(path)
        while path:
            found = (self.keys if key else self.values).get(path) or self.values.get(path)
            if found:
                return found
            path = path[:-1]
        return self.values.get((), Location(self.path, 1, 1))


MAX_DEPTH = 100  # nesting of YAML collections
MAX_NODES = 1_000_000  # after alias expansion: a "billion laughs" file stops here


def load_file(path: str | Path) -> Document:
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        where = Location(str(path), 1, 1)
        raise SpecError([Diagnostic(f"the file is not UTF-8 text (byte {exc.start})", YAML_SYNTAX, where)]) from None
    return load_text(text, str(path))


def load_text(text: str, path: str = "<string>") -> Document:
    doc = Document(path, None)
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = _location(path, mark) if mark else None
        problem = exc.problem or str(exc)
        raise SpecError([Diagnostic(f"invalid YAML: {problem}", YAML_SYNTAX, where)]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Diagnostic(f"invalid YAML: {exc}", YAML_SYNTAX, Location(path, 1, 1))]) from None
    if len(nodes) != 1:
        where = _location(path, nodes[1].start_mark) if len(nodes) > 1 else Location(path, 1, 1)
        what = f"{len(nodes)} YAML documents" if nodes else "no YAML document"
        raise SpecError([Diagnostic(f"a spec is one YAML document; found {what}", YAML_DOCUMENTS, where)])
    errors: list[Diagnostic] = []
    doc.data = _Converter(doc, errors).convert(nodes[0], ())
    if errors:
        raise SpecError(errors)
    return doc


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

    def convert(self, node, path: YamlPath):
        self.doc.values.setdefault(path, _location(self.doc.path, node.start_mark))
        self.count += 1
        if len(self.active) > MAX_DEPTH or self.count > MAX_NODES:
            limit = (
                f"nested more than {MAX_DEPTH} deep"
                if len(self.active) > MAX_DEPTH
                else (f"more than {MAX_NODES:,} nodes once aliases are expanded")
            )
            raise SpecError([Diagnostic(f"the document is {limit}", YAML_SYNTAX, self.doc.values[path])])
        if id(node) in self.active:
            self._error(node, "a YAML alias refers to the node that contains it", YAML_SYNTAX)
            return None
        if isinstance(node, yaml.ScalarNode) and node.tag in _PLAIN_TAGS:
            return self.scalars.construct_object(node, deep=True)
        if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ:
            self.active.add(id(node))
            items = [self.convert(item, path + (i,)) for i, item in enumerate(node.value)]
            self.active.discard(id(node))
            return items
        if isinstance(node, yaml.MappingNode) and node.tag == _MAP:
            self.active.add(id(node))
            result = self._mapping(node, path)
            self.active.discard(id(node))
            return result
        if node.tag == "tag:yaml.org,2002:timestamp":
            self._error(node, "YAML reads this unquoted date as a timestamp; put it in quotes", YAML_TAG)
        else:
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            self._error(node, f"the YAML tag {tag} is not allowed; a spec holds only plain data", YAML_TAG)
        return None

    def _mapping(self, node, path: YamlPath) -> dict:
        result: dict = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self._error(key_node, "YAML merge keys (<<) are not supported; write the fields out", YAML_TAG)
                continue
            if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag == "tag:yaml.org,2002:str"):
                self._error(key_node, "mapping keys must be plain strings", YAML_TAG)
                continue
            key = self.scalars.construct_object(key_node)
            if key in result:
                first = self.doc.keys[path + (key,)]
                message = f'duplicate key "{key}" (first given at {first.line}:{first.col})'
                self._error(key_node, message, YAML_DUPLICATE_KEY)
                continue
            self.doc.keys[path + (key,)] = _location(self.doc.path, key_node.start_mark)
            result[key] = self.convert(value_node, path + (key,))
        return result

    def _error(self, node, message: str, code: str) -> None:
        self.errors.append(Diagnostic(message, code, _location(self.doc.path, node.start_mark)))
