"""The DSPy program to serve: a ChainOfThought drafts an answer, a Predict refines it."""

import dspy


class DraftRefine(dspy.Module):
    def __init__(self):
        super().__init__()
        self.draft = dspy.ChainOfThought("question -> answer")
        self.refine = dspy.Predict("question, draft -> answer")

    def forward(self, question):
        draft = self.draft(question=question)
        return self.refine(question=question, draft=draft.answer)
