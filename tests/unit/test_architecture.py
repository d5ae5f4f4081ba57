"""Dependency direction (README.md, Layout): core imports none of api, workers, connectors;
connectors import only core's records, errors and types."""

import ast
import inspect
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@cache
def text_of(path: Path) -> str:
    return path.read_text()


@cache
def syntax(text: str, filename: str) -> tuple[ast.Module, tuple[ast.AST, ...]]:
    """The tree of a module's source and all its nodes (ast.walk's order), parsed and walked
    once per test process: the rules below read the same few hundred files."""
    tree = ast.parse(text, filename=filename)
    return tree, tuple(ast.walk(tree))


def nodes(path: Path) -> tuple[ast.AST, ...]:
    return syntax(text_of(path), str(path))[1]


@pytest.fixture(autouse=True, scope="module")
def parsed_once() -> Iterator[None]:
    """The parsed files are kept while this module's tests run (about 100 MB), not after."""
    yield
    for cached in (text_of, syntax, imported_modules):
        cached.cache_clear()


@cache
def imported_modules(package: str) -> frozenset[tuple[str, str]]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in nodes(path):
            if isinstance(node, ast.Import):
                found |= {(str(path.relative_to(ROOT)), a.name) for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add((str(path.relative_to(ROOT)), node.module))
    return frozenset(found)


@pytest.mark.parametrize("forbidden", ["api", "cli", "workers", "connectors", "fastapi", "arq"])
def test_core_imports_none_of_the_outer_layers(forbidden):
    offenders = [(f, m) for f, m in imported_modules("core")
                 if m == forbidden or m.startswith(forbidden + ".")]
    assert offenders == []


def test_connectors_use_only_core_records_errors_and_types():
    allowed = {"core.records", "core.errors", "core.types"}
    offenders = [(f, m) for f, m in imported_modules("connectors")
                 if (m == "core" or m.startswith("core.")) and m not in allowed]
    offenders += [(f, m) for f, m in imported_modules("connectors")
                  if m.split(".")[0] in ("api", "cli", "workers")]
    assert offenders == []


def test_only_connectors_http_builds_async_clients():
    offenders = []
    for package in ("api", "cli", "core", "connectors", "workers"):
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "http.py" and path.parent.name == "connectors":
                continue
            if "AsyncClient(" in text_of(path):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


# -- no module outside connectors/<provider>/ names a provider (docs/connectors.md) ---------

NEUTRAL = ("api", "cli", "core", "workers", "connectors/sandbox")
"""Packages that must work for any registered connector; plus connectors/*.py."""


def neutral_modules() -> list[Path]:
    paths = [p for package in NEUTRAL for p in (ROOT / package).rglob("*.py")]
    return sorted(paths + list((ROOT / "connectors").glob("*.py")))


def repository_providers() -> list[str]:
    """Registered providers whose package is in this repository. A connector installed
    from elsewhere is not ours to keep apart: its name may be any word (the kit's
    synthetic company is "Acme Demo Inc.")."""
    from connectors.registry import get_connector, providers

    return [p for p in providers()
            if Path(inspect.getfile(get_connector(p))).is_relative_to(ROOT)]


def docstrings(walked: tuple[ast.AST, ...]) -> set[int]:
    """ids of the strings that are statements of their own: docstrings of modules, classes
    and functions, and attribute docstrings (a string under an assignment). They document;
    no code can read them."""
    return {id(node.value) for node in walked
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)}


def provider_mentions(source: str, filename: str, names: list[str]) -> list[str]:
    """Imports of a provider's package and string literals naming a provider (a whole word,
    any case; f-string parts included). Docstrings and comments may cite a vendor."""
    _, walked = syntax(source, filename)
    skip = docstrings(walked)
    words = re.compile(r"(?i)(?<![A-Za-z0-9])(" + "|".join(map(re.escape, names)) +
                       r")(?![A-Za-z0-9])")
    found = []
    for node in walked:
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [f"{node.module or ''}.{a.name}" for a in node.names]
        for module in modules:
            if set(module.split(".")) & set(names):
                found.append(f"line {node.lineno}: import {module}")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in skip and words.search(node.value):
            found.append(f"line {node.lineno}: {node.value[:60]!r}")
    return found


