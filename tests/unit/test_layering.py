"""The layering rule: use cases (shared/services), the domain and the ports never import a Google
client; only adapters (shared/adapters) and the composition root do. Imports are read with ``ast``,
so a module that would fail to import still gets checked, and a mention in a docstring does not count."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
LAYERS = ("services", "domain", "ports")
FORBIDDEN = ("google.cloud", "google.api_core", "google.auth", "google.oauth2")  # google-auth: the caller check


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


REPO = SHARED.parent
PACKAGES = ("shared", "functions", "ops", "tools", "infra")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _project_imports(path: Path, known: set[str]) -> set[str]:
    """Project modules ``path`` imports, at any depth (imports inside functions count too)."""
    found = set()
    for module in imported_modules(path.read_text()):
        while module and module not in known:
            module = module.rpartition(".")[0]
        if module:
            found.add(module)
    return found


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in sorted(graph.get(node, ())):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_the_cycle_check_finds_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    files = [p for package in PACKAGES for p in (REPO / package).rglob("*.py")]
    known = {_module_name(p) for p in files}
    # A package's __init__ runs with any of its modules: importing it from inside is no cycle.
    graph = {_module_name(p): {d for d in _project_imports(p, known) if not _module_name(p).startswith(d + ".")}
             - {_module_name(p)} for p in files}
    assert find_cycles(graph) == []


def test_the_composition_root_does_not_share_adapters_across_secrets():
    from pydantic import SecretStr

    from shared import bootstrap
    from shared.config import Settings

    one = Settings(nik_hash_key=SecretStr("key-one"), environment="local")
    other = Settings(nik_hash_key=SecretStr("key-two"), environment="local")
    assert bootstrap._settings_key(one) != bootstrap._settings_key(other)
    assert bootstrap._settings_key(one) == bootstrap._settings_key(Settings(nik_hash_key=SecretStr("key-one"),
                                                                            environment="local"))
