"""Native ChatAdapter, JSONAdapter and XMLAdapter: DSPy 3.4.1's messages and parsing,
precompiled per signature.

Everything that does not depend on the inputs (system message, headers, reminder, value parsers,
``response_format``) is built once per (signature, adapter) and kept on the signature; a call
is a few string joins plus the value formatting.
"""

from __future__ import annotations

import abc
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import msgspec

from dspex._dspy_import import imported_class
from dspex.errors import InputError, ParseError, SignatureError
from dspex.signature import Field, Signature, SignatureLike, ensure_signature

from ._parsing import ReplyParser, UnrecoverableParseError
from ._tool_turns import matching, openai_tool_call, results_of, tool_calls_in, tool_message
from ._types import (
    annotation_name,
    dspy_type_in,
    field_descriptions,
    is_tool_calls,
    reminder_type_info,
    type_note,
)
from ._values import (
    MARKER_START,
    decode_json,
    encode_json,
    expand_markers,
    format_value,
    json_object_text,
    serialize_for_json,
)
from ._xml import escape, schema_of, uses_nested_xml, value_to_xml, xml_reader, xml_skeleton

Message = dict[str, Any]
Render = Callable[[Any], str]
FieldSpec = tuple[str, Render]
"""A field as messages show it: its name, and the block of text a value of it makes."""
_INCOMPLETE_PREFIX = (
    "This is an example of the task, though some input or output fields are not supplied.\n\n"
)
_MISSING_IN_EXAMPLE = "Not supplied for this particular example. "
_MISSING_IN_HISTORY = "Not supplied for this conversation history message. "
_SKIP: Any = object()  # _sections: leave out the fields a mapping does not hold
_STRUCTURE_INTRO = (
    "All interactions will be structured in the following way, with the appropriate values "
    "filled in."
)


class ResponseFormatSupport(msgspec.Struct, frozen=True):
    """What DSPy believes the LM supports; decides JSONAdapter's ``response_format``.

    DSPy reads ``"response_format" in lm.supported_params`` and ``lm.supports_response_schema``
    from its model catalog. For a model it does not know (e.g. any local model behind an
    ``openai/<name>`` route) both are false and JSONAdapter sends no ``response_format`` at all.
    """

    response_format: bool = False
    response_schema: bool = False

    @classmethod
    def of_dspy_lm(cls, lm: Any) -> ResponseFormatSupport:
        """Read the support flags from a ``dspy.LM`` (or any object with DSPy's LM properties)."""
        return cls(
            response_format="response_format" in lm.supported_params,
            response_schema=bool(lm.supports_response_schema),
        )


class _Plan:
    """The per-signature, per-adapter template: everything a call does not change."""

    __slots__ = (
        "all_names",
        "formats",
        "history",
        "input_names",
        "inputs",
        "output_names",
        "outputs",
        "read",
        "reminder",
        "reply",
        "system",
        "turn_inputs",
    )

    def __init__(self, sig: Signature, adapter: Adapter) -> None:
        for f in (*sig.inputs, *sig.outputs):
            found = dspy_type_in(f.annotation)
            if found is not None:
                raise SignatureError(
                    f"field {f.name!r} uses {annotation_name(found)}, a dspy.Type that the "
                    "native adapters do not implement; run this signature on the dspy backend"
                )
        self.inputs = tuple(
            (f.name, adapter._render(f.name, f.annotation, False)) for f in sig.inputs
        )
        self.outputs = tuple(
            (f.name, adapter._render(f.name, f.annotation, True)) for f in sig.outputs
        )
        # A dspy.History input (DSPy takes the first) becomes user/assistant turns; the other
        # inputs make up each turn's user message and the current one.
        history = imported_class("dspy.adapters.types.history", "History")
        self.history = next(
            (f.name for f in sig.inputs if history is not None and f.annotation == history), None
        )
        self.turn_inputs = tuple(spec for spec in self.inputs if spec[0] != self.history)
        self.input_names = tuple(f.name for f in sig.inputs)
        self.output_names = tuple(f.name for f in sig.outputs)
        self.all_names = self.input_names + self.output_names
        try:
            self.system = adapter._system_message(sig)
            self.reminder = adapter._reminder(sig)
        except SignatureError:
            raise
        except Exception as exc:  # e.g. pydantic cannot build a JSON schema for a type
            raise SignatureError(
                f"cannot describe the signature's types to the LM: {type(exc).__name__}: {exc}"
            ) from exc
        self.reply = ReplyParser(sig.outputs)
        self.read = adapter._reader(self.reply)
        self.formats: dict[Any, dict[str, Any]] = {}


