"""Field listeners against DSPy 3.4.1's own ``StreamListener`` (``allow_reuse=True``): the
same deltas in, the same chunks out, one by one, for the chat, JSON and XML adapters and for
every way of cutting a reply into deltas (DSPy's holdback depends on where the cuts fall)."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import pytest

from dspex.streaming import StreamChunk
from dspex.streaming._listen import FieldListener

CHAT = [
    "[[ ## reasoning ## ]]\nParis is the capital of France.\n\n[[ ## answer ## ]]\nParis\n\n"
    "[[ ## completed ## ]]",
    "[[ ## reasoning ## ]]\n  Leading spaces, a [bracket] and a [[ lone pair.  \n\n"
    "[[ ## answer ## ]]\n42\n\n[[ ## completed ## ]]\n",
    # no completed marker: the last field ends with the reply
    "[[ ## reasoning ## ]]\nshort\n\n[[ ## answer ## ]]\nthe end, unmarked",
    # multi-line values and text before the first header
    "Sure!\n[[ ## reasoning ## ]]\nline one\nline two\n\nline four\n\n[[ ## answer ## ]]\n"
    "- a\n- b\n\n[[ ## completed ## ]]",
    # an empty field
    "[[ ## reasoning ## ]]\n\n[[ ## answer ## ]]\nx\n\n[[ ## completed ## ]]",
]
JSON = [
    '{"reasoning": "Paris is the capital.", "answer": "Paris"}',
    '{\n  "reasoning": "It says \\"hi\\", then {braces}.",\n  "answer": "hi"\n}',
    '{"reasoning": "r", "answer": 42}',
    '{"reasoning": "a list follows", "answer": ["x", "y"]}',
]
XML = [
    "<reasoning>\nParis is the capital.\n</reasoning>\n<answer>\nParis\n</answer>",
    "<reasoning>a < b and c </b> d</reasoning><answer>ok</answer>",
    "<reasoning>unclosed reasoning text",
]
ADAPTERS = {"ChatAdapter": CHAT, "JSONAdapter": JSON, "XMLAdapter": XML}
FIELDS = ("reasoning", "answer")


def _cuts(text: str, seed: int) -> list[list[str]]:
    """Ways to send ``text`` as deltas: fixed sizes, the whole, and random cuts."""
    ways = [[text[i : i + size] for i in range(0, len(text), size)] for size in (1, 2, 3, 5, 8)]
    ways.append([text])
    rng = random.Random(seed)
    for _ in range(6):
        pieces, i = [], 0
        while i < len(text):
            step = rng.randint(1, 12)
            pieces.append(text[i : i + step])
            i += step
        ways.append(pieces)
    return ways


def _dspy_chunks(adapter: str, deltas: list[str]) -> list[tuple[str, str, str, bool]]:
    import dspy

    listeners = [
        dspy.streaming.StreamListener(name, predict_name="self", allow_reuse=True)
        for name in FIELDS
    ]
    out: list[tuple[str, str, str, bool]] = []
    with dspy.context(adapter=getattr(dspy, adapter)()):
        for delta in ["", *deltas]:  # the role event's empty content comes first
            chunk = SimpleNamespace(choices=[SimpleNamespace(delta=SimpleNamespace(content=delta))])
            for listener in listeners:
                response = listener.receive(chunk)
                if response is not None:
                    out.append(_tuple(response))
        for listener in listeners:
            final = listener.finalize()
            if final is not None:
                out.append(_tuple(final))
    return out


def _tuple(response: Any) -> tuple[str, str, str, bool]:
    return (
        response.predict_name,
        response.signature_field_name,
        response.chunk,
        response.is_last_chunk,
    )


def _native_chunks(adapter: str, deltas: list[str]) -> list[tuple[str, str, str, bool]]:
    listeners = [FieldListener("self", name, adapter) for name in FIELDS]
    out: list[tuple[str, str, str, bool]] = []
    for delta in ["", *deltas]:
        for listener in listeners:
            chunk = listener.receive(delta)
            if chunk is not None:
                out.append((chunk.predictor, chunk.field, chunk.chunk, chunk.is_last))
    for listener in listeners:
        final = listener.finalize()
        if final is not None:
            out.append((final.predictor, final.field, final.chunk, final.is_last))
    return out


@pytest.mark.parametrize(
    ("adapter", "index"),
    [(adapter, i) for adapter, replies in ADAPTERS.items() for i in range(len(replies))],
)
def test_the_same_chunks_as_dspy_for_every_cut(adapter: str, index: int) -> None:
    reply = ADAPTERS[adapter][index]
    for deltas in _cuts(reply, seed=index):
        assert _native_chunks(adapter, deltas) == _dspy_chunks(adapter, deltas), deltas


def test_a_predictor_called_again_streams_its_fields_again() -> None:
    """A ReAct's loop: the same listeners hear the next reply once the field ended."""
    first = "[[ ## answer ## ]]\none\n\n[[ ## completed ## ]]"
    second = "[[ ## answer ## ]]\ntwo\n\n[[ ## completed ## ]]"
    deltas = [first[i : i + 4] for i in range(0, len(first), 4)]
    deltas += [second[i : i + 4] for i in range(0, len(second), 4)]
    native = _native_chunks("ChatAdapter", deltas)
    assert native == _dspy_chunks("ChatAdapter", deltas)
    texts = "".join(c[2] for c in native if c[1] == "answer")
    assert texts == "onetwo"
    assert [c[3] for c in native if c[1] == "answer"].count(True) == 2


def test_a_field_whole_in_one_delta_streams_nothing() -> None:
    """As DSPy: a field whose header and end arrive together (a cached reply) has no chunks;
    its value is in the Prediction."""
    reply = "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"
    assert _native_chunks("ChatAdapter", [reply]) == []


def test_a_chunk_has_dspy_names_too() -> None:
    chunk = StreamChunk("predict", "answer", "Par", False)
    assert (chunk.predict_name, chunk.signature_field_name, chunk.is_last_chunk) == (
        "predict",
        "answer",
        False,
    )
