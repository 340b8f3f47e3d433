"""Native Predict and ChainOfThought: format -> one async LM call -> parse, as DSPy 3.4.1 does."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import msgspec

from dspex.backends._spec import NO_OPTIONS, CallOptions
from dspex.backends.native import _adapters
from dspex.backends.native._adapters import Adapter
from dspex.backends.native._catalog import (
    function_calling,
    lm_feature,
    response_format_support,
)
from dspex.backends.native._parsing import UnrecoverableParseError, loads_lenient
from dspex.backends.native._two_step import TwoStepAdapter
from dspex.backends.native._types import allows_none, is_reasoning, is_tool_calls
from dspex.config import ADAPTER_CLASSES, ADAPTERS, AdapterName, TwoStep
from dspex.errors import ConfigError, InputError, ParseError, SignatureError
from dspex.lm import LM, Completion, LMClient, Usage
from dspex.prediction import Prediction
from dspex.signature import Signature, SignatureLike, ensure_signature
from dspex.streaming._call import STREAM

log = logging.getLogger("dspex.native")


def make_adapter(adapter: AdapterName | TwoStep | Adapter) -> Adapter:
    """The adapter instance for a name (``chat`` falls back to JSON on parse errors) or a
    :class:`~dspex.TwoStep`."""
    if isinstance(adapter, Adapter):
        return adapter
    if isinstance(adapter, TwoStep):
        return TwoStepAdapter(adapter.lm)
    if adapter not in ADAPTERS:
        raise ConfigError(
            f"adapter must be one of {', '.join(map(repr, ADAPTERS))}, got {adapter!r}"
        )
    made: Adapter = getattr(_adapters, ADAPTER_CLASSES[adapter])()
    return made


def check_inputs(signature: Signature, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs a call runs with, checked against ``signature``.

    As DSPy does, fields with defaults get them and unknown keys are ignored (with a warning);
    unlike DSPy, which sends the LM a prompt with the field missing, a missing required input is
    an :class:`InputError` naming it.
    """
    if type(inputs) is not dict and not isinstance(inputs, Mapping):  # a dict: no ABC check
        raise InputError(
            f"inputs must be a mapping of field name to value, got {type(inputs).__name__}"
        )
    values = dict(inputs)
    names = signature.input_names
    if len(values) == len(names):  # the usual call: exactly the input fields
        for name in names:
            if name not in values:
                break
        else:
            return values
    missing = []
    for field in signature.inputs:
        if field.name in values:
            continue
        if field.default_factory is not None:
            values[field.name] = field.default_factory()
        elif field.default is not msgspec.UNSET:
            values[field.name] = field.default
        elif not allows_none(field.annotation):
            missing.append(field.name)
    if missing:
        raise InputError(
            f"missing input field(s) {missing} for signature {signature.signature!r}; "
            f"given: {list(inputs)}"
        )
    extra = [k for k in values if k not in names]
    if extra:
        log.warning(
            "inputs %s are not input fields of %r and are ignored",
            extra,
            signature.signature,
        )
        for k in extra:
            del values[k]
    return values


