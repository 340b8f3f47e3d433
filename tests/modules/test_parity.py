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
