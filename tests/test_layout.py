"""The apps import one way only: dashboard -> generation -> accounts -> billing -> config, and no
module hides a cycle behind an import inside a function."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ORDER = ["dashboard", "generation", "accounts", "billing", "config"]  # each may import those after it
# The composition root: the URLconf and the Celery app wire every app into the process.
WIRING = {"config/urls.py", "config/celery.py"}
# Imports deferred on purpose, not to dodge a cycle: Django's AppConfig.ready() (models are not
# ready at import time), and the worker's start-up hooks, imported while settings still load.
DEFERRED = {"accounts/apps.py", "billing/apps.py", "generation/apps.py", "dashboard/apps.py", "generation/worker.py"}


def modules(*, exempt=frozenset()):
    for app in ORDER:
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" not in path.parts and str(path.relative_to(ROOT)) not in exempt:
                yield app, path


def project_imports(tree):
    """(node, imported top-level app) for every import of one of our apps, with where it sits."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node, node.module.split(".")[0]


@pytest.mark.parametrize("app,path", list(modules(exempt=WIRING)),
                         ids=lambda value: str(value).replace(str(ROOT) + "/", ""))
def test_an_app_imports_only_the_apps_below_it(app, path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    allowed = set(ORDER[ORDER.index(app):])
    upward = sorted({target for _, target in project_imports(tree) if target in ORDER and target not in allowed})
    assert not upward, f"{path.relative_to(ROOT)} imports {upward}, above {app}"


@pytest.mark.parametrize("app,path", list(modules(exempt=WIRING | DEFERRED)),
                         ids=lambda value: str(value).replace(str(ROOT) + "/", ""))
def test_no_project_import_hides_inside_a_function(app, path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    hidden = []
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(function):
                if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").split(".")[0] in ORDER):
                    hidden.append(f"line {node.lineno}: from {'.' * node.level}{node.module or ''}")
                elif isinstance(node, ast.Import) and any(a.name.split(".")[0] in ORDER for a in node.names):
                    hidden.append(f"line {node.lineno}: import {node.names[0].name}")
    assert not hidden, f"{path.relative_to(ROOT)}: {hidden}"