class NativePredict:
    """DSPy's ``Predict`` on dspex's async LM client: same messages, same parsing, same fallback.

    ``await predict(inputs)`` sends one chat completion request (two when the ChatAdapter's reply
    does not parse and DSPy would retry with the JSONAdapter) and returns a :class:`Prediction`.
    """

    __slots__ = (
        "_demo_messages",
        "_demos",
        "_signature",
        "adapter",
        "client",
        "extract",
        "lm",
        "prompt",
        "reasoning",
        "stream_name",
        "tool_calls",
        "tools",
    )
    module_type: ClassVar[str] = "Predict"

    def __init__(
        self,
        signature: SignatureLike,
        *,
        lm: LM,
        client: LMClient,
        demos: Sequence[Mapping[str, Any]] = (),
        adapter: AdapterName | TwoStep | Adapter = "chat",
        stream_name: str | None = "self",
    ):
        self.lm = lm
        self.client = client
        self.adapter = make_adapter(adapter)
        self.demos = demos
        self.signature = ensure_signature(signature)
        # its path in DSPy's named_predictors, which its stream chunks carry; None: a
        # predictor DSPy makes per call (Refine's feedback), whose replies DSPy does not stream
        self.stream_name = stream_name

    @property
    def demos(self) -> tuple[Mapping[str, Any], ...]:
        """The demos; setting them (the predictor's state, as DSPy's ``demos``) drops the
        messages made for the previous ones. A call sends their messages as made on its first
        use: change demos by setting them, not by changing their values in place."""
        return self._demos

    @demos.setter
    def demos(self, demos: Sequence[Mapping[str, Any]]) -> None:
        self._demos = tuple(demos)
        self._demo_messages: _adapters.DemoMessages | None = None

    def _demos_for(self, adapter: Adapter) -> Any:
        """What ``adapter.format`` takes for the demos: their messages, made on the first call
        for the predictor's own adapter and prompt (setting the demos or the signature drops
        them; the JSONAdapter a ChatAdapter falls back to writes the demos per call)."""
        if not self._demos or adapter is not self.adapter:
            return self._demos
        made = self._demo_messages
        if made is None:
            made = self._demo_messages = adapter.demo_messages(self.prompt, self._demos)
        return made

    @property
    def signature(self) -> Signature:
        """The signature; setting it (a program's optimized one) settles what it decides for
        every call, and raises SignatureError where DSPy would use an LM feature native does
        not (:func:`~dspex.backends.native._catalog.lm_feature`)."""
        return self._signature

    @signature.setter
    def signature(self, signature: Signature) -> None:
        adapter, lm = self.adapter, self.lm
        # TwoStepAdapter: the second step, a Predict on the extraction LM
        self.extract: NativePredict | None = None
        if isinstance(adapter, TwoStepAdapter):
            extractor = adapter.extractor(signature)
            self.extract = NativePredict(
                extractor, lm=adapter.lm, client=self.client, stream_name=None
            )
        feature = None if self.extract else lm_feature(signature, lm, adapter)
        if feature is not None:
            raise SignatureError(
                f"{feature}, which the native implementation does not do; run this signature "
                "on the dspy backend"
            )
        self._signature = signature
        self._demo_messages = None  # (made for the previous prompt)
        # dspy.Reasoning outputs: the LM's own reasoning (reasoning_content) replaces the text
        self.reasoning = tuple(f.name for f in signature.outputs if is_reasoning(f.annotation))
        # a dspy.ToolCalls output: the tool calls an LM sends replace it
        self.tool_calls = next(
            (f.name for f in signature.outputs if is_tool_calls(f.annotation)), None
        )
        # DSPy's native function calling: the tools input goes as the request's tools, and
        # the prompt is the signature without it and the ToolCalls output
        self.tools = function_calling(signature, lm, adapter)
        self.prompt = signature
        if self.tools is not None and self.tool_calls is not None:
            self.prompt = signature.delete(self.tool_calls).delete(self.tools)

    async def __call__(
        self, inputs: Mapping[str, Any], options: CallOptions = NO_OPTIONS
    ) -> Prediction:
        """Run the call; raises InputError, LMError (and subclasses) or ParseError."""
        return await self.run(check_inputs(self.signature, inputs), options)

    async def run(self, values: dict[str, Any], options: CallOptions = NO_OPTIONS) -> Prediction:
        """Run the call on inputs already checked with :func:`check_inputs`."""
        sig = self.signature
        lm = self.lm
        temperature = options.temperature
        n = options.n or lm.extra.get("n") or 1
        # DSPy: unset or near-zero temperature with n > 1 becomes 0.7, to keep the samples apart.
        effective = temperature or lm.temperature
        if (effective is None or effective <= 0.15) and n > 1:
            temperature = 0.7
        adapter = self.adapter
        if self.extract is not None:
            return await self._two_steps(values, temperature, options)
        prompt = self.prompt
        stream = STREAM.get()
        on_text = None
        if stream is not None and self.stream_name is not None:
            # the listeners read the configured adapter's markers, also in a JSON retry (DSPy)
            on_text = stream.listeners(self.stream_name, adapter.name, sig.output_names).feed
        while True:  # one coroutine for both tries: fewer frames held per call in flight
            messages = adapter.format(prompt, self._demos_for(adapter), values)
            extra = adapter.request_kwargs(sig, response_format_support(lm))
            if self.tools is not None:
                extra = {**extra, "tools": _function_specs(self.tools, values.get(self.tools))}
            completion = await self.client.complete(
                lm,
                messages,
                temperature=temperature,
                max_tokens=options.max_tokens,
                n=options.n,
                extra=extra or None,
                on_text=on_text,
            )
            try:
                if self.tool_calls is not None and (self.tools or completion.tool_calls):
                    outputs = _parse_with_tool_calls(
                        adapter, prompt, sig, completion, self.tool_calls
                    )
                else:
                    outputs = adapter.parse_completions(sig, completion.texts)
            except ParseError as error:
                fallback = adapter.fallback_adapter(error)
                if fallback is None:
                    raise
                adapter = fallback  # DSPy's ChatAdapter retries once with its JSONAdapter
                continue
            if self.reasoning and completion.reasonings:
                _take_reasoning(self.reasoning, outputs, completion.reasonings)
            return _prediction(outputs, completion.usage)

    async def _two_steps(
        self, values: dict[str, Any], temperature: float | None, options: CallOptions
    ) -> Prediction:
        """TwoStepAdapter: the module's LM answers the plain prompt, then the extraction LM
        reads the outputs from each answer."""
        assert self.extract is not None
        completion = await self.client.complete(
            self.lm,
            self.adapter.format(self.signature, self.demos, values),
            temperature=temperature,
            max_tokens=options.max_tokens,
            n=options.n,
        )
        return await _extracted(self.extract, completion, self.tool_calls)


