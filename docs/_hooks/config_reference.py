"""MkDocs hook: the configuration reference, generated from dspex's code so it cannot drift.

``docs/configuration.md`` holds the marker ``<!-- config-reference -->``; this hook replaces it
with a table per configuration struct: every setting's key, its ``DSPEX_*`` variable, its
default and its description. Keys, variables and defaults come from ``dspex.config`` itself;
descriptions are the attribute docstrings under each field in ``dspex/config.py``.
"""

from __future__ import annotations

import ast
import inspect
from typing import Any

import msgspec

from dspex import config as config_module

MARKER = "<!-- config-reference -->"


def field_docs() -> dict[str, dict[str, str]]:
    """Struct name -> field name -> the docstring written under the field."""
    tree = ast.parse(inspect.getsource(config_module))
    out: dict[str, dict[str, str]] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        docs = out.setdefault(node.name, {})
        for field, doc in zip(node.body, node.body[1:], strict=False):
            if (
                isinstance(field, ast.AnnAssign)
                and isinstance(field.target, ast.Name)
                and isinstance(doc, ast.Expr)
                and isinstance(doc.value, ast.Constant)
                and isinstance(doc.value.value, str)
            ):
                docs[field.target.id] = " ".join(doc.value.value.split())
    return out


def _default(info: msgspec.structs.FieldInfo) -> str:
    if info.default_factory is config_module.cores:
        return "the cores (at least 1)"
    if info.default_factory is not msgspec.NODEFAULT:
        value = info.default_factory()
    else:
        value = info.default
    if isinstance(value, msgspec.Struct):
        return f"`{type(value).__name__}()`"
    return f"`{value!r}`"


def _table(kind: type[msgspec.Struct], prefix: str, env: dict[tuple[str, str], str]) -> str:
    docs = field_docs()[kind.__name__]
    rows = ["| setting, variable | default | what it does |", "| --- | --- | --- |"]
    for info in msgspec.structs.fields(kind):
        if info.name not in docs:
            raise ValueError(f"{kind.__name__}.{info.name} has no docstring in dspex/config.py")
        key = f"{prefix}.{info.name}" if prefix else info.name
        variable = env.get((prefix, info.name)) or env.get((info.name, ""))
        shown = f"`{variable}`" if variable else "(a key of the JSON object)"
        description = docs[info.name].replace("|", "\\|")
        rows.append(f"| `{key}`<br>{shown} | {_default(info)} | {description} |")
    return "\n".join(rows)


def reference() -> str:
    """The Markdown of every setting, grouped as ``Config`` nests them."""
    c = config_module
    env = {(key, sub): variable for variable, (key, sub) in c.VARIABLES.items()}
    nested: dict[tuple[str, str], str] = {(k, s): v for (k, s), v in env.items() if s}
    top = {(k, ""): v for (k, s), v in env.items() if not s}
    top.update({(k, ""): f"DSPEX_{k.upper()}_*" for k, _ in nested})
    types = ", ".join(f"`{name}`" for name in c.MODULE_TYPES)
    other = "\n".join(f"| `{name}` | {doc} |" for name, doc in c.OTHER_VARIABLES.items())
    return f"""## Config

{_table(c.Config, "", top)}

## adaptive: the `auto` policy

`Config(adaptive={{"explore_rate": 0.0}})`, or one variable per key.

{_table(c.AdaptiveConfig, "adaptive", nested)}

## circuit: the native circuit breaker

{_table(c.CircuitConfig, "circuit", nested)}

## workers: the dspy worker processes

`Config(dspy_workers=2, workers={{"max_requests": 10000}})`, or one variable per key.

{_table(c.WorkerConfig, "workers", nested)}

## cache: the LM response cache

`Config(cache={{"disk": "/var/cache/myapp/lm"}})`, or one variable per key; see
[The response cache](cache.md).

{_table(c.CacheConfig, "cache", nested)}

## RayWorkers: the dspy workers on Ray

`Config(dspy_workers=dspex.RayWorkers(num=8, address="ray://head:10001"))`; see
[Where DSPy runs](workers.md#on-ray).

{_table(c.RayWorkers, "RayWorkers", {})}

## rollout: a canary of native, per module type

`Config(rollout={{"ChainOfThought": {{"native_percent": 10}}}})`, or the same JSON object in
`DSPEX_ROLLOUT`.

{_table(c.Rollout, "rollout.<type>", {})}

## shadow: comparison on the other implementation, per module type

`Config(shadow={{"Predict": {{"rate": 0.1}}}})`, or the same JSON object in `DSPEX_SHADOW`.

{_table(c.Shadow, "shadow.<type>", {})}

## Names

- Module types: {types}. They may be written in snake_case as well (`chain_of_thought`,
  `best_of_n`, ...): case and underscores are ignored, and spans and metrics use the canonical
  names.
- Implementations: `native` and `dspy`; `python` is accepted for `dspy`, and `python_first` for
  `dspy_first`.

## Other variables

| variable | what it does |
| --- | --- |
{other}

`Config.from_env()` logs a warning (logger `dspex.config`) for every other `DSPEX_*` variable,
with the closest valid name: a typo never leaves a setting at its default in silence.
"""


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Replace the marker on the configuration page with the generated reference."""
    if page.file.src_uri != "configuration.md":
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"configuration.md lost its {MARKER} marker")
    return markdown.replace(MARKER, reference())
