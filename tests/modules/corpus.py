"""DSPy programs as users write them, for the differential tests of Module.wrap."""

from __future__ import annotations

from typing import Any

import dspy
import pydantic

DOCS = {
    "france": "Paris is the capital and largest city of France.",
    "peru": "Lima is the capital of Peru.",
}


def retrieve(query: str, k: int = 2) -> list[str]:
    """A plain Python retriever: the documents sharing a word with the query."""
    words = set(query.lower().replace("?", "").split())
    return [text for key, text in sorted(DOCS.items()) if key in words][:k] or ["(none)"]


def lookup(city: str) -> str:
    """Look up a fact about a city."""
    return f"{city} has 2.1 million inhabitants."


class DraftRefine(dspy.Module):
    """A ChainOfThought that drafts, a Predict that refines: the issue's program (sync)."""

    def __init__(self) -> None:
        super().__init__()
        self.draft = dspy.ChainOfThought("question -> answer")
        self.refine = dspy.Predict("question, draft -> answer")

    def forward(self, question: str) -> Any:
        draft = self.draft(question=question)
        return self.refine(question=question, draft=draft.answer)


class RAG(dspy.Module):
    """Retrieve with a Python function, answer with a ChainOfThought (async)."""

    def __init__(self) -> None:
        super().__init__()
        self.respond = dspy.ChainOfThought("context: list[str], question -> answer")

    async def aforward(self, question: str) -> Any:
        context = retrieve(question)
        pred = await self.respond.acall(context=context, question=question)
        return dspy.Prediction(context=context, answer=pred.answer, reasoning=pred.reasoning)


class Hops(dspy.Module):
    """One Predict called in a loop, each call fed the notes of the ones before (sync)."""

    def __init__(self, hops: int = 3) -> None:
        super().__init__()
        self.hops = hops
        self.step = dspy.Predict("question, notes: list[str] -> answer")

    def forward(self, question: str) -> Any:
        notes: list[str] = []
        for _ in range(self.hops):
            notes.append(self.step(question=question, notes=notes).answer)
        return dspy.Prediction(answer=notes[-1], notes=notes)


class Summarize(dspy.Module):
    """A custom sub-module holding predictors in a list and a dict."""

    def __init__(self) -> None:
        super().__init__()
        self.stages = [dspy.Predict("text -> summary"), dspy.ChainOfThought("summary -> title")]
        self.by_tone = {"plain": dspy.Predict("title -> answer")}

    def forward(self, text: str) -> Any:
        summary = self.stages[0](text=text).summary
        title = self.stages[1](summary=summary).title
        return self.by_tone["plain"](title=title)


class Nested(dspy.Module):
    """Custom modules within custom modules: Outer -> Summarize -> predictors (sync)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = Summarize()
        self.check = dspy.Predict("text, answer -> verdict: bool")

    def forward(self, text: str) -> Any:
        pred = self.inner(text=text)
        verdict = self.check(text=text, answer=pred.answer).verdict
        return dspy.Prediction(answer=pred.answer, verdict=verdict)


class City(pydantic.BaseModel):
    """A typed output."""

    name: str
    population: int


class CityFacts(dspy.Signature):
    """Give the city's facts."""

    question: str = dspy.InputField(desc="about one city")
    city: City = dspy.OutputField(desc="the city asked about")
    confidence: float = dspy.OutputField()


class Typed(dspy.Module):
    """A Predict with a pydantic output field (async)."""

    def __init__(self) -> None:
        super().__init__()
        self.facts = dspy.Predict(CityFacts)

    async def aforward(self, question: str) -> Any:
        return await self.facts.acall(question=question)


class Agent(dspy.Module):
    """A ReAct agent with a tool, inside a program (sync)."""

    def __init__(self) -> None:
        super().__init__()
        self.agent = dspy.ReAct("question -> answer", tools=[lookup], max_iters=3)

    def forward(self, question: str) -> Any:
        return self.agent(question=question)


def one_word(args: dict[str, Any], pred: Any) -> float:
    """A reward: 1.0 for a one-word answer."""
    return 1.0 if len(str(pred.answer).split()) == 1 else 0.0


class Compare(dspy.Module):
    """Two drafts of a ChainOfThought compared by a MultiChainComparison (sync)."""

    def __init__(self) -> None:
        super().__init__()
        self.draft = dspy.ChainOfThought("question -> answer")
        self.compare = dspy.MultiChainComparison("question -> answer", M=2)

    def forward(self, question: str) -> Any:
        first = self.draft(question=question)
        second = self.draft(question=question + " Think again.")
        return self.compare(completions=[first, second], question=question)


class Best(dspy.Module):
    """A BestOfN over a ChainOfThought whose threshold no answer meets: every attempt runs
    (sync: DSPy's BestOfN has no aforward)."""

    def __init__(self) -> None:
        super().__init__()
        self.best = dspy.BestOfN(
            dspy.ChainOfThought("question -> answer"), N=3, reward_fn=one_word, threshold=2.0
        )

    def forward(self, question: str) -> Any:
        return self.best(question=question)


class Refined(dspy.Module):
    """A Refine over a Predict: two attempts with DSPy's feedback call between them (sync)."""

    def __init__(self) -> None:
        super().__init__()
        self.refine = dspy.Refine(
            dspy.Predict("question -> answer"), N=2, reward_fn=one_word, threshold=2.0
        )

    def forward(self, question: str) -> Any:
        return self.refine(question=question)


class BestOfCustom(dspy.Module):
    """A BestOfN over a custom module: each attempt runs a copy of it on another LM, so DSPy
    runs it whole inside the program (sync)."""

    def __init__(self) -> None:
        super().__init__()
        self.best = dspy.BestOfN(DraftRefine(), N=2, reward_fn=one_word, threshold=1.0)

    def forward(self, question: str) -> Any:
        return self.best(question=question)


class FanOut(dspy.Module):
    """One predictor over several questions at once, in a ``dspy.Parallel``'s threads (sync)."""

    def __init__(self) -> None:
        super().__init__()
        self.ask = dspy.Predict("question -> answer")
        self.parallel = dspy.Parallel(num_threads=2, disable_progress_bar=True)

    def forward(self, question: str) -> Any:
        pairs = [
            (self.ask, dspy.Example(question=f"{question} ({i})").with_inputs("question"))
            for i in range(3)
        ]
        return dspy.Prediction(answers=[r.answer for r in self.parallel(pairs)])
