"""The package's import graph: no cycles, and only the command line imports the command line.

Read from the source (ast), so imports inside functions count too: a cycle hidden in a lazy
import is still one module needing the other. Imports under ``if TYPE_CHECKING:`` do not run
and are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import fastmlp.kernels

import fastmlp

# fastmlp.kernels is installed from its own directory (kernels/, see pyproject.toml)
ROOTS = {"fastmlp": Path(fastmlp.__file__).parent,
         "fastmlp.kernels": Path(fastmlp.kernels.__file__).parent}


def _module_name(root: str, path: Path) -> str:
    parts = [root, *path.relative_to(ROOTS[root]).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(root, p): p for root, directory in ROOTS.items()
           for p in directory.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _nodes(tree: ast.AST):
    """Every node but those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if not (isinstance(child, ast.If) and _is_type_checking(child)):
                stack.append(child)


def _resolve(name: str) -> str | None:
    """The package module ``name`` stands for (a module, or the package it names); None when
    it is outside fastmlp."""
    while name and name not in MODULES:
        if "." not in name:
            return None
        name = name.rsplit(".", 1)[0]
    return name or None


def imports_of(module: str) -> set[str]:
    """The fastmlp modules that ``module`` imports."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in _nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # "from . import report" imports the module fastmlp.report, not just the package
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                     for alias in node.names]
        else:
            continue
        found.update(m for m in map(_resolve, names) if m is not None and m != module)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def test_the_graph_sees_the_package() -> None:
    assert {"fastmlp.train", "fastmlp.checkpoint", "fastmlp.cli", "fastmlp.runner"} <= set(GRAPH)
    assert "fastmlp.history" in GRAPH["fastmlp.checkpoint"]


def test_no_import_cycles() -> None:
    state: dict[str, str] = {}  # "open" while on the current path, "done" once explored

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for dep in sorted(GRAPH[module]):
            if state.get(dep) == "open":
                cycle = path[path.index(dep):] + [dep]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if dep not in state:
                visit(dep, [*path, dep])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


def test_only_the_command_line_imports_it() -> None:
    def is_cli(module: str) -> bool:
        return module == "fastmlp.cli" or module.startswith("fastmlp.cli.")

    offenders = {m: sorted(d for d in deps if is_cli(d)) for m, deps in GRAPH.items()
                 if not is_cli(m) and m != "fastmlp.__main__"}
    assert not {m: d for m, d in offenders.items() if d}
