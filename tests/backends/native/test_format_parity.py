"""Messages: dspex's native adapters vs DSPy 3.4.1's, byte for byte, over the whole corpus."""

from __future__ import annotations

from typing import Any

import dspy
import pytest

from dspex.backends.native import ChatAdapter, JSONAdapter, XMLAdapter
from dspex.backends.native._two_step import TwoStepAdapter
from dspex.lm import LM
from dspex.signature import Signature

from .corpus import demos_for, dspy_signatures, inputs_for

ADAPTERS = [
    (dspy.ChatAdapter, ChatAdapter),
    (dspy.JSONAdapter, JSONAdapter),
    (dspy.XMLAdapter, XMLAdapter),
    # DSPy's TwoStepAdapter: its first step's messages (the second is a ChatAdapter call)
    (
        lambda: dspy.TwoStepAdapter(dspy.LM("openai/extract")),
        lambda: TwoStepAdapter(LM("openai/extract")),
    ),
]


def _cases() -> list[Any]:
    cases = []
    for sig_id, dspy_sig in dspy_signatures():
        for demo_id, demos in demos_for(dspy_sig).items():
            for input_id, inputs in inputs_for(dspy_sig).items():
                cases.append(
                    pytest.param(dspy_sig, demos, inputs, id=f"{sig_id}|{demo_id}|{input_id}")
                )
    return cases


def _assert_same(expected: list[dict[str, Any]], actual: list[dict[str, Any]]) -> None:
    assert len(actual) == len(expected)
    for exp, act in zip(expected, actual, strict=True):
        assert act == exp, f"\nexpected {exp['content']!r}\nactual   {act['content']!r}"


@pytest.mark.parametrize(("dspy_sig", "demos", "inputs"), _cases())
def test_messages_match_dspy(
    dspy_sig: type, demos: list[dict[str, Any]], inputs: dict[str, Any]
) -> None:
    native = Signature.from_dspy(dspy_sig)
    cot_dspy = dspy.ChainOfThought(dspy_sig).predict.signature
    for dspy_adapter, native_adapter in ADAPTERS:
        expected = dspy_adapter().format(dspy_sig, demos, inputs)
        _assert_same(expected, native_adapter().format(native, demos, inputs))
        # the demos' messages made once (as a native predictor keeps them), copied into calls
        adapter = native_adapter()
        made = adapter.demo_messages(native, demos)
        _assert_same(expected, adapter.format(native, made, inputs))
        _assert_same(expected, adapter.format(native, made, inputs))
        # a dspy.Signature class is accepted wherever a signature is
        _assert_same(expected, native_adapter().format(dspy_sig, demos, inputs))
        # ChainOfThought: the reasoning-extended signature
        cot_expected = dspy_adapter().format(cot_dspy, demos, inputs)
        _assert_same(cot_expected, native_adapter().format(native.with_reasoning(), demos, inputs))


@pytest.mark.parametrize(
    ("text", "instructions"),
    [("question -> answer", None), ("a, b: int -> c: list[str]", "Do it.")],
)
def test_string_signatures_format_like_dspy_string_signatures(
    text: str, instructions: str | None
) -> None:
    inputs = {"question": "q", "a": "x", "b": 3}
    for dspy_adapter, native_adapter in ADAPTERS:
        expected = dspy_adapter().format(dspy.Signature(text, instructions), [], inputs)
        assert (
            native_adapter().format(
                text if instructions is None else Signature.parse(text, instructions), [], inputs
            )
            == expected
        )


def test_reference_doc_qa_messages() -> None:
    """The exact wire format quoted in shared/reference/dspy-3.4.1.md."""
    from .corpus import QA

    demos = [
        {
            "context": "Paris is the capital of France.",
            "question": "What is the capital of France?",
            "answer": "Paris",
            "confidence": 0.99,
        }
    ]
    inputs = {
        "context": "Berlin is the capital of Germany.",
        "question": "What is the capital of Germany?",
    }
    messages = ChatAdapter().format(QA, demos, inputs)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"].startswith(
        "Your input fields are:\n1. `context` (str): facts to use\n2. `question` (str):\n"
    )
    assert (
        "{confidence}        # note: the value you produce must be a single float value"
        in messages[0]["content"]
    )
    assert messages[0]["content"].endswith(
        "your objective is: \n        Answer the question using the context."
    )
    assert (
        messages[2]["content"]
        == "[[ ## answer ## ]]\nParis\n\n[[ ## confidence ## ]]\n0.99\n\n[[ ## completed ## ]]\n"
    )
    assert messages[3]["content"].endswith(
        "Respond with the corresponding output fields, starting with the field "
        "`[[ ## answer ## ]]`, then `[[ ## confidence ## ]]` (must be formatted as a valid Python "
        "float), and then ending with the marker for `[[ ## completed ## ]]`."
    )
    json_reminder = JSONAdapter().format(QA, [], inputs)[-1]["content"]
    assert json_reminder.endswith(
        "Respond with a JSON object in the following order of fields: `answer`, then `confidence` "
        "(must be formatted as a valid Python float)."
    )


def test_legacy_custom_type_markers_are_expanded_like_dspy() -> None:
    marker = (
        '<<CUSTOM-TYPE-START-IDENTIFIER>>[{"type": "text", "text": "inner"}]'
        "<<CUSTOM-TYPE-END-IDENTIFIER>>"
    )
    inputs = {"question": f"before {marker} after"}
    for dspy_adapter, native_adapter in ADAPTERS:
        expected = dspy_adapter().format(dspy.Signature("question -> answer"), [], inputs)
        actual = native_adapter().format("question -> answer", [], inputs)
        assert actual == expected
        # content parts, but for TwoStepAdapter's first step, which DSPy leaves as text
        two_step = isinstance(native_adapter(), TwoStepAdapter)
        assert isinstance(actual[-1]["content"], str if two_step else list)


@pytest.mark.parametrize(
    ("sig_id", "dspy_sig"), dspy_signatures(), ids=[s for s, _ in dspy_signatures()]
)
def test_two_step_extraction_messages_match_dspy(sig_id: str, dspy_sig: type) -> None:
    reference = dspy.TwoStepAdapter(dspy.LM("openai/extract"))._create_extractor_signature(dspy_sig)
    ours = TwoStepAdapter(LM("openai/extract")).extractor(Signature.from_dspy(dspy_sig))
    inputs = {"text": "The answer is Paris.\nConfidence 0.9"}
    assert ChatAdapter().format(ours, [], inputs) == dspy.ChatAdapter().format(
        reference, [], inputs
    )