_DECODED_COPY_MAX = 4096  # bytes of JSON: longer demo messages are copied in Python


class DemoMessages:
    """The messages an adapter writes for a signature's demos, made once by
    :meth:`Adapter.demo_messages`; each :meth:`Adapter.format` that takes it copies them into
    its messages (content parts too: a caller may change the messages it gets)."""

    __slots__ = ("_raw", "demos", "messages", "plan")

    def __init__(
        self, plan: _Plan, demos: tuple[Mapping[str, Any], ...], messages: tuple[Message, ...]
    ) -> None:
        self.plan = plan
        self.demos = demos
        self.messages = messages
        # With content parts, the messages as JSON when msgspec gives them back equal (not
        # nan, a lone surrogate, a big int) and they are short: decoding them is the quickest
        # copy. Else each message is copied, its parts (if any) as JSON data whose texts are
        # shared (an image's data URI is not copied per call).
        self._raw: bytes | None = None
        if any(type(m["content"]) is not str for m in messages):
            try:
                raw = encode_json(messages)
                if len(raw) <= _DECODED_COPY_MAX and decode_json(raw) == list(messages):
                    self._raw = raw
            except (TypeError, ValueError, OverflowError):
                pass

    def fresh(self) -> list[Message]:
        """A copy of the messages, for one call."""
        if self._raw is not None:
            copy: list[Message] = decode_json(self._raw)
            return copy
        return [
            {"role": m["role"], "content": c if type(c := m["content"]) is str else _copy_json(c)}
            for m in self.messages
        ]


def _sections(
    fields: tuple[FieldSpec, ...], values: Mapping[str, Any], missing: Any = _SKIP
) -> str:
    """The blocks of ``fields``, between blank lines; a field not in ``values`` shows
    ``missing``, or is left out by default."""
    parts = []
    for name, render in fields:
        if name in values:
            value = values[name]
        elif missing is _SKIP:
            continue
        else:
            value = missing
        parts.append(render(value))
    return "\n\n".join(parts)


def _text(value: Any, is_str: bool) -> str:
    return value if type(value) is str else format_value(value, is_str)


def _user(content: str) -> Message:
    """A user message; DSPy expands its legacy custom-type markers in user messages only."""
    if MARKER_START in content:
        return {"role": "user", "content": expand_markers(content)}
    return {"role": "user", "content": content}


