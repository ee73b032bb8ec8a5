"""Architecture rules, checked on the source: core imports neither Flask nor Celery, and no
service package imports the development tools (the Stripe sandbox, devstack, tests)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imports_of(package: str) -> dict[str, set[str]]:
    found = {}
    for path in (ROOT / package).rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize("package", ["core", "web", "worker"])
def test_services_never_import_development_tools(package):
    for path, names in imports_of(package).items():
        assert not names & {"sandbox", "devstack", "tests", "bench"}, path


def test_core_imports_neither_flask_nor_celery():
    for path, names in imports_of("core").items():
        assert not names & {"flask", "celery", "werkzeug", "kombu", "web", "worker"}, path
