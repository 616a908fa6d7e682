"""The package's import graph: packages by role, each importing only those before it, and no cycle.

Read from the source with ``ast`` (nothing is imported). Imports inside functions count as much as
those at the top of a module; only those under ``if TYPE_CHECKING:`` are left out, since they
exist for annotations and never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "thyronet"

# Each package may import the ones before it (and the foundation modules), never one after it.
LAYERS = ("data", "models", "runs", "inference", "evaluation", "training", "federated", "apps")
FOUNDATION = {"thyronet", "thyronet.errors", "thyronet.io"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The thyronet modules that ``path`` imports (``from x import y`` counts y, not x, when y is a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking_only(node):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "thyronet")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] == "thyronet":
                submodules = {f"{base}.{alias.name}" for alias in node.names} & modules
                found.update(submodules)
                if len(submodules) < len(node.names):  # names from the module itself
                    found.add(base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    found.discard(name)
    return {m for m in found if m in modules}


def layer_of(module: str) -> int:
    if module in FOUNDATION:
        return -1
    if module == "thyronet.__main__":
        return len(LAYERS)
    package = module.split(".")[1]
    if package not in LAYERS:
        raise AssertionError(f"{module} is in no layer: put it in one of {', '.join(LAYERS)} or the foundation")
    return LAYERS.index(package)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(f) for f in files}
    return {module_name(f): imported_modules(f, modules) for f in files}


def test_every_module_belongs_to_a_layer(graph):
    for module in graph:
        layer_of(module)


def test_no_package_imports_one_that_comes_after_it(graph):
    backward = [f"{a} -> {b}" for a, targets in graph.items() for b in sorted(targets) if layer_of(b) > layer_of(a)]
    assert not backward, "backward imports (a package may import only those before it):\n" + "\n".join(backward)


def test_the_import_graph_has_no_cycle(graph):
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def walk(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := walk(target)):
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := walk(module)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_the_checker_sees_backward_and_lazy_imports(tmp_path):
    """The walker itself: an import inside a function counts, one under TYPE_CHECKING does not."""
    source = tmp_path / "mod.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from thyronet.apps import cli\n"
                      "def f():\n    from thyronet.training import train\n")
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path.parent
    try:
        found = imported_modules(source, {"thyronet.apps.cli", "thyronet.training.train", "thyronet.training"})
    finally:
        PACKAGE = saved
    assert found == {"thyronet.training.train"}
