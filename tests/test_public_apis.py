"""archspec uses its dependencies through their public APIs only.

A private module or name (one behind a leading underscore: pydantic's internal package, torch's
testing comparison module) moves in any minor release and takes main down with it: pydantic 2.14 did. This scans every Python
file of the package, tests, benchmarks and examples for an import of, or an attribute reached
through, another package's module whose path has a name behind a leading underscore.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("archspec", "tests", "benchmarks", "examples")
FILES = sorted(path for folder in FOLDERS for path in (ROOT / folder).rglob("*.py"))


def _private(name: str) -> bool:
    return any(part.startswith("_") and not (part.startswith("__") and part.endswith("__")) for part in name.split("."))


def _foreign(module: str) -> bool:
    """Whether `module` is a dependency's: not archspec's, its tests', or the standard library's
    (whose documented names include a few with an underscore: os._exit, sys._getframe)."""
    top = module.split(".")[0]
    return not module.startswith("archspec") and top not in _OWN_TEST_MODULES and top not in sys.stdlib_module_names


_OWN_TEST_MODULES = {path.stem for path in (ROOT / "tests").glob("*.py")}


def private_uses(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, dotted name) of every private name of another package that `tree` imports or reaches."""
    found, modules = [], {}  # local name -> the module (or module attribute) it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _foreign(alias.name):
                    top = alias.name.split(".")[0]
                    modules[alias.asname or top] = alias.name if alias.asname else top
                    if _private(alias.name):
                        found.append((node.lineno, alias.name))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and _foreign(node.module):
            for alias in node.names:
                dotted = f"{node.module}.{alias.name}"
                modules[alias.asname or alias.name] = dotted
                if _private(dotted):
                    found.append((node.lineno, dotted))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, inner = [node.attr], node.value
            while isinstance(inner, ast.Attribute):
                chain.append(inner.attr)
                inner = inner.value
            if isinstance(inner, ast.Name) and inner.id in modules:
                dotted = ".".join([modules[inner.id], *reversed(chain)])
                if _private(dotted) and not _private(modules[inner.id]):
                    found.append((node.lineno, dotted))
    return sorted(set(found))


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_no_private_api_of_a_dependency(path):
    uses = private_uses(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    assert not uses, "\n".join(f"{path.relative_to(ROOT)}:{line}: private API {name}" for line, name in uses)


def underscored(text: str) -> str:
    """The examples below write a leading underscore as `~`, so that this file, which a text search
    for private names reads too, names none itself."""
    return text.replace("~", "_")


@pytest.mark.parametrize(
    "source, name",
    [
        (underscored(source), underscored(name))
        for source, name in [
            ("from pydantic.~internal.~core_utils import get_type_ref", "pydantic.~internal.~core_utils.get_type_ref"),
            ("from torch.testing import ~comparison", "torch.testing.~comparison"),
            ("import pydantic.plugin.~loader", "pydantic.plugin.~loader"),
            ("import torch\ntorch.~dynamo.reset()", "torch.~dynamo"),
            ("import torch as t\nt.~utils.~rebuild_tensor_v2", "torch.~utils"),
            ("from torch import nn\nnn.modules.~functions", "torch.nn.modules.~functions"),
        ]
    ],
)
def test_the_scan_finds_each_form_of_private_use(source, name):
    assert any(found.startswith(name) for _, found in private_uses(ast.parse(source)))


@pytest.mark.parametrize(
    "source",
    [
        "import torch\ntorch.compiler.reset()",
        "from archspec import _private_of_our_own",
        "from pydantic import BaseModel\nBaseModel.__pydantic_core_schema__",
        "import collections\nx = collections.namedtuple('P', 'a')(1)._replace(a=2)",
        "import os\nos._exit(0)",
    ],
)
def test_the_scan_passes_public_uses(source):
    assert private_uses(ast.parse(source)) == []
