"""``respond(**values)``: a script that answers each request in the format the request asks for."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

from dspex.testing._actions import RecordedRequest, Reply, check_latency

_OUTPUTS = re.compile(r"Your output fields are:\n(.*?)\nAll interactions", re.S)
_FIELD = re.compile(r"^\d+\. `([^`]+)`", re.M)


ReplyFormat = Literal["chat", "json", "xml"]


def requested_outputs(request: RecordedRequest) -> tuple[list[str], ReplyFormat]:
    """The output field names a DSPy-style request lists, and the format it wants them in (that
    of DSPy's ChatAdapter, JSONAdapter or XMLAdapter)."""
    messages = request.messages
    system = messages[0].get("content", "") if messages else ""
    if not isinstance(system, str):
        return [], "chat"
    block = _OUTPUTS.search(system)
    names = _FIELD.findall(block.group(1)) if block else []
    if "Outputs will be a JSON object" in system:
        return names, "json"
    last = messages[-1].get("content", "")
    if isinstance(last, str) and "output fields wrapped in XML tags" in last:
        return names, "xml"
    return names, "chat"


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def respond(
    fields: Mapping[str, Any] | None = None, /, *, latency: float = 0.0, **values: Any
) -> Callable[[RecordedRequest], Reply]:
    """A ScriptedLM script answering every request with ``values`` for the output fields it
    asks for: ``[[ ## field ## ]]`` sections for DSPy's ChatAdapter, a JSON object for its
    JSONAdapter, ``<field>`` elements for its XMLAdapter. Fields the request asks for that
    ``values`` lacks are answered with ``""``; values it does not ask for are left out. Works
    for native and dspy alike::

        async with ScriptedLM(respond(answer="Paris", reasoning="It is the capital.")) as lm:
            ...

    ``latency`` delays each answer by that many seconds, as ``Reply(latency=)`` does. Values
    may also come as a dict (``respond({"latency": "low"})`` for a field named ``latency``).
    Raises :class:`~dspex.errors.ConfigError` for a latency that is not a number >= 0.
    """
    check_latency("respond", latency)
    values = {**(fields or {}), **values}

    def script(request: RecordedRequest) -> Reply:
        names, form = requested_outputs(request)
        if form == "json":
            text = json.dumps({name: values.get(name, "") for name in names})
        elif form == "xml":
            text = "\n".join(
                f"<{name}>{escape(_text(values.get(name, '')))}</{name}>" for name in names
            )
        else:
            sections = [f"[[ ## {name} ## ]]\n{_text(values.get(name, ''))}" for name in names]
            text = "\n\n".join([*sections, "[[ ## completed ## ]]"])
        return Reply(text, latency=latency)

    return script
