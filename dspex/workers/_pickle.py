"""Pickling what goes to the dspy workers: cloudpickle, with the source of functions kept.

cloudpickle sends a function that is not importable (a closure, a lambda, one defined in a
test or a notebook) by value, and names its code ``<dynamic-code>``: in the worker it runs,
but ``inspect.getsource`` fails, and DSPy reads sources (``dspy.Refine`` sends its reward
function's source to the LM). So such a function travels with its source, and the worker
registers that source with :mod:`linecache` under a name of its own, where ``inspect`` finds
it: DSPy in a worker sees the function as DSPy in the service would.
"""

from __future__ import annotations

import inspect
import io
import itertools
import linecache
import types
from typing import Any

import cloudpickle

_names = itertools.count(1)


def dumps(obj: Any) -> bytes:
    """``obj`` pickled for a worker (raises what pickling raises)."""
    out = io.BytesIO()
    _Pickler(out).dump(obj)
    return out.getvalue()


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
    def __init__(self, file: io.BytesIO):
        super().__init__(file)
        self._wrapping: set[int] = set()

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, types.FunctionType) and id(obj) not in self._wrapping and _by_value(obj):
            try:
                lines, _ = inspect.getsourcelines(obj)
            except (OSError, TypeError):
                return super().reducer_override(obj)
            self._wrapping.add(id(obj))
            return _with_source, (obj, "".join(lines))
        return super().reducer_override(obj)


def _by_value(fn: types.FunctionType) -> bool:
    """Whether cloudpickle sends ``fn`` by value (it cannot be imported by its name)."""
    module = getattr(fn, "__module__", None)
    if module is None or module == "__main__" or "<locals>" in fn.__qualname__:
        return True
    try:
        found: Any = __import__(module, fromlist=["_"])
        for part in fn.__qualname__.split("."):
            found = getattr(found, part)
    except Exception:
        return True
    return found is not fn


def _with_source(fn: types.FunctionType, source: str) -> types.FunctionType:
    """In the worker: ``fn`` with its code named after ``source``, registered in linecache."""
    name = f"<dspex-source-{next(_names)}>"
    lines = source.splitlines(keepends=True)
    linecache.cache[name] = (len(source), None, lines, name)
    fn.__code__ = fn.__code__.replace(co_filename=name, co_firstlineno=1)
    return fn
