"""DSPy and LiteLLM, imported once per process, in a thread of their own.

Importing them takes seconds; two threads importing them at once can meet DSPy's import cycles
half-done (``cannot import name 'Adapter' from partially initialized module``). So every path
in dspex that needs them (the dspy backend, ``LM.to_dspy``, signature conversions, a signature
naming ``dspy.Image``, the router's warm-up) goes through this module: one
``concurrent.futures.Future`` shared by every event loop and thread; the import runs in the
``dspex-import`` thread, and the others wait on that future, never importing themselves. Code
that only needs to know whether a DSPy class is involved reads the finished modules
(:func:`imported_class`) and imports nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import importlib
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

_lock = threading.Lock()
_importing: concurrent.futures.Future[Any] | None = None
_freezing: concurrent.futures.Future[Any] | None = None
_dspy: Any = None
_frozen = False


def loaded(*, gc_freeze: bool = False) -> Any:
    """The dspy module once the shared import has finished (and, with ``gc_freeze``, the
    freeze after it), else None. Never imports and never waits."""
    return _dspy if _dspy is not None and (_frozen or not gc_freeze) else None


def warm(*, gc_freeze: bool) -> concurrent.futures.Future[Any]:
    """Start the shared import of dspy and LiteLLM, unless it has started already, and return
    its future (its result: the dspy module). Never blocks.

    With ``gc_freeze`` the future also covers what follows the import: a full collection, then
    ``gc.freeze()`` (see ``Config.gc_freeze``), once per process, in a thread of its own. A
    failed import is forgotten, so the next caller tries again."""
    global _importing, _freezing
    with _lock:
        importing = _importing
        if importing is None:
            # Offline by default: LiteLLM must not fetch its model cost map over the network.
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            importing = _importing = _in_thread(_import, "dspex-import")
        if not gc_freeze:
            return importing
        if _freezing is None:
            _freezing = _in_thread(lambda: _freeze(importing), "dspex-gc-freeze")
        return _freezing


async def import_dspy(*, gc_freeze: bool = True) -> Any:
    """The dspy module, importing it (and LiteLLM) on first use without blocking the event loop.

    Every caller, from any event loop or thread, waits on the same import: one that is
    cancelled (a call past its deadline) leaves it running for the next. Raises what the import
    raised (ImportError when DSPy is not installed)."""
    dspy = loaded(gc_freeze=gc_freeze)
    if dspy is not None:
        return dspy
    await asyncio.wrap_future(warm(gc_freeze=gc_freeze))
    return _dspy


def load_dspy() -> Any:
    """The dspy module for synchronous code: waits for the shared import (starting it if
    needed) and blocks the calling thread meanwhile. Raises what the import raised."""
    dspy = _dspy
    if dspy is not None:
        return dspy
    warm(gc_freeze=False).result()
    return _dspy


def imported_class(module: str, name: str) -> type | None:
    """The class ``name`` of ``module`` if that module has got as far as defining it, else None.

    A value can only be an instance (or subclass) of a class that exists, so this answers
    "is this a DSPy object?" without importing DSPy or touching a module half imported."""
    cls = getattr(sys.modules.get(module), name, None)
    return cls if isinstance(cls, type) else None


def _in_thread(fn: Callable[[], Any], name: str) -> concurrent.futures.Future[Any]:
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    future.set_running_or_notify_cancel()  # so a waiter's cancel() cannot cancel it

    def run() -> None:
        global _importing, _freezing
        try:
            result = fn()
        except BaseException as exc:
            with _lock:  # forget it: the next caller tries again
                if _importing is future:
                    _importing = None
                if _freezing is future:
                    _freezing = None
            future.set_exception(exc)
        else:
            future.set_result(result)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def _import() -> Any:
    global _dspy
    dspy = importlib.import_module("dspy")
    # DSPy imports LiteLLM on its first LM call, which would block the event loop for seconds;
    # its own error says what to install if LiteLLM is missing.
    with contextlib.suppress(ImportError):
        importlib.import_module("litellm")
    _dspy = dspy
    return dspy


def _freeze(importing: concurrent.futures.Future[Any]) -> Any:
    global _frozen
    dspy = importing.result()
    # DSPy and LiteLLM bring ~400,000 long-lived objects; each full collection would walk them
    # all, pausing the event loop for ~0.2 s (past callers' deadlines, under load).
    gc.collect()
    gc.freeze()
    _frozen = True
    return dspy
