"""Native adapter behaviour beyond byte parity: fallback rules, request kwargs, caching, errors."""

from __future__ import annotations

from typing import Any

import dspy
import pydantic
import pytest
from dspy.adapters.json_adapter import JSONAdapter as DspyJSONAdapter

from dspex.backends.native import (
    ChatAdapter,
    JSONAdapter,
    ResponseFormatSupport,
    UnrecoverableParseError,
)
from dspex.errors import InputError, LMError, ParseError, SignatureError
from dspex.signature import Signature

from .corpus import Agentic, CodeGen, Media, Think, outcome

FULL = ResponseFormatSupport(response_format=True, response_schema=True)


class _FakeLM:
    """Just the capability properties DSPy's JSONAdapter reads before calling the LM."""

    def __init__(self, params: set[str], schema: bool) -> None:
        self.supported_params = params
        self.supports_response_schema = schema


def _dspy_response_format(sig: type, lm: _FakeLM, function_calling: bool = True) -> dict[str, Any]:
    from dspex.backends.native._schema import strict_json_schema

    kwargs: dict[str, Any] = {}
    adapter = DspyJSONAdapter(use_native_function_calling=function_calling)
    adapter._prepare_response_format(lm, kwargs, sig)
    fmt = kwargs.get("response_format")
    if isinstance(fmt, type):  # DSPy's LM layer turns the pydantic model into this wire form
        kwargs["response_format"] = {
            "type": "json_schema",
            "json_schema": {
                "name": fmt.__name__,
                "schema": strict_json_schema(fmt.model_json_schema()),
                "strict": True,
            },
        }
    return kwargs


@pytest.mark.parametrize(
    "text",
    [
        "question -> answer",
        "q -> n: int, tags: list[str], label: Literal['a', 'b'], maybe: str | None",
        "q -> d: dict[str, int]",
        "q -> d: Dict[str, Any], n: int",
        "q -> t: tuple[int, str], s: set[float]",
    ],
)
@pytest.mark.parametrize(
    ("params", "schema"),
    [(set(), False), ({"response_format"}, False), ({"response_format"}, True)],
)
def test_request_kwargs_match_dspy_json_adapter(text: str, params: set[str], schema: bool) -> None:
    lm = _FakeLM(params, schema)
    expected = _dspy_response_format(dspy.Signature(text), lm)
    support = ResponseFormatSupport.of_dspy_lm(lm)
    assert JSONAdapter().request_kwargs(text, support) == expected
    assert ChatAdapter().request_kwargs(text, support) == {}


def test_request_kwargs_for_a_pydantic_output_and_defaults() -> None:
    from .corpus import Rich

    expected = _dspy_response_format(Rich, _FakeLM({"response_format"}, True))
    assert JSONAdapter().request_kwargs(Rich, FULL) == expected
    first = JSONAdapter().request_kwargs(Rich, FULL)
    first["response_format"]["json_schema"]["name"] = "mutated"
    assert JSONAdapter().request_kwargs(Rich, FULL) == expected  # callers get a fresh copy


def test_support_from_a_real_dspy_lm() -> None:
    local = dspy.LM("openai/some-local-model", api_base="http://127.0.0.1:9/v1", api_key="x")
    known = dspy.LM("openai/gpt-4o-mini", api_base="http://127.0.0.1:9/v1", api_key="x")
    assert ResponseFormatSupport.of_dspy_lm(local) == ResponseFormatSupport()
    assert ResponseFormatSupport.of_dspy_lm(known) == FULL
    assert JSONAdapter().request_kwargs("q -> a") == {}


def test_fallback_follows_dspy_chat_adapter_rules() -> None:
    err = ParseError("bad", adapter_name="ChatAdapter", lm_response="x")
    assert isinstance(ChatAdapter().fallback_adapter(err), JSONAdapter)
    assert ChatAdapter(use_json_adapter_fallback=False).fallback_adapter(err) is None
    assert ChatAdapter().fallback_adapter(err, stream_emitted=True) is None
    assert JSONAdapter().fallback_adapter(err) is None
    assert ChatAdapter().fallback_adapter(LMError("context window exceeded", status=400)) is None
    assert ChatAdapter().fallback_adapter(ValueError("bug")) is None
    crash = UnrecoverableParseError("TypeError", adapter_name="ChatAdapter", lm_response="x")
    assert ChatAdapter().fallback_adapter(crash) is None


