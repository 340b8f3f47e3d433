"""Small dspy programs the module tests wrap."""

from __future__ import annotations

from typing import Any

import dspy


class Shout(dspy.Module):
    """One Predict whose answer comes back upper-cased: its output tells it ran its forward."""

    def __init__(self) -> None:
        super().__init__()
        self.predict = dspy.Predict("question -> answer")

    def forward(self, question: str) -> Any:
        return dspy.Prediction(answer=self.predict(question=question).answer.upper())
