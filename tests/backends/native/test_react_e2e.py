"""Native ReAct against DSPy 3.4.1's ``ReAct.acall``, both over HTTP to one ScriptedLM.

The LM's replies are functions of the request (the step is read from the trajectory it shows),
so both implementations get the same replies; each test asserts the same sequence of requests
(messages byte for byte and whole bodies) and equal predictions, trajectory included.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import dspy
import pytest

from dspex.backends.native import ContextWindowExceeded, NativeReAct
from dspex.config import ADAPTER_CLASSES
from dspex.errors import ConfigError
from dspex.lm import LM, LMClient
from dspex.signature import Signature
from dspex.testing import RecordedRequest, Reply, ScriptedLM, Status, respond

from .differential import compare

Step = tuple[str, dict[str, Any]]


def lookup(city: str, n: int = 2) -> str:
    """Look up facts
    about a city."""
    return f"{city} is a city (x{n})."


async def weather(city: str) -> dict[str, Any]:
    """The weather in a city."""
    await asyncio.sleep(0)
    return {"city": city, "sky": "clear", "degrees": 21.5}


def _deep(x: int) -> int:
    return _deeper(x)


def _deeper(x: int) -> int:
    raise ZeroDivisionError(f"cannot divide {x}")


def divide(x: int) -> int:
    """Divide by zero, two calls down."""
    return _deep(x)


async def explode(reason: str) -> str:
    """Always fails."""
    await asyncio.sleep(0)
    raise RuntimeError(f"exploded: {reason}")


def nothing() -> None:
    """Returns None."""


TOOLS = [lookup, weather, divide, explode, nothing]


def react_script(steps: list[Step], answer: str = "Paris") -> Any:
    """Answer a ReAct request: step k of ``steps`` (k read from the trajectory), or the
    extraction once the request asks for ``reasoning``."""

    def script(request: RecordedRequest) -> Reply:
        if "next_tool_name" not in request.messages[0]["content"]:
            return respond(reasoning="From the trajectory.", answer=answer)(request)
        # the trajectory's last thought: [[ ## thought_k ## ]] (chat, JSON) or <thought_k> (XML)
        last = request.messages[-1]["content"]
        shown = re.findall(r"\[\[ ## thought_(\d+) ## \]\]|<thought_(\d+)>", last)
        shown = ["".join(groups) for groups in shown]
        k = int(shown[-1]) + 1 if shown else 0
        name, args = steps[min(k, len(steps) - 1)]
        return respond(next_thought=f"Step {k}.", next_tool_name=name, next_tool_args=args)(request)

    return script


async def run_both(
    server: ScriptedLM,
    client: LMClient,
    lm: LM,
    signature: str | type = "question -> answer",
    *,
    tools: list[Any] = TOOLS,
    max_iters: int = 5,
    adapter: str = "chat",
    inputs: dict[str, Any] | None = None,
) -> tuple[tuple[Any, ...], tuple[Any, ...], list[RecordedRequest]]:
    values = inputs or {"question": "What is the capital of France?"}
    native = NativeReAct(
        signature if isinstance(signature, str) else Signature.from_dspy(signature),
        tools,
        lm=lm,
        client=client,
        max_iters=max_iters,
        adapter=adapter,  # type: ignore[arg-type]
    )
    reference = dspy.ReAct(signature, tools=tools, max_iters=max_iters)
    dspy_adapter = getattr(dspy, ADAPTER_CLASSES[adapter])()  # type: ignore[index]

    async def on_dspy() -> Any:
        with dspy.context(lm=lm.to_dspy(), adapter=dspy_adapter):
            return await reference.acall(**values)

    return await compare(server, lambda: native.run(dict(values)), on_dspy)


FINISH: Step = ("finish", {})
LOOKUP: Step = ("lookup", {"city": "Paris"})


@pytest.mark.parametrize(
    ("steps", "requests"),
    [
        ([FINISH], 2),  # one step: finish at once, then extract
        ([LOOKUP, FINISH], 3),  # two steps
        ([("weather", {"city": "Paris"}), ("lookup", {"city": "Lyon", "n": 3}), FINISH], 4),
        ([LOOKUP], 6),  # never finishes: max_iters (5) steps
    ],
    ids=["one-step", "two-steps", "async-and-sync-tools", "max-iters"],
)
@pytest.mark.parametrize("adapter", ["chat", "json", "xml"])
async def test_multi_step_runs_send_what_dspy_sends(
    server: ScriptedLM,
    client: LMClient,
    lm: LM,
    steps: list[Step],
    requests: int,
    adapter: str,
) -> None:
    server.script = react_script(steps)
    got_native, got_dspy, sent = await run_both(server, client, lm, adapter=adapter)
    assert got_native == got_dspy
    assert got_native[0] == "ok"
    assert len(sent) == requests
    # the trajectory is written in the adapter's own format
    trajectory = str(sent[1].messages[-1]["content"])
    assert ("<thought_0>" if adapter == "xml" else "[[ ## thought_0 ## ]]") in trajectory


async def test_the_trajectory_and_outputs_are_dspy_s(
    server: ScriptedLM, client: LMClient, lm: LM
) -> None:
    server.script = react_script(
        [("weather", {"city": "Paris"}), ("nothing", {}), LOOKUP, FINISH], answer="Paris"
    )
    got_native, got_dspy, _ = await run_both(server, client, lm)
    assert got_native == got_dspy
    native = NativeReAct("question -> answer", TOOLS, lm=lm, client=client)
    pred = await native.run({"question": "q"})
    assert list(pred) == ["trajectory", "reasoning", "answer"]
    trajectory = pred.trajectory
    assert trajectory["observation_0"] == {"city": "Paris", "sky": "clear", "degrees": 21.5}
    assert trajectory["observation_1"] is None
    assert trajectory["observation_3"] == "Completed."
    assert list(trajectory)[:4] == ["thought_0", "tool_name_0", "tool_args_0", "observation_0"]
    assert pred.usage["total_tokens"] > 0  # summed over the 5 LM calls


@pytest.mark.parametrize(
    "step",
    [
        ("divide", {"x": 3}),  # a sync tool raising two frames down
        ("explode", {"reason": "boom"}),  # an async tool raising
        ("lookup", {"city": "Paris", "n": "3"}),  # an argument of the wrong type
        ("lookup", {"town": "Paris"}),  # an unknown argument
        ("lookup", {}),  # a missing argument
        ("finish", {"answer": "Paris"}),  # finish takes no arguments
    ],
    ids=["sync-raises", "async-raises", "bad-type", "unknown-arg", "missing-arg", "finish-args"],
)
async def test_tool_errors_become_the_observation_dspy_shows(
    server: ScriptedLM, client: LMClient, lm: LM, step: Step
) -> None:
    server.script = react_script([step, FINISH])
    got_native, got_dspy, sent = await run_both(server, client, lm)
    assert got_native == got_dspy
    trajectory = dict(got_native[1][1])["trajectory"]
    observation = dict(trajectory[1])["observation_0"][1]
    assert observation.startswith(f"Execution error in {step[0]}: \nTraceback")
    assert "Execution error" in sent[1].messages[-1]["content"]


async def test_the_tool_s_own_frames_are_shown_as_dspy_shows_them(
    server: ScriptedLM, client: LMClient, lm: LM
) -> None:
    server.script = react_script([("divide", {"x": 3}), FINISH])
    pred = await NativeReAct("question -> answer", TOOLS, lm=lm, client=client).run(
        {"question": "q"}
    )
    observation = pred.trajectory["observation_0"]
    # DSPy shows at most two frames of the tool's code (its traceback starts three frames above
    # the tool): divide and _deep, not _deeper.
    assert "return _deep(x)" in observation
    assert "return _deeper(x)" in observation
    assert "raise ZeroDivisionError" not in observation
    assert observation.endswith("ZeroDivisionError: cannot divide 3")


async def test_a_bad_tool_name_fails_like_dspy(
    server: ScriptedLM, client: LMClient, lm: LM
) -> None:
    server.script = react_script([("no_such_tool", {})])
    got_native, got_dspy, sent = await run_both(server, client, lm)
    assert got_native == got_dspy == ("parse_error",)
    assert len(sent) == 2  # the ChatAdapter request, then its JSONAdapter fallback


# OpenAI's answer to a prompt too long: LiteLLM knows it by its message, DSPy's default
# engine by its code
CONTEXT_LENGTH_EXCEEDED = json.dumps(
    {
        "error": {
            "message": "This model's maximum context length is 100 tokens.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }
)


def _too_long_at(observations: int) -> Any:
    """A script whose LM rejects any request showing ``observations`` or more observations."""
    base = react_script([LOOKUP, LOOKUP, LOOKUP, FINISH])

    def script(request: RecordedRequest) -> Any:
        shown = request.messages[-1]["content"].count("[[ ## observation_")
        if shown >= observations:
            return Status(400, body=CONTEXT_LENGTH_EXCEEDED)
        return base(request)

    return script


async def test_context_window_errors_truncate_the_trajectory_like_dspy(
    server: ScriptedLM, client: LMClient, lm: LM
) -> None:
    server.script = _too_long_at(3)
    got_native, got_dspy, sent = await run_both(server, client, lm)
    assert got_native == got_dspy
    assert got_native[0] == "ok"
    trajectory = dict(dict(got_native[1][1])["trajectory"][1])
    assert next(iter(trajectory)) == "thought_2"  # the two oldest steps were dropped
    assert [r.action.__class__.__name__ for r in sent].count("Status") == 2


async def test_a_trajectory_that_cannot_shrink_ends_like_dspy(
    server: ScriptedLM, client: LMClient, lm: LM
) -> None:
    server.script = _too_long_at(1)
    got_native, got_dspy, _ = await run_both(server, client, lm)
    assert got_native == got_dspy == ("lm_error",)
    native = NativeReAct("question -> answer", TOOLS, lm=lm, client=client)
    with pytest.raises(ContextWindowExceeded, match="only has one tool call"):
        await native.run({"question": "q"})


class Travel(dspy.Signature):
    """Plan the trip using the tools."""

    origin: str = dspy.InputField(desc="where the trip starts")
    days: int = dspy.InputField()
    plan: list[str] = dspy.OutputField(desc="one line per day")
    budget: float = dspy.OutputField()


async def test_typed_signatures_and_instructions(
    server: ScriptedLM, client: LMClient, lm: LM
) -> None:
    steps = [LOOKUP, FINISH]
    plain = react_script(steps)

    def script(request: RecordedRequest) -> Any:
        if "next_tool_name" in request.messages[0]["content"]:
            return plain(request)
        return respond(reasoning="Short.", plan=["Paris", "Lyon"], budget=120.5)(request)

    server.script = script
    inputs = {"origin": "Paris", "days": 2}
    got_native, got_dspy, sent = await run_both(server, client, lm, Travel, inputs=inputs)
    assert got_native == got_dspy
    assert got_native[0] == "ok"
    system = sent[0].messages[0]["content"]
    assert "Plan the trip using the tools.\n        \n        You are an Agent." in system
    assert "(1) lookup, whose description is <desc>Look up facts      about a city.</desc>" in (
        system
    )
    assert "It takes arguments {'city': {'type': 'string'}, 'n': {'type': 'integer'," in system


def test_predictor_signatures_equal_dspy_s() -> None:
    lm = LM("openai/unused")
    native = NativeReAct(Signature.from_dspy(Travel), TOOLS, lm=lm, client=LMClient())
    reference = dspy.ReAct(Travel, tools=TOOLS)
    assert native.react.signature == Signature.from_dspy(reference.react.signature)
    assert native.extract.signature == Signature.from_dspy(reference.extract.predict.signature)
    assert list(native.tools) == list(reference.tools)


def test_a_tool_named_finish_is_replaced_in_place_as_in_dspy() -> None:
    def finish(x: int) -> int:
        """Mine."""
        return x

    lm = LM("openai/unused")
    native = NativeReAct("question -> answer", [finish, lookup], lm=lm, client=LMClient())
    reference = dspy.ReAct("question -> answer", tools=[finish, lookup])
    assert list(native.tools) == list(reference.tools) == ["finish", "lookup"]
    assert native.react.signature == Signature.from_dspy(reference.react.signature)


async def test_concurrent_calls_overlap_their_tool_calls(client: LMClient) -> None:
    """Tools doing I/O (an async sleep, a blocking sleep) do not serialize concurrent calls."""
    spans: dict[str, list[tuple[float, float]]] = {"async": [], "sync": []}

    async def fetch(url: str) -> str:
        """Fetch a URL."""
        start = time.monotonic()
        await asyncio.sleep(0.2)
        spans["async"].append((start, time.monotonic()))
        return f"<html>{url}</html>"

    def read(path: str) -> str:
        """Read a file (blocking)."""
        start = time.monotonic()
        time.sleep(0.2)
        spans["sync"].append((start, time.monotonic()))
        return path

    steps = [("fetch", {"url": "u"}), ("read", {"path": "p"}), FINISH]
    async with ScriptedLM(react_script(steps)) as server:
        lm = LM("openai/scripted", api_base=server.base_url, api_key="sk-test")
        react = NativeReAct("question -> answer", [fetch, read], lm=lm, client=client)
        preds = await asyncio.gather(*(react.run({"question": f"q{i}"}) for i in range(4)))
    assert [p.answer for p in preds] == ["Paris"] * 4
    for kind, intervals in spans.items():
        assert len(intervals) == 4, kind
        latest_start = max(start for start, _ in intervals)
        earliest_end = min(end for _, end in intervals)
        assert latest_start < earliest_end, f"{kind} tool calls ran one after another"


def test_demos_are_rejected_as_on_dspy() -> None:
    from dspex.backends._spec import ModuleSpec

    spec = ModuleSpec(
        module_type="ReAct",
        signature=Signature.parse("question -> answer"),
        lm=LM("openai/unused"),
        demos=({"question": "q", "answer": "a"},),
        options={"tools": [lookup]},
    )
    with pytest.raises(ConfigError, match="one predictor; ReAct has 2"):
        NativeReAct.from_spec(spec, LMClient())
    with pytest.raises(ConfigError, match=r"needs the option\(s\) \['tools'\]"):
        NativeReAct.from_spec(
            ModuleSpec(module_type="ReAct", signature=spec.signature, lm=spec.lm), LMClient()
        )
