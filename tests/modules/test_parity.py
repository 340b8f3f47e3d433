"""The same program on both implementations: the same messages on the wire, equal predictions."""

from __future__ import annotations

from typing import Any

import dspy
import pytest

import dspex
from dspex.config import ADAPTER_CLASSES
from dspex.errors import ConfigError, ParseError
from dspex.runtime import Runtime
from dspex.testing import RecordedRequest, Reply, ScriptedLM, respond

DEMOS = [{"question": "Capital of Germany?", "answer": "Berlin"}]


@pytest.fixture
def config() -> dspex.Config:
    """Each implementation sends its own requests here, to compare them: the response cache,
    which would answer the second from the first's reply, is off (tests/cache covers it)."""
    return dspex.Config(adaptive={"explore_rate": 0.0}, cache={"memory_mb": 0})


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
    config = dspex.Config(adaptive={"explore_rate": 0.0}, cache={"memory_mb": 0})
    async with Runtime(lm=lm, config=config):
        qa = await dspex.Predict.create("question -> answer")
        for implementation in ("native", "dspy"):
            await qa.execute({"question": "q"}, implementation=implementation)
    native, on_dspy = server.requests[-2:]
    assert native.body == on_dspy.body
    assert native.body is not None
    assert native.body["stop"] == ["x"]
    assert not {"top_p", "seed", "reasoning_effort", "custom"} & set(native.body)


def _two_step_script(answer: str) -> Any:
    """The main LM answers in prose; the extraction LM (ChatAdapter) with the fields."""

    def script(request: RecordedRequest) -> Reply:
        system = request.messages[0]["content"]
        if system.startswith("You are a helpful assistant"):
            return Reply(f"Thinking about it, the answer is {answer}.")
        return respond(answer=answer, reasoning="From the text.")(request)

    return script


@pytest.mark.parametrize("facade", [dspex.Predict, dspex.ChainOfThought])
@pytest.mark.parametrize("spelled", ["dspex", "dspy"])
async def test_two_step_sends_the_same_two_requests_and_agrees(
    rt: Runtime, server: ScriptedLM, facade: type[dspex.Predict], spelled: str
) -> None:
    extraction = dspex.LM("openai/extractor", api_base=server.base_url, api_key="sk-test")
    adapter: Any = (
        dspex.TwoStep(extraction)
        if spelled == "dspex"
        else dspy.TwoStepAdapter(extraction.to_dspy())  # a dspy adapter means the same
    )
    server.script = _two_step_script("Paris")
    kwargs = {"instructions": "Answer briefly.", "demos": DEMOS, "adapter": adapter}
    native = await facade.create("question -> answer", implementation="native", **kwargs)
    reference = await facade.create("question -> answer", implementation="python", **kwargs)
    assert (await native.info()).adapter == "two_step"
    a = await native(question="Capital of France?")
    b = await reference(question="Capital of France?")
    assert a == b
    assert a.answer == "Paris"
    main, extract, main_dspy, extract_dspy = server.requests
    assert (main.body, extract.body) == (main_dspy.body, extract_dspy.body)
    assert main.body is not None
    assert extract.body is not None
    assert (main.body["model"], extract.body["model"]) == ("scripted", "extractor")
    assert a.usage["total_tokens"] > 0


async def test_two_step_extraction_failures_are_parse_errors_on_both(
    rt: Runtime, server: ScriptedLM
) -> None:
    extraction = dspex.LM("openai/extractor", api_base=server.base_url, api_key="sk-test")

    def script(request: RecordedRequest) -> Reply:
        return Reply("no fields here")  # the extraction never parses (nor its JSON fallback)

    server.script = script
    kwargs: dict[str, Any] = {"adapter": dspex.TwoStep(extraction)}
    for implementation in ("native", "dspy"):
        qa = await dspex.Predict.create(
            "question -> answer", implementation=implementation, **kwargs
        )
        with pytest.raises(ParseError):
            await qa(question="q")


def test_bad_adapters_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"TwoStep\.lm must be"):
        dspex.TwoStep("openai/gpt-4o-mini")  # type: ignore[arg-type]


