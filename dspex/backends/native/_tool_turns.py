"""Tool calls in a ``dspy.History`` turn, as DSPy 3.4.1's adapters write them.

A turn holding a ``dspy.ToolCalls`` (or a dict with ``tool_calls``) is the assistant's tool
calls, and its ``tool_call_results`` their results. With function calling off (ChatAdapter,
XMLAdapter, the JSONAdapter ChatAdapter falls back to), the calls are text in the assistant
message and the results a user message of their own; with it on (JSONAdapter), the calls are
the assistant message's ``tool_calls`` and each result a ``tool`` message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._values import compact_json, serialize_for_json


def tool_calls_in(turn: Mapping[str, Any]) -> tuple[str | None, Any]:
    """The name and ``dspy.ToolCalls`` value of the turn's first field holding tool calls (a
    ToolCalls, or a dict with ``tool_calls``), or ``(None, None)``. Imports DSPy only for a
    turn that may hold some."""
    for name, value in turn.items():
        if (isinstance(value, Mapping) and "tool_calls" in value) or _is_tool_calls(value):
            from dspy.adapters.types.tool import ToolCalls

            return name, ToolCalls.model_validate(value)
    return None, None


def _is_tool_calls(value: Any) -> bool:
    from dspex._dspy_import import imported_class

    tool_calls = imported_class("dspy.adapters.types.tool", "ToolCalls")
    return tool_calls is not None and isinstance(value, tool_calls)


def results_of(calls: Any) -> Any:
    """The calls' ``tool_call_results`` as a ``ToolCallResults``, or None."""
    if calls is None or calls.tool_call_results is None:
        return None
    from dspy.adapters.types.tool import ToolCallResults

    return ToolCallResults.model_validate(calls.tool_call_results)


def matching(calls: Any, results: Any) -> Any:
    """``results`` if they answer exactly the calls, in order and all with ids; else None."""
    ids = [call.id for call in calls.tool_calls]
    if ids != [result.call_id for result in results.tool_call_results] or not all(ids):
        return None
    return results


def openai_tool_call(call: Any) -> dict[str, Any]:
    """One call as an assistant message's ``tool_calls`` item."""
    arguments = compact_json(serialize_for_json(call.args))
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": arguments},
    }


def tool_message(result: Any) -> dict[str, Any]:
    """One result as a ``tool`` message (a value that is not text, as JSON)."""
    value = result.value
    content = value if isinstance(value, str) else compact_json(serialize_for_json(value))
    return {
        "role": "tool",
        "tool_call_id": result.call_id,
        "name": result.name,
        "content": content,
    }
