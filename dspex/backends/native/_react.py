"""Native ReAct: DSPy 3.4.1's agent loop on native predictors, with async, non-blocking tools.

Each step is one native Predict call (``inputs, trajectory -> next_thought, next_tool_name,
next_tool_args``) sending DSPy's exact prompt, then one tool call whose result (or DSPy-formatted
error) becomes the observation; ``finish`` or ``max_iters`` ends the loop and a native
ChainOfThought extracts the outputs from the trajectory. DSPy's ReAct picks one tool per step, so
tools run one at a time within a call; concurrent calls overlap freely (sync tools run in worker
threads).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Literal

from dspex.backends._spec import NO_OPTIONS, CallOptions, ModuleSpec
from dspex.backends.native._module import parts, required, state_of, total_usage
from dspex.backends.native._predict import NativeChainOfThought, NativePredict, make_adapter
from dspex.backends.native._tools import FINISH, NativeTool, finish_tool, format_error_for_lm
from dspex.config import AdapterName, TwoStep
from dspex.errors import ConfigError, LMError
from dspex.lm import LM, LMClient
from dspex.prediction import Prediction
from dspex.signature import Field, Signature, SignatureLike, ensure_signature
from dspex.streaming._call import STREAM
from dspex.streaming._events import TOOL_ENDED, tool_started

log = logging.getLogger("dspex.native")

_AGENT = (
    "You are an Agent. In each episode, you will be given the fields {inputs} as input. And you "
    "can see your past trajectory so far.",
    "Your goal is to use one or more of the supplied tools to collect any necessary information "
    "for producing {outputs}.\n",
    "To do this, you will interleave next_thought, next_tool_name, and next_tool_args in each "
    "turn, and also when finishing the task.",
    "After each tool call, you receive a resulting observation, which gets appended to your "
    "trajectory.\n",
    "When writing next_thought, you may reason about the current situation and plan for future "
    "steps.",
    "When selecting the next_tool_name and its next_tool_args, the tool must be one of:\n",
)
_JSON_ARGS = "When providing `next_tool_args`, the value inside the field must be in JSON format"

# LiteLLM's test for "the prompt exceeded the context window" (is_error_str_context_window_
# exceeded), which turns such an HTTP error into the ContextWindowExceededError ReAct handles.
_CONTEXT_WINDOW = (
    "exceed context limit",
    "this model's maximum context length is",
    "requested token count exceeds the model's maximum context length",
    "string too long. expected a string with maximum length",
    "model's maximum context limit",
    "is longer than the model's context length",
    "input tokens exceed the configured limit",
    "`inputs` tokens + `max_new_tokens` must be",
    "exceeds the available context size",
    "exceeds the maximum number of tokens allowed",
    '"code": "context_length_exceeded"',
    "prompt is too long",
)


class ContextWindowExceeded(LMError):
    """The prompt did not fit the LM's context window, even with the trajectory truncated
    (DSPy's ``ContextWindowExceededError``)."""


def exceeds_context_window(error: LMError) -> bool:
    """Whether the LM rejected the request as too long for its context window, by the rules of
    the engine DSPy sends the request by (so native and dspy agree on when ReAct truncates its
    trajectory): LiteLLM's reads the error's text."""
    if isinstance(error, ContextWindowExceeded):
        return True
    if error.context_window is not None:  # a request by DSPy's default engine: its rule
        return error.context_window
    if error.status is None or error.status == 429:
        return False
    text = f"{error}\n{error.body or ''}".lower()
    if "string_above_max_length" in text or (
        "invalid 'user'" in text and "string too long" in text
    ):
        return False
    return (
        any(s in text for s in _CONTEXT_WINDOW)
        or ("current length is" in text and "while limit is" in text)
        or ("maximum input length is" in text and "tokens" in text)
        or ("input too long:" in text and "input tokens, limit is" in text)
    )


class NativeReAct:
    """DSPy's ``ReAct``: the same instructions, tool list, trajectory, truncation and errors.

    ``tools`` are callables (sync or async) or ``dspy.Tool`` objects; ``max_iters`` bounds the
    steps. The prediction holds ``trajectory`` (the dict DSPy returns) and the extracted outputs
    (with ``reasoning``), with the token usage of every LM call.
    """

    __slots__ = ("adapter", "extract", "max_iters", "react", "signature", "tools")
    module_type: ClassVar[str] = "ReAct"

    def __init__(
        self,
        signature: SignatureLike,
        tools: Iterable[Any],
        *,
        lm: LM,
        client: LMClient,
        max_iters: int = 20,
        adapter: AdapterName | TwoStep = "chat",
    ):
        sig = self.signature = ensure_signature(signature)
        if isinstance(tools, (str, bytes)) or not isinstance(tools, Iterable):
            raise ConfigError(f"ReAct tools= must be a list of callables, got {tools!r}")
        self.max_iters = max_iters
        by_name: dict[str, NativeTool] = {}
        for tool in tools:
            native = NativeTool.of(tool)
            by_name[native.name] = native
        inputs = ", ".join(f"`{k}`" for k in sig.input_names)
        outputs = ", ".join(f"`{k}`" for k in sig.output_names)
        instr = [f"{sig.instructions}\n"] if sig.instructions else []
        instr.extend(line.format(inputs=inputs, outputs=outputs) for line in _AGENT)
        by_name[FINISH] = finish_tool(outputs)
        instr.extend(f"({idx + 1}) {tool}" for idx, tool in enumerate(by_name.values()))
        instr.append(_JSON_ARGS)
        self.tools = by_name
        names: Any = tuple(by_name)
        react_sig = (
            Signature(sig.inputs, (), "\n".join(instr))
            .append(Field.input("trajectory"))
            .append(Field.output("next_thought"))
            .append(Field.output("next_tool_name", Literal[names]))
            .append(Field.output("next_tool_args", dict[str, Any]))
        )
        extract_sig = Signature(sig.inputs, sig.outputs, sig.instructions or None).append(
            Field.input("trajectory")
        )
        shared = self.adapter = make_adapter(adapter)
        self.react = NativePredict(
            react_sig, lm=lm, client=client, adapter=shared, stream_name="react"
        )
        self.extract = NativeChainOfThought(
            extract_sig, lm=lm, client=client, adapter=shared, stream_name="extract.predict"
        )
        shared.prepare(self.react.signature)
        shared.prepare(self.extract.signature)
        import jsonschema  # noqa: F401 (tool calls check arguments with it: import it now)

    @classmethod
    def from_spec(cls, spec: ModuleSpec, client: LMClient) -> NativeReAct:
        """Build from a spec: options ``tools`` (required) and ``max_iters`` (default 20); a
        ReAct read from a program runs its predictors' state (``react`` and
        ``extract.predict``: optimized instructions and demos)."""
        sig, lm = parts(spec)
        if spec.demos:  # as on dspy: ReAct has two predictors, so demos= has no single target
            raise ConfigError("demos= needs a module with one predictor; ReAct has 2")
        (tools,) = required(spec, "tools")
        max_iters = spec.options.get("max_iters", 20)
        agent = cls(sig, tools, lm=lm, client=client, max_iters=max_iters, adapter=spec.adapter)
        if spec.predictors:
            for name, module in (("react", agent.react), ("extract.predict", agent.extract)):
                module.signature, module.demos = state_of(spec, name, module.signature)
                module.adapter.prepare(module.signature)
        return agent

    async def run(self, values: dict[str, Any], options: CallOptions = NO_OPTIONS) -> Prediction:
        """Run the agent loop on checked inputs (DSPy's ``ReAct.aforward``).

        As in DSPy, a tool name the LM makes up is a ParseError of the whole call (DSPy's
        "failed to select a valid tool" branch catches ValueError, which its parse errors are
        not), and a trajectory the context window cannot hold ends the loop early.
        """
        trajectory: dict[str, Any] = {}
        calls: list[Prediction] = []
        for idx in range(self.max_iters):
            try:
                pred = await self._call(self.react, trajectory, values, options, calls)
            except ContextWindowExceeded as err:
                log.warning(
                    "Ending the trajectory: %s", format_error_for_lm(err, traceback_frames=5)
                )
                break
            name, args = pred["next_tool_name"], pred["next_tool_args"]
            trajectory[f"thought_{idx}"] = pred["next_thought"]
            trajectory[f"tool_name_{idx}"] = name
            trajectory[f"tool_args_{idx}"] = args
            stream = STREAM.get()
            if stream is not None and name != FINISH:
                await stream.put(tool_started(name))
            observation = await self.tools[name].observe(args)
            trajectory[f"observation_{idx}"] = observation
            if stream is not None and not (
                isinstance(observation, str) and observation == "Completed."
            ):
                await stream.put(TOOL_ENDED)
            if name == FINISH:
                break
        extract = await self._call(self.extract, trajectory, values, options, calls)
        return Prediction(
            {"trajectory": trajectory, **extract},
            implementation="native",
            usage=total_usage(calls),
        )

    async def _call(
        self,
        module: NativePredict,
        trajectory: dict[str, Any],
        values: dict[str, Any],
        options: CallOptions,
        calls: list[Prediction],
    ) -> Prediction:
        """One predictor call; a context-window error truncates the trajectory (in place, as
        DSPy does) and retries, three tries in all."""
        last: LMError | None = None
        for _ in range(3):
            try:
                pred = await module.run(
                    {**values, "trajectory": self.adapter.format_user_fields(trajectory)}, options
                )
            except LMError as err:
                if not exceeds_context_window(err):
                    raise
                log.warning(
                    "Trajectory exceeded the context window, truncating the oldest tool call "
                    "information."
                )
                last = err
                truncate_trajectory(trajectory)
            else:
                calls.append(pred)
                return pred
        raise ContextWindowExceeded(
            "The context window was exceeded even after 3 attempts to truncate the trajectory."
        ) from last


def truncate_trajectory(trajectory: dict[str, Any]) -> None:
    """Drop the oldest step (thought, tool name, tool args, observation) in place; DSPy's
    ``ReAct.truncate_trajectory``, raising as it does when only one step is left."""
    keys: Sequence[str] = list(trajectory)
    if len(keys) <= 4:
        raise ContextWindowExceeded(
            "The trajectory is too long so your prompt exceeded the context window, but the "
            "trajectory cannot be truncated because it only has one tool call."
        )
    for key in keys[:4]:
        trajectory.pop(key)
