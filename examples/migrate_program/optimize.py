"""Optimize DraftRefine in plain DSPy and save it to prog.json."""

import dspy
from program import DraftRefine

dspy.configure(lm=dspy.LM("openai/gpt-4o-mini"))

trainset = [
    dspy.Example(question=f"What is the capital of {country}?", answer=capital)
    for country, capital in [("France", "Paris"), ("Italy", "Rome"), ("Peru", "Lima")]
]
trainset = [example.with_inputs("question") for example in trainset]

optimizer = dspy.BootstrapFewShot(metric=dspy.evaluate.answer_exact_match)
program = optimizer.compile(DraftRefine(), trainset=trainset)
program.save("prog.json")