def test_parse_errors_carry_the_reply_and_partial_result() -> None:
    with pytest.raises(ParseError) as info:
        ChatAdapter().parse("q -> a, b", "[[ ## a ## ]]\nfirst")
    assert info.value.adapter_name == "ChatAdapter"
    assert info.value.lm_response == "[[ ## a ## ]]\nfirst"
    assert info.value.parsed_result == {"a": "first"}
    assert "b" in str(info.value)
    with pytest.raises(ParseError) as info:
        JSONAdapter().parse("q -> n: int", '{"n": "many"}')
    assert info.value.adapter_name == "JSONAdapter"
    assert "n" in str(info.value)
    with pytest.raises(UnrecoverableParseError):
        ChatAdapter().parse("q -> a", None)  # type: ignore[arg-type]


def test_optional_outputs_and_defaults_fill_in_like_dspy() -> None:
    from .corpus import Rich

    reply = (
        '[[ ## color ## ]]\nred\n[[ ## where ## ]]\n{"x": 1}\n[[ ## score ## ]]\n0.5\n'
        "[[ ## points ## ]]\n[]"
    )
    expected = dspy.ChatAdapter().parse(Rich, reply)
    got = ChatAdapter().parse(Rich, reply)
    assert got == expected
    assert got["note"] == "n/a"
    assert ChatAdapter().parse("q -> a: str | None, b", "[[ ## b ## ]]\nx") == {"a": None, "b": "x"}


def test_templates_are_built_once_per_signature_and_adapter() -> None:
    sig = Signature.parse("context, question -> answer, confidence: float")
    chat, json_adapter = ChatAdapter(), JSONAdapter()
    assert chat._plan(sig) is ChatAdapter()._plan(sig)
    assert json_adapter._plan(sig) is not chat._plan(sig)
    assert chat.system_message(sig) is chat.system_message(sig)
    messages = chat.format(sig, [], {"context": "c", "question": "q"})
    assert messages[0]["content"] is chat.system_message(sig)
    assert chat.prepare("context, question -> answer, confidence: float") is sig


def test_bad_list_input_is_an_input_error_not_a_type_error() -> None:
    # DSPy raises a bare TypeError here.
    with pytest.raises(TypeError):
        dspy.ChatAdapter().format(dspy.Signature("question -> answer"), [], {"question": [1, 2]})
    with pytest.raises(InputError, match="must contain strings"):
        ChatAdapter().format("question -> answer", [], {"question": [1, 2]})


def test_dspy_types_native_does_not_know_are_refused_natively() -> None:
    # a type DSPy defines that native does not implement (a later DSPy's, say), and a user
    # type built on it, are left to the dspy backend
    unknown = pydantic.create_model("Unknown", __base__=dspy.Type, __module__="dspy.future")

    class Mine(unknown):  # type: ignore[misc,valid-type]
        pass

    for annotation in (unknown, list[unknown], Mine):  # type: ignore[valid-type]
        sig = dspy.Signature({"q": (str, dspy.InputField()), "m": (annotation, dspy.OutputField())})
        with pytest.raises(SignatureError, match="dspy backend"):
            ChatAdapter().format(sig, [], {})


def test_media_types_are_native() -> None:
    sig = dspy.Signature("image: dspy.Image, clip: dspy.Audio, f: dspy.File -> caption")
    inputs = {
        "image": dspy.Image("https://example.com/a.png"),
        "clip": dspy.Audio(data="UklGRg==", audio_format="wav"),
        "f": dspy.File(file_id="file-1"),
    }
    assert ChatAdapter().format(sig, [], inputs) == dspy.ChatAdapter().format(sig, [], inputs)


def test_media_parts_are_never_shared_between_messages_or_requests() -> None:
    # DSPy caches an Image's format() list: the same image in a demo and in the inputs, formatted
    # twice, gives DSPy's messages each time, with parts of their own (changing one request's
    # parts leaves the next request alone)
    sig = dspy.Signature("image: dspy.Image -> caption")
    cat = dspy.Image("https://example.com/cat.png")
    demos = [{"image": cat, "caption": "A cat."}]
    expected = dspy.ChatAdapter().format(sig, demos, {"image": cat})
    first = ChatAdapter().format(sig, demos, {"image": cat})
    assert first == expected

    def image_part(message: Any) -> Any:
        (part,) = (p for p in message["content"] if p["type"] == "image_url")
        return part

    assert [m["role"] for m in first] == ["system", "user", "assistant", "user"]
    assert image_part(first[1]) is not image_part(first[3])
    image_part(first[1])["image_url"]["url"] = "changed"
    assert ChatAdapter().format(sig, demos, {"image": cat}) == expected


