"""Every dependency pyproject.toml declares is imported by dspex: none is declared and unused
(the architecture page says which part each serves)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
from pathlib import Path

import dspex

PACKAGE = Path(dspex.__file__).resolve().parent
#: Distribution name -> the module dspex imports it as.
MODULES = {
    "aiohttp": "aiohttp",
    "anyio": "anyio",
    "msgspec": "msgspec",
    "opentelemetry-api": "opentelemetry",
    "opentelemetry-sdk": "opentelemetry.sdk",
    "dspy": "dspy",
    "pydantic": "pydantic",
    "json-repair": "json_repair",
    "regex": "regex",
    "jsonschema": "jsonschema",
    "orjson": "orjson",
    "jiter": "jiter",
    "cloudpickle": "cloudpickle",
    "typer": "typer",
    "rich": "rich",
}


def _imported() -> set[str]:
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_every_declared_dependency_is_imported() -> None:
    # what pyproject.toml declares, as the installed metadata carries it (`make` reinstalls when
    # pyproject.toml changes); extras' requirements are left out
    declared = [r for r in importlib.metadata.requires("dspex") or () if "extra ==" not in r]
    names = [re.split(r"[<>=!~\[ ;]", spec, maxsplit=1)[0] for spec in declared]
    assert set(names) == set(MODULES), "map each new dependency to its module here"
    imported = _imported()
    unused = [
        name
        for name, module in MODULES.items()
        if not any(m == module or m.startswith(module + ".") for m in imported)
    ]
    assert unused == []
