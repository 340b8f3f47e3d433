"""Native adapters vs DSPy 3.4.1's: the per-call format + parse work of one Predict call.

    python benchmarks/bench_adapters.py [--quick]

For each case (ChatAdapter on Predict's signature, ChatAdapter on ChainOfThought's signature,
JSONAdapter, XMLAdapter), over the reference QA signature (two inputs, a ``float`` output, one
demo), a plain ``question -> answer``, a conversation (a ``dspy.History`` of two turns), a
``dspy.Code`` output, tools (``list[dspy.Tool]`` in, ``dspy.ToolCalls`` out) and media (a
``dspy.Image`` in, a ``dspy.Reasoning`` out), plus XMLAdapter on outputs written as nested XML
(a list of pydantic models and a model): the time of formatting one call's messages followed
by parsing the reply, as each side's Predict does on every call, in the same run. DSPy:
``dspy.ChatAdapter().format(sig, demos, inputs)`` + ``.parse(sig, reply)``. Native:
``adapter.format(sig, demo_messages, inputs)`` + ``adapter.parse_completions(sig, [reply])``,
where ``demo_messages = adapter.demo_messages(sig, demos)`` is made once, as a native predictor
makes it when it gets its demos (its state); ``format, demos written per call`` reports native
formatting the demos on every call too, as DSPy does. Each side is the best of several timeit
repeats (the least disturbed). Both sides are first checked to produce equal messages and
values. Target: native format + parse at least 30x faster on every case.

Prints a table and writes benchmarks/results/bench_adapters.json; exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import dspy
import pydantic
from _common import Row, report

from dspex.backends.native import Adapter, ChatAdapter, JSONAdapter, XMLAdapter
from dspex.signature import Signature

TARGET = 30.0


class QA(dspy.Signature):
    """Answer the question using the context."""

    context: str = dspy.InputField(desc="facts to use")
    question: str = dspy.InputField()
    answer: str = dspy.OutputField(desc="a short answer")
    confidence: float = dspy.OutputField()


QA_DEMOS = [
    {
        "context": "Paris is the capital of France.",
        "question": "What is the capital of France?",
        "answer": "Paris",
        "confidence": 0.99,
    }
]
QA_INPUTS = {"context": "Berlin is the capital of Germany.", "question": "What is the capital?"}
QA_OUTPUTS = {"answer": "Berlin", "confidence": 0.95}
PLAIN_DEMOS = [{"question": "What is the capital of France?", "answer": "Paris"}]
PLAIN_INPUTS = {"question": "What is the capital of Germany?"}
PLAIN_OUTPUTS = {"answer": "Berlin"}
REASONING = "The context says Berlin is the capital of Germany."


class Chat(dspy.Signature):
    """Answer the question, given the conversation so far."""

    history: dspy.History = dspy.InputField()
    question: str = dspy.InputField()
    answer: str = dspy.OutputField()


CHAT_INPUTS = {
    "history": dspy.History(
        messages=[
            {"question": "What is the capital of France?", "answer": "Paris"},
            {"question": "And of Italy?", "answer": "Rome"},
        ]
    ),
    "question": "And of Germany?",
}


class CodeGen(dspy.Signature):
    """Write the code."""

    task: str = dspy.InputField()
    code: dspy.Code = dspy.OutputField()


CODE_DEMOS = [{"task": "Print one.", "code": dspy.Code(code="print(1)")}]
CODE_INPUTS = {"task": "Print two."}
CODE_OUTPUTS = {"code": dspy.Code(code="print(2)")}


def search(query: str) -> list[str]:
    """Search the web."""
    return [query]


class Agent(dspy.Signature):
    """Pick the tools to call, then answer."""

    question: str = dspy.InputField()
    tools: list[dspy.Tool] = dspy.InputField()
    calls: dspy.ToolCalls = dspy.OutputField()
    answer: str = dspy.OutputField()


TOOLS = [dspy.Tool(search)]
CALLS = dspy.ToolCalls.from_dict_list([{"name": "search", "args": {"query": "Berlin"}}])
AGENT_DEMOS = [
    {"question": "Capital of France?", "tools": TOOLS, "calls": CALLS, "answer": "Paris"}
]
AGENT_INPUTS = {"question": "Capital of Germany?", "tools": TOOLS}
AGENT_OUTPUTS = {"calls": CALLS, "answer": "Berlin"}


class Look(dspy.Signature):
    """Describe the photo, thinking first."""

    photo: dspy.Image = dspy.InputField()
    why: dspy.Reasoning = dspy.OutputField()
    caption: str = dspy.OutputField()


LOOK_DEMOS = [
    {
        "photo": dspy.Image("https://example.com/cat.png"),
        "why": dspy.Reasoning(content="Whiskers."),
        "caption": "A cat.",
    }
]
LOOK_INPUTS = {"photo": dspy.Image("https://example.com/dog.png")}
LOOK_OUTPUTS = {"why": dspy.Reasoning(content="Floppy ears."), "caption": "A dog."}


class City(pydantic.BaseModel):
    name: str
    population: int


class Cities(dspy.Signature):
    """List the largest cities of the country."""

    country: str = dspy.InputField()
    cities: list[City] = dspy.OutputField()
    capital: City = dspy.OutputField()


BERLIN = City(name="Berlin", population=3_700_000)
CITIES_DEMOS = [
    {
        "country": "France",
        "cities": [City(name="Paris", population=2_100_000)],
        "capital": City(name="Paris", population=2_100_000),
    }
]
CITIES_INPUTS = {"country": "Germany"}
CITIES_OUTPUTS = {"cities": [BERLIN, City(name="Hamburg", population=1_900_000)], "capital": BERLIN}


class Case:
    """One signature + adapter: the two per-call functions, checked to agree before timing."""

    def __init__(
        self,
        name: str,
        dspy_adapter: Any,
        native_adapter: Adapter,
        dspy_sig: type,
        native_sig: Signature,
        demos: list[dict[str, Any]],
        inputs: dict[str, Any],
        outputs: dict[str, Any],
    ) -> None:
        self.name = name
        # the reply an LM would send: the adapter's own rendering of the expected outputs
        reply: str = dspy_adapter.format_assistant_message_content(dspy_sig, outputs)
        expected = dspy_adapter.format(dspy_sig, demos, inputs)
        demo_messages = native_adapter.demo_messages(native_sig, demos)
        assert native_adapter.format(native_sig, demos, inputs) == expected, name
        assert native_adapter.format(native_sig, demo_messages, inputs) == expected, name
        assert native_adapter.parse_completions(native_sig, [reply]) == [outputs], name
        assert dspy_adapter.parse(dspy_sig, reply) == outputs, name

        def dspy_format() -> Any:
            return dspy_adapter.format(dspy_sig, demos, inputs)

        def dspy_parse() -> Any:
            return dspy_adapter.parse(dspy_sig, reply)

        def dspy_call() -> Any:
            dspy_adapter.format(dspy_sig, demos, inputs)
            return dspy_adapter.parse(dspy_sig, reply)

        def native_format() -> Any:
            return native_adapter.format(native_sig, demo_messages, inputs)

        def native_format_demos() -> Any:
            return native_adapter.format(native_sig, demos, inputs)

        def native_parse() -> Any:
            return native_adapter.parse_completions(native_sig, [reply])

        def native_call() -> Any:
            native_adapter.format(native_sig, demo_messages, inputs)
            return native_adapter.parse_completions(native_sig, [reply])

        self.pairs = {
            "format": (native_format, dspy_format),
            "format, demos written per call": (native_format_demos, dspy_format),
            "parse": (native_parse, dspy_parse),
            "format+parse": (native_call, dspy_call),
        }


def cases() -> list[Case]:
    out: list[Case] = []
    for label, dspy_sig, demos, inputs, outputs in (
        ("QA", QA, QA_DEMOS, QA_INPUTS, QA_OUTPUTS),
        ("plain", dspy.Signature("question -> answer"), PLAIN_DEMOS, PLAIN_INPUTS, PLAIN_OUTPUTS),
        ("History", Chat, PLAIN_DEMOS, CHAT_INPUTS, PLAIN_OUTPUTS),
        ("Code", CodeGen, CODE_DEMOS, CODE_INPUTS, CODE_OUTPUTS),
        ("Tools", Agent, AGENT_DEMOS, AGENT_INPUTS, AGENT_OUTPUTS),
        ("Media", Look, LOOK_DEMOS, LOOK_INPUTS, LOOK_OUTPUTS),
    ):
        native_sig = Signature.from_dspy(dspy_sig)
        cot_sig = dspy.ChainOfThought(dspy_sig).predict.signature
        cot_outputs = {"reasoning": REASONING, **outputs}
        cot_demos = [{**d, "reasoning": "From the context."} for d in demos]
        out += [
            Case(
                f"{label} Chat/Predict",
                dspy.ChatAdapter(),
                ChatAdapter(),
                dspy_sig,
                native_sig,
                demos,
                inputs,
                outputs,
            ),
            Case(
                f"{label} Chat/CoT",
                dspy.ChatAdapter(),
                ChatAdapter(),
                cot_sig,
                native_sig.with_reasoning(),
                cot_demos,
                inputs,
                cot_outputs,
            ),
            Case(
                f"{label} JSON/Predict",
                dspy.JSONAdapter(),
                JSONAdapter(),
                dspy_sig,
                native_sig,
                demos,
                inputs,
                outputs,
            ),
            Case(
                f"{label} XML/Predict",
                dspy.XMLAdapter(),
                XMLAdapter(),
                dspy_sig,
                native_sig,
                demos,
                inputs,
                outputs,
            ),
        ]
    # outputs as nested XML (a list of models, a model)
    out.append(
        Case(
            "Nested XML/Predict",
            dspy.XMLAdapter(),
            XMLAdapter(),
            Cities,
            Signature.from_dspy(Cities),
            CITIES_DEMOS,
            CITIES_INPUTS,
            CITIES_OUTPUTS,
        )
    )
    return out


def per_call_us(fn: Callable[[], Any], number: int) -> float:
    return timeit.timeit(fn, number=number) / number * 1e6  # (timeit pauses the GC)


def measure(
    native: Callable[[], Any], reference: Callable[[], Any], budget: float, repeats: int
) -> tuple[float, float]:
    """Best per-call µs of each side over ``repeats`` runs of about ``budget / repeats`` seconds,
    interleaved so that drift hits both sides alike."""
    numbers = [
        max(1, int(budget / repeats / (timeit.timeit(fn, number=20) / 20)))  # also a warm-up
        for fn in (native, reference)
    ]
    runs = [
        (per_call_us(native, numbers[0]), per_call_us(reference, numbers[1]))
        for _ in range(repeats)
    ]
    return min(ours for ours, _ in runs), min(theirs for _, theirs in runs)


def main(quick: bool) -> bool:
    budget, repeats = (0.1, 3) if quick else (0.5, 7)  # seconds per side per figure
    rows: list[Row] = []
    for case in cases():
        times = {
            part: measure(native, reference, budget, repeats)
            for part, (native, reference) in case.pairs.items()
        }
        for part, (ours, theirs) in times.items():
            rows.append(
                Row(
                    f"{case.name} {part}",
                    ours,
                    "us",
                    baseline=theirs,
                    baseline_name="dspy 3.4.1",
                    target="reported",
                )
            )
        ours, theirs = times["format+parse"]
        speedup = theirs / ours
        rows.append(
            Row(
                f"{case.name} speedup",
                speedup,
                "x",
                target=f">= {TARGET:.0f}x",
                ok=speedup >= TARGET,
            )
        )
    return report("bench_adapters", rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    sys.exit(0 if main(parser.parse_args().quick) else 1)