async def _extracted(
    extract: NativePredict, completion: Completion, tool_calls: str | None
) -> Prediction:
    """TwoStepAdapter's second step on each choice of the first: the outputs ``extract`` reads
    from its text (and the tool calls the LM sent, if the signature has that output)."""
    values, usage = [], completion.usage
    for i, text in enumerate(completion.texts):
        try:
            pred = await extract.run({"text": text})
        except ParseError as exc:
            raise ParseError(
                f"Failed to parse response from the original completion: {exc}",
                adapter_name="TwoStepAdapter",
                lm_response=text,
            ) from exc
        value = dict(pred.completions[0])
        calls = completion.tool_calls[i] if completion.tool_calls else None
        if calls and tool_calls is not None:
            from dspy.adapters.types.tool import ToolCalls

            listed = [_tool_call(call) for call in calls]
            value[tool_calls] = ToolCalls.from_dict_list(
                [{"name": c["name"], "args": c["args"]} for c in listed]
            )
        values.append(value)
        step = pred.usage
        usage = usage + Usage(
            step.get("prompt_tokens", 0),
            step.get("completion_tokens", 0),
            step.get("total_tokens", 0),
        )
    return _prediction(values, usage)


def _prediction(outputs: list[dict[str, Any]], usage: Usage) -> Prediction:
    """A native prediction: the first completion's fields, all completions, the LM usage."""
    return Prediction(
        outputs[0],
        implementation="native",
        completions=outputs,
        usage={
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        },
    )


def _function_specs(name: str, tools: Any) -> list[dict[str, Any]]:
    """The request's ``tools``: each ``dspy.Tool`` of input ``name`` as a function."""
    listed = tools if isinstance(tools, list) else [tools]
    specs = []
    for tool in listed:
        spec = getattr(tool, "format_as_litellm_function_call", None)
        if spec is None:
            raise InputError(f"{name} must hold dspy.Tool objects, got {type(tool).__name__}")
        specs.append(spec())
    return specs


def _parse_with_tool_calls(
    adapter: Adapter, prompt: Signature, sig: Signature, completion: Completion, name: str
) -> list[dict[str, Any]]:
    """The completions of a call on ``sig``, whose ``dspy.ToolCalls`` output is ``name``, as
    DSPy's adapters take them when the LM may send tool calls: a choice with tool calls has
    them as that output, its text (read with ``prompt``, the signature the LM was shown),
    parsed if it can be, for the others (None if not)."""
    from dspy.adapters.types.tool import ToolCalls

    values = []
    tool_calls = completion.tool_calls or [None] * len(completion.texts)
    for text, calls in zip(completion.texts, tool_calls, strict=True):
        if text and not calls:
            value = adapter.parse(prompt, text)
        elif calls:
            try:
                value = adapter.parse(prompt, text) if text and prompt.outputs else {}
            except UnrecoverableParseError:
                raise
            except ParseError:
                value = {}
        else:
            raise ParseError(
                "The LM returned an empty or null response.",
                adapter_name=adapter.name,
                lm_response=str(text),
            )
        value = adapter.fill_outputs(sig, value)
        if calls:
            value[name] = ToolCalls.from_dict_list([_tool_call(call) for call in calls])
        values.append(value)
    return values


def _tool_call(call: Any) -> dict[str, Any]:
    """One OpenAI tool call as DSPy reads it: ``{"id", "name", "args"}`` (arguments read as
    lenient JSON)."""
    call = call if isinstance(call, dict) else {}
    function = call.get("function", {}) or {}
    function = function if isinstance(function, dict) else {}
    arguments = function.get("arguments") or call.get("arguments", {})
    if isinstance(arguments, str):
        args = loads_lenient(arguments)
    elif isinstance(arguments, dict):
        args = arguments
    else:
        args = {}
    return {
        "id": call.get("call_id") or call.get("id"),
        "name": function.get("name") or call.get("name"),
        "args": args,
    }


def _take_reasoning(
    names: tuple[str, ...], outputs: list[dict[str, Any]], reasonings: list[str | None]
) -> None:
    """Set each completion's ``dspy.Reasoning`` outputs to the reasoning the LM sent with it,
    if it sent any, as DSPy's adapters do after parsing."""
    from dspy.adapters.types.reasoning import Reasoning

    for value, reasoning in zip(outputs, reasonings, strict=True):
        if reasoning:
            for name in names:
                value[name] = Reasoning(content=reasoning)


class NativeChainOfThought(NativePredict):
    """DSPy's ``ChainOfThought``: Predict on the signature with ``reasoning`` prepended to the
    outputs (desc ``${reasoning}``), exactly as DSPy builds it."""

    __slots__ = ()
    module_type: ClassVar[str] = "ChainOfThought"

    def __init__(
        self,
        signature: SignatureLike,
        *,
        lm: LM,
        client: LMClient,
        demos: Sequence[Mapping[str, Any]] = (),
        adapter: AdapterName | TwoStep | Adapter = "chat",
        stream_name: str | None = "predict",
    ):
        super().__init__(
            ensure_signature(signature).with_reasoning(),
            lm=lm,
            client=client,
            demos=demos,
            adapter=adapter,
            stream_name=stream_name,
        )
