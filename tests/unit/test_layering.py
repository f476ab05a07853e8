"""The layering rule: use cases (shared/services), the domain and the ports never import a Google
client; only adapters (shared/adapters) and the composition root do. Imports are read with ``ast``,
so a module that would fail to import still gets checked, and a mention in a docstring does not count."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
LAYERS = ("services", "domain", "ports")
FORBIDDEN = ("google.cloud", "google.api_core")


def imported_modules(source: str) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
            # ``from google import cloud`` imports google.cloud as well
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def forbidden(module: str) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in FORBIDDEN)


def test_the_check_sees_every_import_form():
    source = "import google.cloud.firestore\nfrom google import api_core\nif x:\n    from google.cloud import x\n"
    assert {m for m in imported_modules(source) if forbidden(m)} == {
        "google.cloud.firestore", "google.api_core", "google.cloud", "google.cloud.x"}
    assert not any(forbidden(m) for m in imported_modules('"""google.cloud"""\nimport googleapiclient\n'))


@pytest.mark.parametrize("layer", LAYERS)
def test_no_google_client_imports(layer):
    files = sorted((SHARED / layer).rglob("*.py"))
    assert files, f"no modules under shared/{layer}"
    offenders = {str(path.relative_to(SHARED.parent)): sorted(m for m in imported_modules(path.read_text())
                                                               if forbidden(m))
                 for path in files}
    assert {path: found for path, found in offenders.items() if found} == {}