@pytest.mark.parametrize(
    "url",
    ["https://example.com/cat.png", "data:image/png;base64," + "iVBORw0KGgo" * 1000],
    ids=["url", "long data URI"],  # copied by a msgspec round trip / in Python
)
def test_demo_messages_made_once_are_copied_into_every_call(url: str) -> None:
    # a predictor's demos' messages are made once; each call gets its own copy (parts too),
    # so a caller changing one request's messages leaves the next ones alone
    sig = dspy.Signature("image: dspy.Image, note -> caption")
    cat = dspy.Image(url)
    demos = [{"image": cat, "note": "n", "caption": "A cat."}, {"note": "m", "caption": "B."}]
    inputs = {"image": cat, "note": "x"}
    expected = dspy.ChatAdapter().format(sig, demos, inputs)
    adapter = ChatAdapter()
    made = adapter.demo_messages(sig, demos)
    first, second = adapter.format(sig, made, inputs), adapter.format(sig, made, inputs)
    assert first == second == expected
    for one, other in zip(first[1:-1], second[1:-1], strict=True):
        assert one is not other
        assert isinstance(one["content"], str) or one["content"] is not other["content"]
    first[3]["content"][1]["image_url"]["url"] = "changed"  # (incomplete demos come first)
    first[4]["content"] = "changed"
    assert adapter.format(sig, made, inputs) == expected


def test_demo_messages_for_another_signature_or_adapter_are_written_anew() -> None:
    # made for one signature and adapter, taken by another: the demos are formatted for it
    demos = [{"question": "q", "answer": "a", "extra": "e"}]
    made = ChatAdapter().demo_messages("question -> answer", demos)
    for adapter, sig in [
        (ChatAdapter(), "question -> answer, score: float"),
        (JSONAdapter(), "question -> answer"),
    ]:
        assert adapter.format(sig, made, {"question": "x"}) == adapter.format(
            sig, demos, {"question": "x"}
        )


def test_a_media_value_whose_format_fails_ends_as_in_dspy(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: dspy.Image) -> Any:
        raise ValueError("no")

    monkeypatch.setattr(dspy.Image, "format", broken)
    sig = dspy.Signature("image: dspy.Image -> caption")
    inputs = {"image": dspy.Image("https://example.com/cat.png")}
    native = outcome(ChatAdapter().format, sig, [], inputs)
    assert native == outcome(dspy.ChatAdapter().format, sig, [], inputs)


def test_reasoning_is_an_ordinary_leading_string_output() -> None:
    sig = Signature.parse("question -> answer: int").with_reasoning()
    reply = (
        "[[ ## reasoning ## ]]\nSix times seven.\n\n[[ ## answer ## ]]\n42\n\n[[ ## completed ## ]]"
    )
    assert ChatAdapter().parse(sig, reply) == {"reasoning": "Six times seven.", "answer": 42}
    reminder = ChatAdapter().format(sig, [], {"question": "q"})[-1]["content"]
    assert reminder.endswith(
        "starting with the field `[[ ## reasoning ## ]]`, then `[[ ## answer ## ]]` (must be "
        "formatted as a valid Python int), and then ending with the marker for "
        "`[[ ## completed ## ]]`."
    )


@pytest.mark.parametrize(
    ("params", "schema"),
    [(set(), False), ({"response_format"}, False), ({"response_format"}, True)],
)
@pytest.mark.parametrize(
    "sig", [CodeGen, Think, Media, Agentic], ids=["code", "reasoning", "media", "tool-calls"]
)
def test_request_kwargs_for_dspy_type_outputs_match_dspy(
    params: set[str], schema: bool, sig: type
) -> None:
    lm = _FakeLM(params, schema)
    support = ResponseFormatSupport.of_dspy_lm(lm)
    for function_calling in (True, False):  # DSPy's default, and its ChatAdapter's fallback
        native = JSONAdapter(use_native_function_calling=function_calling)
        expected = _dspy_response_format(sig, lm, function_calling)
        assert native.request_kwargs(Signature.from_dspy(sig), support) == expected
