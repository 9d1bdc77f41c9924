"""The import graph, read from the source (ast): no circles, and imports point one way.

Every import counts, also those inside a function or under `if TYPE_CHECKING:`: a deferred import
hides a circle from Python, not from a reader. engine/load.py names the families by module path
(its registry, loaded with importlib); no module outside engine/families/ and engine/tools/ imports one.
"""
import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "page", "editor")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> dict[str, Path]:
    """Module name -> file, for every module of the packages and app.py (templates and builds left out)."""
    files = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py") if "node_modules" not in p.parts]
    return {module_name(p): p for p in [*files, ROOT / "app.py"]}


def imported(path: Path, name: str, modules: Iterable[str] = ()) -> set[str]:
    """The absolute names `path` (module `name`) imports, relative imports resolved; `from p import m`
    names the module p.m where `modules` holds one (else p: m is a name p defines)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    known = set(modules)
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            out |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}
    return out


def graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of this repository it imports."""
    return {name: {m for m in imported(path, name, modules) if m in modules and m != name}
            for name, path in modules.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        group.append(top)
                        if top == node:
                            break
                    if len(group) > 1:
                        found.append(sorted(group))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(edges[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def breaches(modules: dict[str, Path]) -> list[str]:
    """Imports that point the wrong way, as "module -> name" lines."""
    out = []
    for name, path in modules.items():
        for target in sorted(imported(path, name, modules)):
            top = target.split(".")[0]
            # Model-agnostic: engine/*.py, the service, the page, app.py; families and tools may name one.
            agnostic = not name.startswith(("engine.families", "engine.tools"))
            if agnostic and (target == "engine.families" or target.startswith("engine.families.")):
                out.append(f"{name} -> {target} (model-agnostic code names a model family)")
            if name.startswith("engine") and top in ("page", "editor", "app", "gradio", "sqlalchemy", "tree_sitter"):
                out.append(f"{name} -> {target} (the engine imports the product around it)")
            if name.startswith("editor") and top == "torch":
                out.append(f"{name} -> {target} (the editor holds no tensors)")
    return out


@pytest.fixture(scope="module")
def modules() -> dict[str, Path]:
    return sources()


def test_the_graph_covers_every_package(modules):
    assert {"engine.loop", "engine.families.llama", "engine.serve.service", "page.demo", "editor.history",
            "app"} <= set(modules)
    assert "engine.loop" in graph(modules)["engine.infill"]


def test_no_module_imports_one_that_imports_it(modules):
    assert circles(graph(modules)) == []


def test_imports_point_one_way(modules):
    assert breaches(modules) == []


def test_a_circle_and_an_upward_import_are_seen(tmp_path):
    """The checks themselves: a planted circle and planted wrong-way imports are reported."""
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    engine, editor = tmp_path / "engine", tmp_path / "editor"
    engine.mkdir()
    editor.mkdir()
    (engine / "core.py").write_text("from .families.llama import LlamaNet\nimport gradio\n")
    (editor / "text.py").write_text("def f():\n    import torch\n")
    planted = {"engine.core": engine / "core.py", "editor.text": editor / "text.py"}
    assert breaches(planted) == ["engine.core -> engine.families.llama (model-agnostic code names a model family)",
                                 "engine.core -> gradio (the engine imports the product around it)",
                                 "editor.text -> torch (the editor holds no tensors)"]
