"""Field listeners: an LM's content deltas become each output field's chunks, as DSPy 3.4.1's
``StreamListener`` (``allow_reuse=True``) makes them from the same deltas, so both
implementations stream the same text per field with the same ``is_last`` flags.

A field's text starts after its header (``[[ ## answer ## ]]``, ``"answer":`` or
``<answer>``). Text that could be the start of the next header is held back (at most the last
ten deltas) and flushed once it cannot be. A field whose header and end arrive in one delta (a
cached reply, a provider that sends large chunks) streams nothing: its value is in the final
Prediction. The JSON adapter's end is found by parsing the partial object (``jiter``, as DSPy).

One :class:`FieldListener` per output field per predictor per call: nothing is shared between
calls, so concurrent streams cannot mix.
"""

from __future__ import annotations

import functools
import re
from collections import deque

import jiter

from dspex.streaming._events import StreamChunk

#: DSPy holds back at most this many deltas that could be the start of the next header.
_HOLD = 10


class _Markers:
    """How one adapter marks a field: its header, what ends it, and what may start that end."""

    __slots__ = ("end", "end_prefixes", "end_within", "header", "indicator", "name")

    def __init__(
        self,
        name: str,
        header: str,
        end: re.Pattern[str],
        indicator: str,
        end_prefixes: tuple[str, ...],
        end_within: str,
    ):
        self.name = name
        self.header = header
        self.end = end
        self.indicator = indicator
        self.end_prefixes = end_prefixes
        self.end_within = end_within

    def cut(self, held: str, field: str) -> str:
        """``held`` without the end marker that follows the field's text, and what follows."""
        if self.name == "json":
            return held
        at = held.find(f"</{field}>" if self.name == "xml" else "[[")
        return held if at == -1 else held[:at]


_CHAT_END = re.compile(r"\[\[ ## (\w+) ## \]\]")
_JSON_END = re.compile(r"\w*\"(,|\s*})")


@functools.lru_cache(maxsize=4096)
def _markers(adapter: str, field: str) -> _Markers:
    """How ``adapter`` marks ``field``: made once per adapter and field, shared (never
    written) by every call's listeners."""
    if adapter == "JSONAdapter":
        return _Markers("json", f'"{field}":', _JSON_END, '"', ('"', '",', '" ', '"}'), "}")
    if adapter == "XMLAdapter":
        end = re.compile(rf"</{field}>")
        return _Markers("xml", f"<{field}>", end, "<", ("<", "</"), "</")
    prefixes = ("[", "[[", "[[ ", "[[ #", "[[ ##")
    return _Markers("chat", f"[[ ## {field} ## ]]", _CHAT_END, "[", prefixes, "[[ ##")


def _ends_with_start_of(text: str, header: str) -> bool:
    """Whether some non-empty tail of ``text`` is how ``header`` begins."""
    return any(header.startswith(text[i:]) for i in range(len(text)))


class FieldListener:
    """Turns the deltas of a predictor's LM replies into chunks of one output ``field``
    (``adapter``: the name of DSPy's adapter class, ``"ChatAdapter"``, ``"JSONAdapter"`` or
    ``"XMLAdapter"``); it starts over for the next reply of
    the same predictor once the field ended (a ReAct's loop)."""

    __slots__ = (
        "ended",
        "field",
        "held",
        "held_space",
        "json_text",
        "markers",
        "predictor",
        "seeking",
        "started",
        "value_started",
    )

    def __init__(self, predictor: str, field: str, adapter: str):
        self.predictor = predictor
        self.field = field
        self.markers = _markers(adapter, field)
        self._reset()

    def _reset(self) -> None:
        self.seeking: list[str] = []  # deltas that may hold the field's header
        self.held: deque[str] = deque()  # deltas of the value that may hold the end marker
        self.started = False
        self.ended = False
        self.json_text = ""
        self.value_started = False
        self.held_space = ""

    def _chunk(self, text: str) -> StreamChunk:
        return StreamChunk(self.predictor, self.field, text, self.ended)

    def _flush(self) -> str:
        held = "".join(self.held)
        self.held.clear()
        return self.markers.cut(held, self.field)

    def receive(self, delta: str) -> StreamChunk | None:
        """The chunk ``delta`` (one content delta of the LM's reply) completes, if any."""
        if self.ended:
            self._reset()
        markers = self.markers
        header = markers.header
        json = markers.name == "json"
        if delta and not json and header in delta:
            after = delta[delta.find(header) + len(header) :]
            if markers.end.search(after):  # the whole field in one delta: nothing to stream
                self.started = self.ended = True
                return None
        if not self.started:
            if not self.seeking:
                if markers.indicator in delta:
                    self.seeking.append(delta)
                return None
            self.seeking.append(delta)
            seen = "".join(self.seeking)
            if header not in seen:
                if not _ends_with_start_of(seen.strip(), header):
                    self.seeking = []
                return None
            self.started = True
            self.seeking = []
            delta = seen[seen.find(header) + len(header) :].lstrip()
            if json:  # a leading "{" lets the partial parse see the next key
                self.json_text += "{" + header
        if not delta:
            return None
        self.held.append(delta)
        text: str | None = None
        held = "".join(self.held).strip()
        if not (held.endswith(markers.end_prefixes) or markers.end_within in held):
            text = self._flush()
            held = ""
        elif len(self.held) > _HOLD:
            text = self.held.popleft()
            held = "".join(self.held).strip()
        if json:
            return self._json(text, delta)
        return self._text(text, held)

    def _text(self, text: str | None, held: str) -> StreamChunk | None:
        """Chat and XML: the field ends at the next marker (``held``: the text held back, as
        it stands); its value is stripped."""
        if held and self.markers.end.search(held):
            self.ended = True
            rest = self._flush()
            text = (text + rest if text else rest).rstrip()
        if text and not self.value_started:
            text = text.lstrip()
        if text:
            stripped = text.rstrip()
            if stripped:
                self.value_started = True
                text, self.held_space = self.held_space + stripped, text[len(stripped) :]
            else:
                self.held_space += text
                text = ""
        if text or self.ended:
            return self._chunk(text or "")
        return None

    def _json(self, text: str | None, delta: str) -> StreamChunk | None:
        """JSON: the field ends when the object closes or a next key appears."""
        self.json_text += delta
        if self.json_text.rstrip().endswith("}"):
            try:
                jiter.from_json(self.json_text.encode())
            except ValueError:
                pass
            else:
                self.ended = True
                rest = self._flush()
                rest = rest[: rest.rfind("}")]
                return self._chunk(text + rest if text else rest)
        try:
            parsed = jiter.from_json(self.json_text.encode(), partial_mode="trailing-strings")
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and len(parsed) > 1:
            self.ended = True
            rest = self._flush()
            following = next(key for key in parsed if key != self.field)
            rest = rest[: rest.find(following)]
            text = text + rest if text else rest
        if text or self.ended:
            return self._chunk(text or "")
        return None

    def finalize(self) -> StreamChunk | None:
        """At the end of the call: the text still held back, as the field's last chunk."""
        if self.ended or not self.started:
            return None
        self.ended = True
        if self.held:
            text = self._flush()
            if text:
                return self._chunk(self.held_space + text)
        return None
