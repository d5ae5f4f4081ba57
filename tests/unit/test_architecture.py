"""Dependency direction (README.md, Layout): core imports none of api, workers, connectors;
connectors import only core's records, errors and types."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(package: str) -> set[tuple[str, str]]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found |= {(str(path.relative_to(ROOT)), a.name) for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add((str(path.relative_to(ROOT)), node.module))
    return found


@pytest.mark.parametrize("forbidden", ["api", "workers", "connectors", "fastapi", "arq"])
def test_core_imports_none_of_the_outer_layers(forbidden):
    offenders = [(f, m) for f, m in imported_modules("core")
                 if m == forbidden or m.startswith(forbidden + ".")]
    assert offenders == []


def test_connectors_use_only_core_records_errors_and_types():
    allowed = {"core.records", "core.errors", "core.types"}
    offenders = [(f, m) for f, m in imported_modules("connectors")
                 if (m == "core" or m.startswith("core.")) and m not in allowed]
    offenders += [(f, m) for f, m in imported_modules("connectors")
                  if m.split(".")[0] in ("api", "workers")]
    assert offenders == []


def test_only_connectors_http_builds_async_clients():
    offenders = []
    for package in ("api", "core", "connectors", "workers"):
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "http.py" and path.parent.name == "connectors":
                continue
            if "AsyncClient(" in path.read_text():
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
