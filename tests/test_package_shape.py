"""The package's shape: layers that import downward only, no import cycle (counting imports inside
functions), small modules and definitions, and chapters that use the public API only."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import nbformat
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "meal_lite"
# Imports inside functions are for optional dependencies, and for the CLI, whose start-up they keep fast.
OPTIONAL = {"safetensors.torch", "IPython", "IPython.display"}
MAX_MODULE_LINES = 450
MAX_DEFINITION_LINES = 150  # a function
MAX_CLASS_LINES = 320  # a class owns several methods: the Trainer owns its step, epoch, checkpoint and resume
#: The subpackages from the bottom up: a module may import its own layer and the layers below, never above.
#: "base" is the package's top-level modules (errors, settings, files, network, checkpoint, lazy).
LAYERS = ("base", "config", "core", "data", "models", "training", "experiments", "book", "cli")
BOOK = PACKAGE.parent / "book"


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
    assert graph["meal_lite.training.assemble"] >= {"meal_lite.training.trainer", "meal_lite.core.objective"}  # the reader sees real edges
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
                if size > (MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_DEFINITION_LINES):
                    too_long.append(f"{name}.{node.name}: {size} lines")
    assert not too_long, too_long


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 2:
        return "cli" if parts[1] == "cli" else "base"
    return parts[1]


def test_every_module_sits_in_a_known_layer_and_imports_downward_only():
    mods = modules()
    upward = []
    for name, path in mods.items():
        assert layer(name) in LAYERS, f"{name} is in no layer of {LAYERS}"
        for dep in imported_modules(name, path, set(mods)):
            if LAYERS.index(layer(dep)) > LAYERS.index(layer(name)):
                upward.append(f"{name} -> {dep}")
    assert not upward, upward


def test_the_core_imports_nothing_but_config_choices_and_errors():
    mods = modules()
    outside = {
        dep
        for name, path in mods.items() if layer(name) == "core" and not name.endswith("__init__")  # __init__: the API map
        for dep in imported_modules(name, path, set(mods)) if layer(dep) != "core"
    }
    assert outside == {"meal_lite.config.choices", "meal_lite.errors"}


def test_the_layer_check_catches_an_upward_import():
    assert LAYERS.index(layer("meal_lite.training.trainer")) > LAYERS.index(layer("meal_lite.core.losses"))
    assert layer("meal_lite.errors") == "base" and layer("meal_lite.cli") == "cli"


def _public(module: str) -> set[str]:
    return set(importlib.import_module(module).__all__)


def chapter_problems(source: str) -> list[str]:
    """Private names, and meal_lite imports from outside the public API, in one chapter's code."""
    problems = []
    packages = {"meal_lite"} | {f"meal_lite.{sub}" for sub in LAYERS if sub not in ("base", "cli")}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "meal_lite":
            if node.module not in packages:
                problems.append(f"imports from {node.module}: use meal_lite or one of {sorted(packages)}")
                continue
            for alias in node.names:
                if alias.name not in _public(node.module):
                    problems.append(f"{alias.name} is not in {node.module}.__all__")
        elif isinstance(node, ast.Import):
            problems += [f"import {a.name}: import a public package" for a in node.names if a.name.startswith("meal_lite.") and a.name not in packages]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            problems.append(f"private attribute .{node.attr}")
        elif isinstance(node, ast.alias) and node.name.split(".")[-1].startswith("_"):
            problems.append(f"private name {node.name}")
    return problems


def test_the_chapter_check_catches_private_and_internal_names():
    assert chapter_problems("from meal_lite import Trainer\nfrom meal_lite.core import Objective") == []
    assert chapter_problems("from meal_lite.core.objective import Objective") != []
    assert chapter_problems("from meal_lite.core import NoSuchName") != []
    assert chapter_problems("ds._samples") != []
    assert chapter_problems("from torch.nn.modules.batchnorm import _BatchNorm") != []


@pytest.mark.parametrize("chapter", sorted(BOOK.glob("*.ipynb")), ids=lambda p: p.stem)
def test_chapters_use_the_public_api_only(chapter):
    cells = [c for c in nbformat.read(chapter, as_version=4).cells if c.cell_type == "code"]
    problems = []
    for cell in cells:
        # IPython magics and shell lines are not Python: each becomes a `pass` at its indentation
        lines = [
            line[: len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("%", "!")) else line
            for line in cell.source.splitlines()
        ]
        problems += chapter_problems("\n".join(lines))
    assert problems == []


def test_the_readme_layout_table_names_every_module():
    # The README's table of folders and modules is how a reader finds code: a module it omits is hidden.
    readme = (PACKAGE.parent / "README.md").read_text()
    rows = {line.split("|")[1].strip().strip("`/"): line.split("|")[2] for line in readme.splitlines()
            if line.startswith("| `") and line.split("|")[1].strip().strip("`/") in LAYERS}
    base_row = next(line for line in readme.splitlines() if line.startswith("| (base) |"))
    missing = []
    for name in modules():
        parts = name.split(".")[1:]
        if len(parts) == 2 and parts[1] != "__init__" and f"`{parts[1]}`" not in rows.get(parts[0], ""):
            missing.append(name)
        if len(parts) == 1 and parts[0] not in ("__init__", "cli") and f"`{parts[0]}`" not in base_row:
            missing.append(name)
    assert sorted(rows) == sorted(set(LAYERS) - {"base", "cli"}), f"README layout rows: {sorted(rows)}"
    assert not missing, f"the README's Layout table does not name {missing}: add each to its folder's row"
