"""Real DSPy 3.4.1 gets its answers from ScriptedLM, through LiteLLM and through DSPy's default."""

from __future__ import annotations

import logging
import warnings

import pytest

from dspex.testing import Reply, ScriptedLM

ANSWER = "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"


@pytest.mark.parametrize("engine", ["litellm", "auto"])
async def test_dspy_predict_gets_its_answer_from_the_server(
    engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    import dspy

    caplog.set_level(logging.WARNING)
    async with ScriptedLM(Reply(ANSWER, prompt_tokens=40, completion_tokens=9)) as server:
        lm = dspy.LM(
            "openai/scripted",
            api_base=server.base_url,
            api_key="test",
            cache=False,
            engine=engine,
        )
        predict = dspy.Predict("question -> answer")
        with dspy.context(lm=lm):  # LiteLLM imports more of itself on its first call: not tested
            await predict.acall(question="What is the capital of Italy?")
        caplog.clear()
        with warnings.catch_warnings(record=True) as caught, dspy.context(lm=lm):
            warnings.simplefilter("always")
            prediction = await predict.acall(question="What is the capital of France?")
        await lm.aclose()

    assert prediction.answer == "Paris"
    _, request = server.requests
    assert request.model == "scripted"
    assert request.headers["authorization"] == "Bearer test"
    assert request.messages[0]["role"] == "system"
    assert "What is the capital of France?" in request.messages[-1]["content"]
    # LiteLLM/DSPy accepted the reply as it is: no serializer, parsing or logged warnings.
    assert [str(w.message) for w in caught] == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    # The request came through the engine asked for: LiteLLM's OpenAI SDK or DSPy's lm15.
    via_litellm = request.headers.get("x-stainless-lang") == "python"
    assert via_litellm == (engine == "litellm")
    usage = lm.history[-1]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (40, 9)