def test_no_module_outside_a_providers_package_names_a_provider():
    names = repository_providers()
    assert names  # the rule means something only with providers registered
    offenders = {}
    for path in neutral_modules():
        mentions = provider_mentions(text_of(path), str(path), names)
        if mentions:
            offenders[str(path.relative_to(ROOT))] = mentions
    assert offenders == {}


def test_no_neutral_module_is_named_after_a_provider():
    """A provider's files live in its package (connectors/<provider>/, its sandbox in
    connectors/<provider>/sandbox/), never in the neutral ones."""
    named = [str(p.relative_to(ROOT)) for p in neutral_modules()
             if set(re.split(r"[_.]", p.name)) & set(repository_providers())]
    assert named == []


@pytest.mark.parametrize("source, expected", [
    ("from connectors.acme import sandbox\n", ["line 1: import connectors.acme.sandbox"]),
    ("from connectors import acme\n", ["line 1: import connectors.acme"]),
    ("import connectors.acme.auth as a\n", ["line 1: import connectors.acme.auth"]),
    ("X = {'provider': 'acme'}\n", ["line 1: 'acme'"]),
    ("def f(p):\n    return f'/webhooks/Acme/{p}'\n", ["line 2: '/webhooks/Acme/'"]),
    ('"""Acme CRM: docs may cite a vendor."""\n# so may comments: acme\nX = "acmesync"\n', []),
    ("def f():\n    'Acme, in a docstring.'\n    return 'tacme acmesync'\n", []),
    ("class C:\n    x = 1\n    'Acme, documenting x.'\n    y = 'acme_goals'\n",
     ["line 4: 'acme_goals'"]),
])
def test_the_provider_rule_catches_imports_and_literals(source, expected):
    assert provider_mentions(source, "example.py", ["acme"]) == expected


# -- no import cycles, no imports hidden in functions ------------------------------------------

PACKAGES = ("api", "cli", "core", "connectors", "workers")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def first_party_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES if (ROOT / package).is_dir()
            for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts}


def import_graph() -> dict[str, set[str]]:
    """Module -> the first-party modules it imports (at any depth in the file; `from a
    import b` counts as importing a.b when that is a module, else a)."""
    modules = first_party_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for node in nodes(path):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                           else node.module for a in node.names]
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


IMPORTS_AT_MODULE_LEVEL = PACKAGES
"""Packages whose modules import first-party modules only at module level, where a cycle
shows at once (migrations are not in the import graph: they run once, by Alembic)."""
HIDDEN_IMPORTS_ALLOWED: dict[str, str] = {}
"""Module -> why it imports a first-party module inside a function or block."""


def hidden_imports(source: str, filename: str) -> list[str]:
    """First-party imports below the module level (in a function, class or block), except
    in a module-level `if TYPE_CHECKING:` block."""
    tree, walked = syntax(source, filename)
    top = {id(node) for node in tree.body}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING",
                                                                   "typing.TYPE_CHECKING"):
            top |= {id(n) for n in ast.walk(node)}
    found = []
    for node in walked:
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = ["." * node.level + (node.module or "")]
        else:
            continue
        if id(node) not in top:
            found += [f"line {node.lineno}: {m}" for m in modules
                      if m.startswith(".") or m.split(".")[0] in PACKAGES]
    return found


def test_first_party_imports_are_at_module_level():
    offenders = {}
    for name, path in first_party_modules().items():
        if name.split(".")[0] in IMPORTS_AT_MODULE_LEVEL and name not in HIDDEN_IMPORTS_ALLOWED:
            found = hidden_imports(text_of(path), str(path))
            if found:
                offenders[name] = found
    assert offenders == {}


@pytest.mark.parametrize("source, expected", [
    ("import json\nfrom core import db\nimport workers.jobs as jobs\n", []),
    ("def f():\n    from core.db import upgrade\n    import json\n", ["line 2: core.db"]),
    ("async def f():\n    import cli.output\n", ["line 2: cli.output"]),
    ("class C:\n    from . import sibling\n", ["line 2: ."]),
    ("try:\n    import api.app\nexcept ImportError:\n    pass\n", ["line 2: api.app"]),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from core.db import Engine\n", []),
    ("def f():\n    import uvicorn\n", []),
])
def test_the_hidden_import_rule_catches_imports_below_the_module_level(source, expected):
    assert hidden_imports(source, "example.py") == expected
