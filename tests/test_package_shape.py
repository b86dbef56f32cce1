"""The package's shape: no import cycle (counting imports inside functions), small modules, few local imports."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "meal_lite"
# Imports inside functions are for optional dependencies, and for the CLI, whose start-up they keep fast.
OPTIONAL = {"safetensors.torch", "IPython", "IPython.display"}
MAX_MODULE_LINES = 450
MAX_DEFINITION_LINES = 150


def modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """meal_lite modules that ``name`` imports anywhere in its source (top level or inside functions)."""
    package = name.split(".")[:-1] if not path.name == "__init__.py" else name.split(".")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            module = ".".join(x for x in (base, node.module or "") if x)
            for target in [module] + [f"{module}.{alias.name}" for alias in node.names]:
                if target in known and target != name and not target.endswith("__init__"):
                    found.add(target)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known and alias.name != name}
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if not state.get(nxt):
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if not state.get(node):
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_has_no_import_cycle():
    mods = modules()
    graph = {name: imported_modules(name, path, set(mods)) for name, path in mods.items()}
    assert graph["meal_lite.run"] >= {"meal_lite.trainer", "meal_lite.objective"}  # the reader sees real edges
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_imports_inside_functions_are_only_for_optional_dependencies_and_the_cli():
    offenders = []
    for name, path in modules().items():
        if name == "meal_lite.cli":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ImportFrom) and (inner.level or inner.module not in OPTIONAL):
                        offenders.append(f"{name}:{inner.lineno} from {'.' * inner.level}{inner.module}")
                    elif isinstance(inner, ast.Import):
                        offenders += [f"{name}:{inner.lineno} import {a.name}" for a in inner.names if a.name not in OPTIONAL]
    assert not offenders, offenders


def test_modules_and_definitions_stay_small():
    too_long = []
    for name, path in modules().items():
        lines = path.read_text().count("\n")
        if lines > MAX_MODULE_LINES:
            too_long.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                size = node.end_lineno - node.lineno + 1
                if size > MAX_DEFINITION_LINES:
                    too_long.append(f"{name}.{node.name}: {size} lines")
    assert not too_long, too_long
