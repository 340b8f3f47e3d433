"""Run one program on native and on DSPy 3.4.1 against one ScriptedLM; compare the wire.

``compare`` runs native first, then DSPy, and asserts that both sent the same requests (messages
and whole bodies). Tracebacks in tool observations name each implementation's own frames; only
those frames are left out of the comparison (the frames of the test's own code, the messages
and the exception chain must match).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from dspy.utils.exceptions import AdapterParseError
from dspy.utils.exceptions import LMError as DSPyLMError

from dspex.errors import InputError, LMError, ModuleError, ParseError
from dspex.testing import RecordedRequest, Script, ScriptedLM

from .corpus import typed

_FRAME = re.compile(r'  File "(?P<file>[^"]+)", line \d+, in [^\n]*\n(?:    [^\n]*\n)*')
_TESTS = "/tests/"


def normalize(value: Any) -> Any:
    """``value`` with the library frames of tracebacks in its strings left out."""
    if isinstance(value, str):
        return _FRAME.sub(lambda m: m.group(0) if _TESTS in m.group("file") else "", value)
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


def fields(result: Any) -> dict[str, Any]:
    """The output fields of a dspex or DSPy prediction."""
    return dict(result.items())


async def outcome(run: Callable[[], Awaitable[Any]]) -> tuple[Any, ...]:
    """``("ok", typed fields)`` or the kind of error, named alike for both implementations."""
    try:
        return ("ok", typed(normalize(fields(await run()))))
    except (ParseError, AdapterParseError):
        return ("parse_error",)
    except (LMError, DSPyLMError):
        return ("lm_error",)
    except (InputError, ModuleError) as exc:
        return ("error", type(exc).__name__)


def wire(requests: list[RecordedRequest]) -> list[Any]:
    """What the requests carried, comparable across implementations."""
    return [normalize(r.body) for r in requests]


async def compare(
    server: ScriptedLM,
    native: Callable[[], Awaitable[Any]],
    reference: Callable[[], Awaitable[Any]],
    *,
    script: Callable[[], Script] | None = None,
    ordered: bool = True,
) -> tuple[tuple[Any, ...], tuple[Any, ...], list[RecordedRequest]]:
    """Run ``native`` then ``reference`` (DSPy); assert the same requests (as a multiset unless
    ``ordered``); return both outcomes and native's requests. ``script`` makes a fresh script
    for each run (for scripts that answer by position)."""
    if script is not None:
        server.script = script()
    start = len(server.requests)
    got_native = await outcome(native)
    middle = len(server.requests)
    if script is not None:
        server.script = script()
    got_dspy = await outcome(reference)
    native_requests = server.requests[start:middle]
    ours, theirs = wire(native_requests), wire(server.requests[middle:])
    if not ordered:
        ours, theirs = sorted(ours, key=repr), sorted(theirs, key=repr)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert a["messages"] == b["messages"]
        assert a == b
    return got_native, got_dspy, native_requests
