"""No module of the maintenance or serialization packages imports a module that imports it.

Imports inside functions count (a lazy import is still a circle, only hidden); imports
under ``if TYPE_CHECKING:`` do not (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "cas_repo"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _imported(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> set[str]:
    if isinstance(node, ast.Import):
        return {a.name for a in node.names}
    base = module if is_package else module.rsplit(".", 1)[0]
    for _ in range(node.level - 1):
        base = base.rsplit(".", 1)[0]
    target = (f"{base}.{node.module}" if node.module else base) if node.level else (node.module or "")
    # `from . import x` imports the submodule x; `from .m import name` imports m.
    return {target} | {f"{target}.{a.name}" for a in node.names}


def _graph(package: str) -> dict[str, set[str]]:
    files = {_module_name(p): p for p in (PACKAGE_ROOT.parent / package.replace(".", "/")).rglob("*.py")}
    return {m: {t for node in _runtime_imports(ast.parse(p.read_text(encoding="utf-8")))
                for t in _imported(m, p.name == "__init__.py", node)
                if t in files and t != m and not m.startswith(f"{t}.")}  # a module's own package: not a circle
            for m, p in files.items()}


@pytest.mark.parametrize("package", ["cas_repo.maintenance", "cas_repo.serialization"])
def test_no_two_modules_import_each_other(package):
    graph = _graph(package)
    circles = sorted((a, b) for a, targets in graph.items() for b in targets if a < b and a in graph.get(b, ()))
    assert circles == []
