"""``dspex demo``: DSPy modules as supervised actors on a real LM, with faults injected."""

from __future__ import annotations

import ast
import operator
import os
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import msgspec
from rich.console import Console
from rich.markup import escape
from rich.text import Text

import dspex
from dspex.backends.dspy import import_dspy
from dspex.cli._compare import matches
from dspex.cli._console import heading, print_table
from dspex.config import IMPLEMENTATIONS, implementation_name
from dspex.errors import ConfigError, DSPexError, LMConnectionError, LMError
from dspex.lm._local import local_model
from dspex.testing import inject_faults

QUESTIONS = [
    ("What is the capital of France?", "Paris"),
    ("What is the capital of Japan?", "Tokyo"),
    ("Which planet is known as the Red Planet?", "Mars"),
    ("What is the chemical symbol for gold?", "Au"),
    ("How many legs does a spider have?", "8"),
    ("What is the largest ocean on Earth?", "Pacific"),
    ("Who wrote Romeo and Juliet?", "Shakespeare"),
    ("What is the freezing point of water in degrees Celsius?", "0"),
]
ARITHMETIC = ("What is 37 multiplied by 49?", "1813")
INSTRUCTIONS = "Answer the question with a single word or number."


class DemoOptions(msgspec.Struct, frozen=True):
    """The demo's options, validated."""

    lm: str | None
    lm_model: str | None
    implementations: tuple[str, ...]
    questions: int
    model: str

    @classmethod
    def build(
        cls,
        *,
        lm: str | None,
        lm_model: str | None,
        implementation: str,
        questions: int,
        model: str,
    ) -> DemoOptions:
        """Validate the command-line values; ConfigError names the bad one."""
        if lm is not None and not lm.startswith(("http://", "https://")):
            raise ConfigError(f"--lm must be an http:// or https:// URL, got {lm!r}")
        if implementation == "both":
            impls = IMPLEMENTATIONS
        else:
            try:
                impls = (implementation_name(implementation),)
            except ConfigError:
                raise ConfigError(
                    f"--implementation must be native, dspy (or python) or both, got "
                    f"{implementation!r}"
                ) from None
        local_model(model)
        return cls(lm, lm_model, impls, questions, model)


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression such as '37 * 49' and return the result."""
    ops: dict[type, Callable[..., Any]] = {
        ast.Add: operator.add,
        ast.Sub: operator.sub,
        ast.Mult: operator.mul,
        ast.Div: operator.truediv,
        ast.Pow: operator.pow,
        ast.USub: operator.neg,
    }

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            return ops[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in ops:
            return ops[type(node.op)](value(node.operand))
        raise ValueError(f"not plain arithmetic: {expression!r}")

    result = value(ast.parse(expression.replace("x", "*"), mode="eval").body)
    return str(int(result) if float(result).is_integer() else result)


async def _endpoint_lm(url: str, model: str | None) -> dspex.LM:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{url.rstrip('/')}/models", timeout=aiohttp.ClientTimeout(10)) as r,
        ):
            listing = await r.json() if model is None else None
    except (aiohttp.ClientConnectionError, TimeoutError) as exc:
        raise LMConnectionError(
            f"the endpoint at {url} did not answer ({exc or 'no answer within 10 s'}). Start "
            "one (`dspex lm serve` serves the embedded model and prints its URL) and pass its "
            "URL with --lm, or leave --lm out to run the embedded model"
        ) from None
    except (aiohttp.ClientResponseError, ValueError) as exc:
        raise LMError(f"{url} did not list its models ({exc}); pass --lm-model") from None
    if model is None:
        listed = listing.get("data") if isinstance(listing, dict) else None
        if not listed:
            raise LMError(f"{url} lists no models; pass --lm-model")
        model = str(listed[0]["id"])
    return dspex.LM(
        f"openai/{model}",
        api_base=url,
        api_key=os.environ.get("OPENAI_API_KEY", "none"),
        temperature=0.0,
        max_tokens=512,
        timeout=120.0,
    )


async def lm_for(options: DemoOptions) -> Any:
    """The LM the options ask for: an endpoint's, or the embedded model."""
    if options.lm:
        return await _endpoint_lm(options.lm, options.lm_model)
    return dspex.LM.local(options.model)


async def run_demo(options: DemoOptions, console: Console) -> bool:
    """Run the demo; True when every step completed."""
    lm = await lm_for(options)
    config = dspex.Config(
        implementation_preference="native_first",
        adaptive=dspex.AdaptiveConfig(explore_rate=0.0),
        circuit=dspex.CircuitConfig(crash_threshold=2, cooldown=60.0),
    )
    where = options.lm or f"the embedded {options.model} (CPU, llama.cpp)"
    with console.status(f"Starting the runtime on {where}..."):
        runtime = dspex.Runtime(lm=lm, config=config)
        await runtime.__aenter__()
    try:
        assert runtime.lm is not None
        console.print(
            f"[green]LM ready[/] at {escape(str(runtime.lm.api_base))} ({escape(runtime.lm.model)})"
        )
        if "dspy" in options.implementations:
            with console.status("Loading DSPy 3.4.1 for the dspy implementation..."):
                await import_dspy(gc_freeze=config.gc_freeze)
        correct, asked = await _questions(runtime, options, console)
        await _react(options, console)
        await _faults(runtime, console)
        await _metrics(runtime, console)
    finally:
        with console.status("Stopping the runtime (modules, router, model server)..."):
            await runtime.shutdown()
    console.print(
        f"\n[bold]{correct} of {asked} answers correct.[/] The runtime shut down cleanly."
    )
    return True


