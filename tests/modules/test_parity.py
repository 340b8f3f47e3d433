"""The same program on both implementations: the same messages on the wire, equal predictions."""

from __future__ import annotations

import pytest

import dspex
from dspex.runtime import Runtime
from dspex.testing import ScriptedLM

DEMOS = [{"question": "Capital of Germany?", "answer": "Berlin"}]


@pytest.mark.parametrize("facade", [dspex.Predict, dspex.ChainOfThought])
@pytest.mark.parametrize("adapter", ["chat", "json", "xml"])
async def test_native_and_dspy_send_the_same_messages_and_agree(
    rt: Runtime, server: ScriptedLM, facade: type[dspex.Predict], adapter: str
) -> None:
    kwargs = {"instructions": "Answer briefly.", "demos": DEMOS, "adapter": adapter}
    native = await facade.create("question -> answer", implementation="native", **kwargs)
    reference = await facade.create("question -> answer", implementation="python", **kwargs)
    a = await native(question="Capital of France?")
    b = await reference(question="Capital of France?")
    assert a == b
    assert a.answer == "Paris"
    assert (a.implementation, b.implementation) == ("native", "dspy")
    assert not a.fallback
    assert not b.fallback
    first, second = server.requests
    assert first.messages == second.messages
    assert first.body == second.body


async def test_parameters_set_to_none_are_left_out_as_litellm_leaves_them_out(
    server: ScriptedLM,
) -> None:
    extra = {"top_p": None, "seed": None, "reasoning_effort": None, "custom": None, "stop": ["x"]}
    lm = dspex.LM("openai/scripted", api_base=server.base_url, api_key="sk-test", extra=extra)
    config = dspex.Config(adaptive={"explore_rate": 0.0})
    async with Runtime(lm=lm, config=config):
        qa = await dspex.Predict.create("question -> answer")
        for implementation in ("native", "dspy"):
            await qa.execute({"question": "q"}, implementation=implementation)
    native, on_dspy = server.requests[-2:]
    assert native.body == on_dspy.body
    assert native.body is not None
    assert native.body["stop"] == ["x"]
    assert not {"top_p", "seed", "reasoning_effort", "custom"} & set(native.body)