class Adapter(abc.ABC):
    """Common machinery of the native adapters (see :class:`ChatAdapter`, :class:`JSONAdapter`,
    :class:`XMLAdapter`)."""

    name: ClassVar[str] = "Adapter"

    # -- per-signature template --------------------------------------------------------------

    def _plan(self, signature: SignatureLike) -> _Plan:
        sig = signature if type(signature) is Signature else ensure_signature(signature)
        return sig.cached(type(self), _Plan, sig, self)

    def prepare(self, signature: SignatureLike) -> Signature:
        """Validate ``signature`` and build its cached templates now (else on first use)."""
        sig = signature if type(signature) is Signature else ensure_signature(signature)
        self._plan(sig)
        return sig

    def system_message(self, signature: SignatureLike) -> str:
        """The system message for ``signature`` (cached)."""
        return self._plan(signature).system

    def _system_message(self, sig: Signature) -> str:
        desc = (
            f"Your input fields are:\n{field_descriptions(sig.inputs)}\n"
            f"Your output fields are:\n{field_descriptions(sig.outputs)}"
        )
        instructions = textwrap.dedent(sig.instructions)
        objective = ("\n" + " " * 8).join(["", *instructions.splitlines()])
        task = f"In adhering to this structure, your objective is: {objective}"
        return f"{desc}\n{self._structure(sig)}\n{task}"

    def _render(self, name: str, annotation: Any, output: bool) -> Render:
        """How a value of a field shows in messages: ``[[ ## name ## ]]`` and its text (the
        XMLAdapter overrides this)."""
        header = f"[[ ## {name} ## ]]\n"
        is_str = annotation is str
        return lambda value: header + _text(value, is_str)

    def format_user_fields(self, values: Mapping[str, Any]) -> str:
        """DSPy's ``adapter.format_user_message_content`` for a signature whose input fields are
        the keys of ``values``, all untyped (``str``): their blocks, stripped. ReAct renders its
        trajectory this way."""
        specs = tuple((name, self._render(name, str, False)) for name in values)
        return _sections(specs, values).strip()

    @abc.abstractmethod
    def _structure(self, sig: Signature) -> str:
        """Overridden by each adapter."""

    @abc.abstractmethod
    def _reminder(self, sig: Signature) -> str:
        """Overridden by each adapter."""

    @abc.abstractmethod
    def _assistant(self, plan: _Plan, values: Mapping[str, Any], missing: Any) -> str:
        """Overridden by each adapter."""

    @abc.abstractmethod
    def _reader(self, reply: ReplyParser) -> Callable[[str], dict[str, Any]]:
        """The parse function for this adapter's replies."""

    # -- format ------------------------------------------------------------------------------

    def format(
        self,
        signature: SignatureLike,
        demos: Sequence[Mapping[str, Any]] | DemoMessages = (),
        inputs: Mapping[str, Any] | None = None,
    ) -> list[Message]:
        """The chat messages DSPy's adapter sends for ``signature``, ``demos`` and ``inputs``.

        Demos are mappings keyed by field name (extra keys are ignored); demos missing a field come
        first, demos without any input or any output are dropped, as in DSPy. ``demos`` may be
        their messages made once by :meth:`demo_messages` (copied into each call's messages).
        """
        plan = self._plan(signature)
        messages: list[Message] = [{"role": "system", "content": plan.system}]
        self._add_demos(plan, demos, messages)
        values = inputs or {}
        if plan.history is not None and plan.history in values:
            self._history(plan, values[plan.history], messages)
        # DSPy joins the blocks and the reminder with blank lines and strips the result; the
        # blocks start with a header and the reminder ends with a period, so only joins remain.
        text = _sections(plan.turn_inputs, values)
        messages.append(_user(f"{text}\n\n{plan.reminder}" if text else plan.reminder))
        return messages

    def demo_messages(
        self, signature: SignatureLike, demos: Sequence[Mapping[str, Any]]
    ) -> DemoMessages:
        """The messages :meth:`format` writes for ``demos`` (as DSPy's adapter writes them on every
        call), made now, for :meth:`format` to take in place of the demos: a predictor's demos
        are its state, so their messages are made once, not per call.

        Raises what :meth:`format` raises for these demos (InputError, SignatureError).
        """
        plan = self._plan(signature)
        messages: list[Message] = []
        self._demos(plan, demos, messages)
        return DemoMessages(plan, tuple(demos), tuple(messages))

    def _history(self, plan: _Plan, history: Any, messages: list[Message]) -> None:
        """Append a ``dspy.History``'s turns as DSPy 3.4.1 does: each message's inputs as a user
        message (with the output reminder when it holds any input), its outputs as an
        assistant message (an output it lacks shows ``None``); tool calls and their results
        as :mod:`._tool_turns` says."""
        turns = getattr(history, "messages", None)
        if not isinstance(turns, list) or not all(isinstance(t, Mapping) for t in turns):
            raise InputError(
                f"{plan.history} must be a dspy.History (messages: a list of dicts), "
                f"got {type(history).__name__}"
            )
        for turn in turns:
            try:
                calls_field, calls = tool_calls_in(turn)
                results = results_of(calls)
            except ValueError as exc:  # pydantic's: tool calls that do not validate
                raise InputError(
                    f"{plan.history} holds tool calls DSPy cannot read: {exc}"
                ) from exc
            text = _sections(plan.turn_inputs, turn)
            if any(name in turn for name, _ in plan.turn_inputs):
                messages.append(_user(f"{text}\n\n{plan.reminder}"))
            elif text.rstrip():
                messages.append(_user(text.rstrip()))
            if calls is not None and self._calls_functions():
                self._function_calls(plan, turn, calls, results, messages)
                continue
            if calls_field is not None and results is not None:  # the calls, not their results
                bare = calls.model_copy(update={"tool_call_results": None})
                turn = {**turn, calls_field: bare}
            content = self._assistant(plan, turn, None)
            if content:
                messages.append({"role": "assistant", "content": content})
            if results is not None:
                render = self._render("tool_call_results", type(results), False)
                messages.append(_user(render(results).strip()))

    def _calls_functions(self) -> bool:
        """Whether this adapter uses the LM's function calling (JSONAdapter's default)."""
        return False

    def _function_calls(
        self,
        plan: _Plan,
        turn: Mapping[str, Any],
        calls: Any,
        results: Any,
        messages: list[Message],
    ) -> None:
        """A history turn's tool calls with function calling on: the outputs it holds (but the
        calls) as the assistant's content, the calls as its ``tool_calls`` and each result a
        ``tool`` message, when the results answer the calls (else the content alone)."""
        shown = {
            f.name: turn[f.name]
            for f in plan.reply.fields
            if not is_tool_calls(f.annotation) and turn.get(f.name) is not None
        }
        content = self._assistant(plan, shown, _SKIP) if shown else ""
        if results is not None:
            results = matching(calls, results)
        if content or results is not None:
            message: Message = {"role": "assistant", "content": content or None}
            if results is not None:
                message["tool_calls"] = [openai_tool_call(call) for call in calls.tool_calls]
            messages.append(message)
        if results is not None:
            messages.extend(tool_message(result) for result in results.tool_call_results)

    def _add_demos(
        self,
        plan: _Plan,
        demos: Sequence[Mapping[str, Any]] | DemoMessages,
        messages: list[Message],
    ) -> None:
        """Append the demos' messages: copies of those made by :meth:`demo_messages` for this
        signature and adapter, else written now."""
        if isinstance(demos, DemoMessages):
            if demos.plan is plan:
                messages.extend(demos.fresh())
            else:  # made for another signature or adapter
                self._demos(plan, demos.demos, messages)
        elif demos:
            self._demos(plan, demos, messages)

    def _demos(
        self, plan: _Plan, demos: Iterable[Mapping[str, Any]], messages: list[Message]
    ) -> None:
        """Append the demos' user/assistant pairs: incomplete demos first, then complete ones."""
        complete, incomplete = sort_demos(plan, demos)
        # DSPy strips a demo's user text; as it starts with a header, only its end can change.
        for demo in incomplete:
            messages.append(_user((_INCOMPLETE_PREFIX + _sections(plan.inputs, demo)).rstrip()))
            content = self._assistant(plan, demo, _MISSING_IN_EXAMPLE)
            messages.append({"role": "assistant", "content": content})
        for demo in complete:
            messages.append(_user(_sections(plan.inputs, demo).rstrip()))
            content = self._assistant(plan, demo, _MISSING_IN_HISTORY)
            messages.append({"role": "assistant", "content": content})

    # -- parse -------------------------------------------------------------------------------

    def parse(self, signature: SignatureLike, completion: str) -> dict[str, Any]:
        """Parse one completion into the output fields, with DSPy's types and coercions.

        Raises :class:`~dspex.errors.ParseError` where DSPy raises ``AdapterParseError`` and
        :class:`UnrecoverableParseError` where DSPy fails with another exception; nothing else.
        """
        return self._plan(signature).read(completion)

    def parse_completions(
        self, signature: SignatureLike, completions: Iterable[str | Mapping[str, Any] | None]
    ) -> list[dict[str, Any]]:
        """Parse the ``n`` completions of one LM call, as DSPy's adapter does after the call.

        Each completion is the text or a mapping with ``text`` (and optionally ``logprobs``,
        copied to the result like DSPy). An empty or missing text is a ``ParseError``, and the
        first failing completion fails the whole call (as in DSPy, which then falls back).
        """
        read = self._plan(signature).read
        values: list[dict[str, Any]] = []
        for output in completions:
            text: Any = output
            logprobs = None
            if not isinstance(output, str) and isinstance(output, Mapping):  # (str: fast check)
                text = output.get("text")
                logprobs = output.get("logprobs")
            if not text:
                raise ParseError(
                    "The LM returned an empty or null response.",
                    adapter_name=self.name,
                    lm_response=str(output),
                )
            value = read(text)  # holds every output field (or raised)
            if logprobs:
                value["logprobs"] = logprobs
            values.append(value)
        return values

    def fill_outputs(self, signature: SignatureLike, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` with every output of ``signature``, in its order: optional ones filled in
        as DSPy fills them, the others None (as DSPy leaves a reply that came with tool calls)."""
        plan = self._plan(signature)
        filled = plan.reply.with_defaults(values)
        for name in plan.output_names:
            filled.setdefault(name, None)
        return filled

    # -- LM request --------------------------------------------------------------------------

    def request_kwargs(
        self, signature: SignatureLike, support: ResponseFormatSupport | None = None
    ) -> dict[str, Any]:
        """Extra LM request arguments DSPy's adapter adds (ChatAdapter: none)."""
        return {}

    def fallback_adapter(
        self, error: BaseException, *, stream_emitted: bool = False
    ) -> Adapter | None:
        """The adapter DSPy retries the whole call with after ``error``, or ``None`` to re-raise."""
        return None


class ChatAdapter(Adapter):
    """DSPy's default adapter: ``[[ ## field ## ]]`` sections, JSONAdapter fallback on parse errors.

    Args:
        use_json_adapter_fallback: retry once with :class:`JSONAdapter` after a ``ParseError``
            (DSPy's default, True).
    """

    name: ClassVar[str] = "ChatAdapter"

    def __init__(self, *, use_json_adapter_fallback: bool = True) -> None:
        self.use_json_adapter_fallback = use_json_adapter_fallback

    def __repr__(self) -> str:
        return f"{type(self).__name__}(use_json_adapter_fallback={self.use_json_adapter_fallback})"

    def _structure(self, sig: Signature) -> str:
        parts = [
            _STRUCTURE_INTRO,
            _section_block(sig.inputs),
            _section_block(sig.outputs),
            "[[ ## completed ## ]]\n",
        ]
        return "\n\n".join(parts).strip()

    def _reminder(self, sig: Signature) -> str:
        listed = ", then ".join(
            f"`[[ ## {f.name} ## ]]`{reminder_type_info(f)}" for f in sig.outputs
        )
        return (
            "Respond with the corresponding output fields, starting with the field "
            f"{listed}, and then ending with the marker for `[[ ## completed ## ]]`."
        )

    def _assistant(self, plan: _Plan, values: Mapping[str, Any], missing: Any) -> str:
        return _sections(plan.outputs, values, missing).rstrip() + "\n\n[[ ## completed ## ]]\n"

    def _reader(self, reply: ReplyParser) -> Callable[[str], dict[str, Any]]:
        return reply.parse_chat

    def fallback_adapter(
        self, error: BaseException, *, stream_emitted: bool = False
    ) -> Adapter | None:
        """``JSONAdapter()`` where DSPy's ``ChatAdapter.__call__`` retries with it, else ``None``.

        DSPy retries (one more LM call, same demos and inputs) only on ``AdapterParseError``
        (here: :class:`~dspex.errors.ParseError`, but not :class:`UnrecoverableParseError`), only
        if ``use_json_adapter_fallback`` is set and no streamed output was shown yet. LM errors
        (context window, HTTP, timeouts) never fall back, and JSONAdapter never falls back.
        """
        if (
            isinstance(error, ParseError)
            and not isinstance(error, UnrecoverableParseError)
            and self.use_json_adapter_fallback
            and not stream_emitted
        ):
            return JSONAdapter(use_native_function_calling=False)  # as ChatAdapter's flag
        return None


class JSONAdapter(Adapter):
    """DSPy's JSONAdapter: JSON-object replies; may ask for ``response_format`` (see
    :meth:`request_kwargs`). It never falls back.

    Args:
        use_native_function_calling: DSPy's flag, True by default (False for the JSONAdapter
            ChatAdapter falls back to): a ``dspy.ToolCalls`` output is then left out of the
            structured-output schema, and on an LM with function calling the tools go as the
            request's ``tools`` and the LM's tool calls fill that output (NativePredict).
    """

    name: ClassVar[str] = "JSONAdapter"

    def __init__(self, *, use_native_function_calling: bool = True) -> None:
        self.use_native_function_calling = use_native_function_calling

    def __repr__(self) -> str:
        flag = self.use_native_function_calling
        return f"{type(self).__name__}(use_native_function_calling={flag})"

    def _structure(self, sig: Signature) -> str:
        skeleton = {f.name: type_note(f) for f in sig.outputs}
        parts = [
            _STRUCTURE_INTRO,
            "Inputs will have the following structure:",
            _section_block(sig.inputs),
            "Outputs will be a JSON object with the following fields.",
            json_object_text(skeleton),
        ]
        return "\n\n".join(parts).strip()

    def _reminder(self, sig: Signature) -> str:
        listed = ", then ".join(f"`{f.name}`{reminder_type_info(f)}" for f in sig.outputs)
        return f"Respond with a JSON object in the following order of fields: {listed}."

    def _assistant(self, plan: _Plan, values: Mapping[str, Any], missing: Any) -> str:
        names = plan.output_names
        if missing is _SKIP:
            return json_object_text({name: values[name] for name in names if name in values})
        return json_object_text({name: values.get(name, missing) for name in names})

    def _calls_functions(self) -> bool:
        return self.use_native_function_calling

    def _reader(self, reply: ReplyParser) -> Callable[[str], dict[str, Any]]:
        return reply.parse_json

    def request_kwargs(
        self, signature: SignatureLike, support: ResponseFormatSupport | None = None
    ) -> dict[str, Any]:
        """The ``response_format`` DSPy's JSONAdapter adds to the LM request, in wire form.

        - LM without ``response_format`` support (DSPy's view; the default here): nothing.
        - an output typed ``dict[...]`` (open-ended mapping) or no structured-output support:
          ``{"response_format": {"type": "json_object"}}``.
        - otherwise OpenAI structured outputs: ``{"type": "json_schema", "json_schema": {"name":
          "DSPyProgramOutputs", "schema": <strict schema of the outputs>, "strict": true}}``,
          or ``json_object`` if pydantic cannot build that schema.

        A caller-supplied ``response_format`` is overwritten by DSPy, so apply these last.
        """
        support = support or ResponseFormatSupport()
        if not support.response_format:
            return {}
        plan = self._plan(signature)
        key = (support, self.use_native_function_calling)
        cached = plan.formats.get(key)
        if cached is None:
            from ._schema import response_format

            fields = plan.reply.fields
            fmt = response_format(fields, support.response_schema, key[1])
            cached = plan.formats.setdefault(key, {"response_format": fmt})
        return {"response_format": _copy_json(cached["response_format"])}


class XMLAdapter(ChatAdapter):
    """DSPy's XMLAdapter: each field in ``<name>`` tags; lists, dicts, TypedDicts and pydantic
    models as outputs are nested XML. Like ChatAdapter it retries once with
    :class:`JSONAdapter` after a ``ParseError`` (``use_json_adapter_fallback``)."""

    name: ClassVar[str] = "XMLAdapter"

    def _render(self, name: str, annotation: Any, output: bool) -> Render:
        start, end = f"<{name}>\n", f"\n</{name}>"
        is_str = annotation is str
        if output and is_str:  # text is escaped in the outputs the LM is shown
            return lambda value: start + escape(_text(value, True)) + end
        if output and uses_nested_xml(annotation):

            def nested(value: Any) -> str:
                data = serialize_for_json(value)
                if isinstance(data, (dict, list)):
                    return value_to_xml(data, name)
                return start + _text(value, False) + end

            return nested
        return lambda value: start + _text(value, is_str) + end

    def _structure(self, sig: Signature) -> str:
        def block(f: Field, output: bool) -> str:
            if output and uses_nested_xml(f.annotation):
                return _skeleton(f)
            return self._render(f.name, f.annotation, output)(type_note(f))

        inputs = "\n\n".join(block(f, False) for f in sig.inputs)
        outputs = "\n\n".join(block(f, True) for f in sig.outputs)
        return "\n\n".join((_STRUCTURE_INTRO, inputs, outputs))

    def _reminder(self, sig: Signature) -> str:
        tags = ", then ".join(f"`<{f.name}>`" for f in sig.outputs)
        nested = [_skeleton(f) for f in sig.outputs if uses_nested_xml(f.annotation)]
        shape = f" Use this nested XML structure: {' '.join(nested)}" if nested else ""
        return f"Respond with the corresponding output fields wrapped in XML tags {tags}.{shape}"

    def _assistant(self, plan: _Plan, values: Mapping[str, Any], missing: Any) -> str:
        return _sections(plan.outputs, values, missing).strip()

    def _reader(self, reply: ReplyParser) -> Callable[[str], dict[str, Any]]:
        return xml_reader(reply)


def _skeleton(f: Field) -> str:
    """The nested-XML outline of an output field's type."""
    schema = schema_of(f.annotation)
    return xml_skeleton(f.name, schema, schema.get("$defs", {}), frozenset())


def sort_demos(
    plan: _Plan, demos: Iterable[Mapping[str, Any]]
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """DSPy's demo sorting: the complete demos (every field, none None) and the incomplete ones
    that hold an input and an output; the others are dropped."""
    complete: list[Mapping[str, Any]] = []
    incomplete: list[Mapping[str, Any]] = []
    for demo in demos:
        for name in plan.all_names:
            if demo.get(name) is None:
                break
        else:
            complete.append(demo)
            continue
        if any(k in demo for k in plan.input_names) and any(k in demo for k in plan.output_names):
            incomplete.append(demo)
    return complete, incomplete


def _copy_json(value: Any) -> Any:
    """A copy of JSON data: new dicts and lists, the same texts and numbers."""
    t = type(value)
    if t is str:
        return value
    if t is dict or isinstance(value, dict):
        return {k: v if type(v) is str else _copy_json(v) for k, v in value.items()}
    if t is list or isinstance(value, list):
        return [v if type(v) is str else _copy_json(v) for v in value]
    return value


def _section_block(fields: tuple[Field, ...]) -> str:
    """``[[ ## name ## ]]\\n{name}<type note>`` blocks (DSPy's ``format_field_with_value``)."""
    return "\n\n".join(
        f"[[ ## {f.name} ## ]]\n{format_value(type_note(f), f.annotation is str)}" for f in fields
    ).strip()
