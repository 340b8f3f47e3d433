"""The actor layer is a strict layering: no import circle among its modules, counting every
import (those under ``if TYPE_CHECKING:`` and inside functions too), and it knows nothing of
dspex's upper floors."""

from __future__ import annotations

import ast
from pathlib import Path

import dspex.actors

PACKAGE = "dspex.actors"
FOLDER = Path(dspex.actors.__file__).parent


def _module_name(path: Path) -> str:
    return PACKAGE if path.name == "__init__.py" else f"{PACKAGE}.{path.stem}"


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, wherever the import statement is; ``from pkg import x``
    counts as importing ``pkg.x`` when ``x`` is a module of the actor layer."""
    modules = {_module_name(p) for p in FOLDER.glob("*.py")}
    here = _module_name(path)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package of `here`
                parts = (here if path.name == "__init__.py" else here.rpartition(".")[0]).split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules)
    return found


def _graph() -> dict[str, set[str]]:
    """The actor layer's modules -> the modules of the layer each imports."""
    files = {_module_name(p): p for p in sorted(FOLDER.glob("*.py"))}
    return {name: _imports(path) & set(files) - {name} for name, path in files.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` as [a, b, ..., a], or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for target in sorted(graph.get(node, ())):
            found = visit(target)
            if found is not None:
                return found
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        found = visit(start)
        if found is not None:
            return found
    return None


def test_the_cycle_finder_finds_a_circle_and_names_it() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_imports_under_type_checking_and_in_functions(tmp_path: Path) -> None:
    source = tmp_path / "sample.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from dspex.actors._node import Node\n"
        "def f():\n"
        "    import dspex.actors._actor\n"
        "    from dspex.actors import _process\n"
    )
    assert {"dspex.actors._node", "dspex.actors._actor", "dspex.actors._process"} <= _imports(
        source
    )


def test_no_import_circle_in_the_actor_layer() -> None:
    graph = _graph()
    assert len(graph) >= 5  # the package and its modules were found
    cycle = _cycle(graph)
    assert cycle is None, "import circle in dspex/actors: " + " -> ".join(cycle or ())


def test_the_actor_layer_imports_nothing_of_dspex_but_its_errors() -> None:
    outside = {
        (name, imported)
        for name, path in ((_module_name(p), p) for p in FOLDER.glob("*.py"))
        for imported in _imports(path)
        if (imported == "dspex" or imported.startswith("dspex."))
        and not imported.startswith(f"{PACKAGE}.")
        and imported not in (PACKAGE, "dspex.errors")
    }
    assert not outside, f"dspex/actors imports upper floors of dspex: {sorted(outside)}"