@pytest.mark.parametrize("adapter", ["chat", "xml"])
async def test_text_requests_go_by_dspys_default_engine_and_native_writes_them_alike(
    server: ScriptedLM, adapter: str
) -> None:
    # LM() as a new user leaves it (dspy_engine="auto"): a request of text turns goes by DSPy's
    # default engine (lm15), whose body plain DSPy sends; native sends the same bytes
    lm = dspex.LM(
        "openai/scripted",
        api_base=server.base_url,
        api_key="sk-test",
        temperature=0,
        max_tokens=100,
        extra={"top_p": 1, "stop": "\n\n\n"},
    )
    async with Runtime(lm=lm, config=dspex.Config(adaptive={"explore_rate": 0.0})):
        qa = await dspex.Predict.create("question -> answer", adapter=adapter)
        for implementation in ("native", "dspy"):
            await qa.execute({"question": "q"}, implementation=implementation, cache=False)
    native, on_dspy = server.requests
    plain_lm = dspy.LM(
        "openai/scripted",
        api_base=server.base_url,
        api_key="sk-test",
        temperature=0,
        max_tokens=100,
        top_p=1,
        stop="\n\n\n",
        cache=False,
    )
    with dspy.context(lm=plain_lm, adapter=getattr(dspy, ADAPTER_CLASSES[adapter])()):
        await dspy.Predict("question -> answer").acall(question="q")
    plain = server.requests[-1]
    assert plain.headers["user-agent"].startswith("lm15/")  # plain DSPy's default engine
    assert on_dspy.headers["user-agent"] == plain.headers["user-agent"]
    assert native.content == on_dspy.content == plain.content
    assert native.body is not None
    assert native.body["max_completion_tokens"] == 100
    assert native.body["stop"] == ["\n\n\n"]


@pytest.mark.parametrize(
    ("adapter", "extra", "per_call"),
    [
        ("json", {}, {}),  # response_format
        ("chat", {"logit_bias": {"5": 1}}, {}),  # a parameter native writes only as LiteLLM does
        ("chat", {}, {"n": 2}),  # DSPy's default engine sends n requests for n
        ("chat", {}, {"temperature": 0.5, "max_tokens": 20}),  # these go by lm15, per call too
    ],
)
async def test_each_request_goes_by_the_engine_the_rule_picks_on_both(
    server: ScriptedLM, adapter: str, extra: dict[str, Any], per_call: dict[str, Any]
) -> None:
    lm = dspex.LM("openai/scripted", api_base=server.base_url, api_key="sk-test", extra=extra)
    async with Runtime(lm=lm, config=dspex.Config(adaptive={"explore_rate": 0.0})):
        qa = await dspex.Predict.create("question -> answer", adapter=adapter)
        for implementation in ("native", "dspy"):
            await qa.execute(
                {"question": "q"}, implementation=implementation, cache=False, **per_call
            )
    native, on_dspy = server.requests
    assert native.content == on_dspy.content
    by_lm15 = per_call == {"temperature": 0.5, "max_tokens": 20}
    assert on_dspy.headers["user-agent"].startswith("lm15/" if by_lm15 else "DSPy/")


async def test_dspy_engine_litellm_sends_every_request_by_litellm(server: ScriptedLM) -> None:
    lm = dspex.LM(
        "openai/scripted",
        api_base=server.base_url,
        api_key="sk-test",
        max_tokens=100,
        dspy_engine="litellm",
    )
    async with Runtime(lm=lm, config=dspex.Config(adaptive={"explore_rate": 0.0})):
        qa = await dspex.Predict.create("question -> answer")
        for implementation in ("native", "dspy"):
            await qa.execute({"question": "q"}, implementation=implementation, cache=False)
    native, on_dspy = server.requests
    assert on_dspy.headers["user-agent"].startswith("DSPy/")
    assert native.content == on_dspy.content
    assert native.body is not None
    assert native.body["max_tokens"] == 100


def test_an_unknown_dspy_engine_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="dspy_engine must be"):
        dspex.LM("openai/x", dspy_engine="fast")  # type: ignore[arg-type]