async def _questions(
    runtime: dspex.Runtime, options: DemoOptions, console: Console
) -> tuple[int, int]:
    heading(console, "Predict and ChainOfThought, each on both implementations")
    modules = []
    for facade in (dspex.Predict, dspex.ChainOfThought):
        for impl in options.implementations:
            ref = await facade.create(
                "question -> answer", instructions=INSTRUCTIONS, implementation=impl
            )
            modules.append((facade.__name__, impl, ref))
    rows: list[list[str | Text]] = []
    correct = asked = 0
    for i, (question, expected) in enumerate(QUESTIONS[: options.questions]):
        # llama.cpp reuses the prompt of an identical previous request, which makes the second
        # implementation to ask faster: alternate which one goes first.
        for name, impl, ref in modules if i % 2 == 0 else modules[::-1]:
            start = time.perf_counter()
            with console.status(f"{name} on {impl}: {escape(question)}"):
                pred = await ref(question=question)
            ok = matches(pred.answer, expected)
            correct, asked = correct + ok, asked + 1
            rows.append(
                [
                    name,
                    pred.implementation,
                    question,
                    str(pred.answer),
                    Text("yes", "green") if ok else Text("no", "red"),
                    f"{time.perf_counter() - start:.2f} s",
                    pred.fallback_reason or "-",
                ]
            )
    columns = ("module", "impl.", "question", "answer", "ok", "latency", "fallback")
    print_table(console, None, columns, rows, wrap={"question", "answer", "fallback"})
    console.print(
        "Both implementations send the LM the same messages, so a local server that caches the "
        "prompt answers the second one faster; the order alternates per question."
    )
    return correct, asked


async def _react(options: DemoOptions, console: Console) -> None:
    heading(console, "ReAct with a Python calculator tool")
    react = await dspex.ReAct.create("question -> answer", tools=[calculator], max_iters=3)
    question, expected = ARITHMETIC
    start = time.perf_counter()
    with console.status(f"ReAct: {question}"):
        try:
            pred = await react(question=question)
        except DSPexError as exc:
            console.print(f"ReAct could not answer: [red]{escape(str(exc))}[/]")
            return
    verdict = "[green]correct[/]" if matches(pred.answer, expected) else "[red]wrong[/]"
    console.print(
        f"{question} -> {_bold(pred.answer)} ({verdict}, served by "
        f"{pred.implementation}, "
        f"{time.perf_counter() - start:.2f} s)"
    )


async def _faults(runtime: dspex.Runtime, console: Console) -> None:
    heading(console, "Faults: a crash, an LM failure, repeated crashes")
    question = QUESTIONS[0][0]
    predict = await dspex.Predict.create("question -> answer", instructions=INSTRUCTIONS)
    actor = predict.actor
    with inject_faults(runtime, crash_after_request_on={1}):  # as a bug in parsing would
        pred = await predict(question=question)
    console.print(
        f"1. A bug in native code crashed one call after its LM request. Only that call "
        f"noticed: it was re-run on dspy: {_bold(pred.answer)} (served by "
        f"{pred.implementation}, fallback: {escape(str(pred.fallback_reason))}). The module "
        f"kept serving ({'the same actor' if predict.actor is actor else 'a new actor'}), "
        "with its native instance rebuilt."
    )
    with inject_faults(runtime, fail_on={1}):
        pred = await predict(question=question)
    console.print(
        f"2. An LM failure on native fell back to dspy within the call: {_bold(pred.answer)} "
        f"(served by {pred.implementation}, fallback: {escape(str(pred.fallback_reason))})."
    )
    threshold = runtime.config.circuit.crash_threshold
    retried: list[dspex.Prediction] = []
    with inject_faults(runtime, crash_rate=1.0):  # native now crashes on every call
        for _ in range(threshold):
            retried.append(await predict(question=question))
            state = (await runtime.metrics()).circuits.get("Predict", "closed")
            if state != "closed":
                break
        pred = await predict(question=question)
    console.print(
        f"3. Then native crashed on every call, and each call was re-run on dspy "
        f"({escape(', '.join(str(r.answer) for r in retried))}). At {threshold} crashes of "
        f"Predict within circuit.window, the first one's included, the router opened its "
        f"circuit: the native circuit of Predict is [bold]{state}[/]. The next call went "
        f"straight to {pred.implementation}, native untried: {_bold(pred.answer)}."
    )


def _bold(value: object) -> str:
    """``value`` in bold, as rich markup (its own square brackets escaped)."""
    return f"[bold]{escape(str(value))}[/]"


async def _metrics(runtime: dspex.Runtime, console: Console) -> None:
    report = await runtime.metrics()
    counts = ("calls", "ok", "failed", "fallbacks", "crashes", "p50", "p90")
    rows: list[list[str | Text]] = [
        [
            module_type,
            impl,
            *map(str, (m.calls, m.successes, m.failures, m.fallbacks, m.crashes)),
            f"{m.latency_p50_ms / 1000:.1f}s",
            f"{m.latency_p90_ms / 1000:.1f}s",
        ]
        for module_type, impls in sorted(report.modules.items())
        for impl, m in sorted(impls.items())
    ]
    print_table(console, "Router metrics", ("module type", "impl.", *counts), rows, right=counts)
    circuits = ", ".join(f"{k}: {v}" for k, v in report.circuits.items()) or "all closed"
    restarts = ", ".join(f"{k}: {v}" for k, v in report.restarts.items()) or "none"
    console.print(f"Native circuits: {circuits}. Module actor restarts: {restarts}.")
