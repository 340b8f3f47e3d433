"""Values to prompt text, as DSPy's ``format_field_value`` / ``serialize_for_json`` do it.

The common cases (``str``, numbers, ``None``, lists and dicts of those) take a fast path whose
output equals pydantic's ``dump_python(mode="json")``, and so does a ``dspy.Type`` that keeps
``dspy.Type``'s or ``dspy.Code``'s serializer (its ``format()``, called directly); anything
else goes through pydantic exactly as DSPy does. Lists and objects are written by json's C
encoder, built once. User message content is split at DSPy's custom-type markers as DSPy
splits it (:func:`expand_markers`).
"""

from __future__ import annotations

import functools
import json
import math
import re
from json.encoder import JSONEncoder, encode_basestring
from typing import Any

import msgspec

from dspex._dspy_import import imported_class
from dspex.errors import InputError

_PLAIN_SCALARS = (str, int, bool, type(None))
MARKER_START = "<<CUSTOM-TYPE-START-IDENTIFIER>>"
MARKER_END = "<<CUSTOM-TYPE-END-IDENTIFIER>>"


def _is_plain(value: Any, depth: int = 0) -> bool:
    """True when pydantic's JSON-mode dump of ``value`` (nested) is ``value`` itself."""
    t = type(value)
    if t in _PLAIN_SCALARS:
        return True
    if t is float:
        return math.isfinite(value)  # nested inf/nan dump as None
    if depth > 50:
        return False
    if t is list:
        return all(_is_plain(v, depth + 1) for v in value)
    if t is dict:
        return all(_plain_key(k) and _is_plain(v, depth + 1) for k, v in value.items())
    return False


def _plain_key(key: Any) -> bool:
    """A dict key pydantic's JSON-mode dump keeps: a ``str`` without lone surrogates (a key
    with one makes the dump fail, and DSPy then writes the whole value as ``str(value)``)."""
    return type(key) is str and (key.isascii() or _SURROGATE.search(key) is None)


_SURROGATE = re.compile("[\ud800-\udfff]")


class _Dump:
    """How values of one type are dumped (made once per type): by their own ``format()`` where
    the type's pydantic serializer is one of DSPy's that only calls it, ``"parts"`` for
    dspy.Type's (Image, Audio, File, Reasoning, Tool, a user's type: a text, or content parts
    between the markers), ``"text"`` for Code's (a text); else (``None``: ToolCalls, a model)
    by the pydantic TypeAdapter, built on first use.

    ``texts`` keeps the texts of a frozen type whose ``format()`` DSPy caches by value
    (``functools.lru_cache``: Image): DSPy writes the same JSON for equal values, from the same
    list, so its text is kept by value too (a few, as DSPy keeps a few), while the type's
    ``format`` is that cache (``cached``)."""

    __slots__ = ("_adapter", "cached", "formats", "texts", "type")

    def __init__(self, t: type):
        self.type = t
        self._adapter: Any = None
        self.formats: str | None = None
        self.texts: dict[Any, str] | None = None
        self.cached: Any = None
        base: Any = imported_class("dspy.adapters.types.base_type", "Type")
        if base is not None and issubclass(t, base):
            serializers = t.__pydantic_decorators__.model_serializers  # type: ignore[attr-defined]
            if list(serializers) == ["serialize_model"]:
                func = serializers["serialize_model"].func
                code: Any = imported_class("dspy.adapters.types.code", "Code")
                for formats, owner in (("parts", base), ("text", code)):
                    theirs = getattr(owner, "__pydantic_decorators__", None)
                    if theirs and func is theirs.model_serializers["serialize_model"].func:
                        self.formats = formats
            cached = getattr(t, "format", None)
            if isinstance(cached, functools._lru_cache_wrapper) and (
                t.model_config.get("frozen")  # type: ignore[attr-defined]
            ):
                self.texts, self.cached = {}, cached

    def python(self, value: Any) -> Any:
        """pydantic's ``dump_python(value, mode="json", fallback=str)``."""
        if self._adapter is None:
            from pydantic import TypeAdapter

            self._adapter = TypeAdapter(self.type)
        return self._adapter.dump_python(value, mode="json", fallback=str)


_DUMPS: dict[type, _Dump] = {}
_KEPT_TEXTS = 32  # per type, as DSPy's cache of Image.format


