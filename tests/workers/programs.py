"""Programs the worker tests send to the dspy worker processes."""

from __future__ import annotations

import time
from typing import Any

import dspy


class Sleeper(dspy.Module):
    """A sync forward that ignores cancellation: it sleeps in its worker's thread."""

    def __init__(self) -> None:
        super().__init__()
        self.ask = dspy.Predict("question -> answer")

    def forward(self, question: str) -> Any:
        if question == "sleep":
            time.sleep(60)
        return self.ask(question=question)