def _new_dump(t: type) -> _Dump:
    if len(_DUMPS) > 512:  # bound the cache (types can be created dynamically)
        _DUMPS.clear()
    dump = _DUMPS[t] = _Dump(t)
    return dump


def serialize_for_json(value: Any) -> Any:
    """DSPy's ``serialize_for_json``: a JSON-compatible form of ``value`` (pydantic, else str)."""
    t = type(value)
    if t is str or t is float or t in _PLAIN_SCALARS:
        return value
    if (t is list or t is dict) and _is_plain(value):
        return value
    dump = _DUMPS.get(t) or _new_dump(t)
    if dump.formats is not None:
        texts = dump.texts
        if texts is not None and t.format is not dump.cached:
            texts = None  # (format replaced since)
        if texts is not None:
            try:
                return texts[value]
            except (KeyError, TypeError):  # (TypeError: unhashable, and so is format's key)
                pass
        # What pydantic's dump returns for it: format() as a text or, by dspy.Type's
        # serializer, a list of content parts between the custom-type markers (a failure:
        # str(value)). Any other return (a dict, say) is left to pydantic, which calls
        # format() again.
        try:
            formatted = value.format()
            if type(formatted) is str:
                text = formatted
            elif dump.formats == "parts" and isinstance(formatted, list):
                text = f"{MARKER_START}{compact_json(formatted)}{MARKER_END}"
            else:
                text = None
        except Exception:
            return str(value)
        if text is not None:
            if texts is not None:
                if len(texts) >= _KEPT_TEXTS:
                    texts.clear()
                texts[value] = text
            return text
    try:
        return dump.python(value)
    except Exception:
        return str(value)


def json_object_text(value: dict[str, Any]) -> str:
    """``json.dumps(serialize_for_json(value), indent=2, ensure_ascii=False)``: how DSPy's
    JSONAdapter writes an object (the outputs of a demo, the output skeleton).

    A non-empty dict of ``str`` keys to ``str``, ``int``, ``bool``, ``None`` or finite ``float``
    values (which serialize_for_json returns as it is) is written here item by item, exactly as
    json's indenting encoder (pure Python, hence slow) writes it; anything else goes through json.
    """
    items = []
    for key, item in value.items():
        t = type(item)
        if t is str:
            text = encode_basestring(item)
        elif t is int:
            text = int.__repr__(item)
        elif t is bool:
            text = "true" if item else "false"
        elif item is None:
            text = "null"
        elif t is float and math.isfinite(item):
            text = float.__repr__(item)
        else:
            break
        if not _plain_key(key):
            break
        items.append(f"{encode_basestring(key)}: {text}")
    else:
        if items:
            return "{\n  " + ",\n  ".join(items) + "\n}"
    return indented_json(serialize_for_json(value))


encode_json = msgspec.json.Encoder().encode
"""msgspec's JSON encoder (compact)."""
decode_json = msgspec.json.Decoder().decode
"""msgspec's JSON decoder."""
_SHALLOW = 100  # brackets and braces in a marked payload read by msgspec (see _parse_payload)

# json.dumps(data, ensure_ascii=False)'s C encoder, built once: json.dumps builds a JSONEncoder,
# then its C encoder, on every call, which costs more than encoding a small value. No circular
# check (markers=None): what serialize_for_json returns is acyclic (pydantic's output, or a value
# _is_plain walked to its end).
_compact: Any = getattr(json.encoder, "c_make_encoder", None)  # None: no C accelerator
if _compact is not None:
    _compact = _compact(
        None, JSONEncoder().default, encode_basestring, None, ": ", ", ", False, False, True
    )


def compact_json(data: Any) -> str:
    """``json.dumps(data, ensure_ascii=False)`` for acyclic JSON data (what
    :func:`serialize_for_json` returns), by json's own C encoder built once."""
    if _compact is None:  # a Python without json's C accelerator
        return json.dumps(data, ensure_ascii=False)
    return "".join(_compact(data, 0))


def indented_json(data: Any) -> str:
    """``json.dumps(data, indent=2, ensure_ascii=False)``, written by msgspec (C, not json's
    pure-Python indenting encoder) when ``data`` is built of ``str``, ``int``, ``bool``,
    ``None``, lists and ``str``-keyed dicts only: both write those alike (a property test holds
    it), where floats differ (msgspec writes ``1e16``, json ``1e+16``)."""
    if _float_free(data, 0):
        try:
            return msgspec.json.format(encode_json(data), indent=2).decode()
        except (TypeError, ValueError, OverflowError):  # a lone surrogate, say: json's way
            pass
    return json.dumps(data, indent=2, ensure_ascii=False)


def _float_free(value: Any, depth: int) -> bool:
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return True
    if depth > 50:
        return False
    if t is list or t is tuple:
        return all(_float_free(item, depth + 1) for item in value)
    if t is dict:
        return all(type(k) is str and _float_free(v, depth + 1) for k, v in value.items())
    return False


def format_value(value: Any, annotation_is_str: bool) -> str:
    """DSPy's ``format_field_value``: the text shown for one field value."""
    if type(value) is str:
        return value
    if type(value) in _PLAIN_SCALARS or type(value) is float:  # serialize_for_json keeps these
        return str(value)
    if annotation_is_str and isinstance(value, list):
        return _format_list(value)
    jsonable = serialize_for_json(value)
    if isinstance(jsonable, (dict, list)):
        return compact_json(jsonable)
    return str(jsonable)


def _format_list(value: list[Any]) -> str:
    if len(value) == 0:
        return "N/A"
    if len(value) == 1:
        return _format_blob(value[0])
    return "\n".join([f"[{idx + 1}] {_format_blob(txt)}" for idx, txt in enumerate(value)])


def _format_blob(blob: Any) -> str:
    try:
        plain = "\n" not in blob and "«" not in blob and "»" not in blob
        if plain:
            return f"«{blob}»"
        modified = blob.replace("\n", "\n    ")
    except Exception:
        # DSPy fails here with a bare TypeError/AttributeError.
        raise InputError(
            f"a list given for a str field must contain strings, found {type(blob).__name__} "
            f"{blob!r}; pass a str or change the field's type"
        ) from None
    return f"«««\n    {modified}\n»»»"


def expand_markers(content: str) -> str | list[dict[str, Any]]:
    """DSPy's ``split_message_content_for_custom_types`` on one user message's content (what
    media and other dspy.Types write): the text between the custom-type markers, and what each
    marked payload holds (content parts), as DSPy leaves them; ``content`` itself if no marker
    pair is found.

    As DSPy's non-greedy ``START(.*?)END`` regex over the whole text, with ``str.find``."""
    start = content.find(MARKER_START)
    if start < 0:
        return content
    blocks: list[Any] = []
    last_end = 0
    while start >= 0:
        close = content.find(MARKER_END, start + len(MARKER_START))
        if close < 0:  # no END after this START: none after a later one either
            break
        if start > last_end:
            blocks.append({"type": "text", "text": content[last_end:start]})
        payload = content[start + len(MARKER_START) : close].strip()
        parsed = _parse_payload(payload)
        if parsed:
            blocks.extend(parsed)  # what iterating it gives, as DSPy appends it
        else:
            blocks.append({"type": "text", "text": payload})
        last_end = close + len(MARKER_END)
        start = content.find(MARKER_START, last_end)
    if not last_end:
        return content
    if last_end < len(content):
        blocks.append({"type": "text", "text": content[last_end:]})
    return blocks


def _parse_payload(payload: str) -> Any:
    """DSPy's reading of a marked payload: json.loads, then doubly quoted JSON, then
    json_repair, each tried on a JSONDecodeError (other errors escape); None if all fail."""
    if len(payload) < _SHALLOW or payload.count("[") + payload.count("{") < _SHALLOW:
        # msgspec reads what json.loads reads alike, or fails (NaN, 1e400, a lone surrogate,
        # escaped or not). Only shallow payloads: near the recursion limit it nests a few
        # levels deeper than json.loads, which DSPy lets fail.
        try:
            return decode_json(payload)
        except (msgspec.DecodeError, UnicodeEncodeError):
            pass
    import json_repair

    for parse_fn in (json.loads, _doubly_quoted, json_repair.loads):
        try:
            return parse_fn(payload)
        except json.JSONDecodeError:
            continue
    return None


def _doubly_quoted(payload: str) -> Any:
    return json.loads(json.loads(f'"{payload}"'))
