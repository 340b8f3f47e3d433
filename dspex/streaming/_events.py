"""What a stream yields before its final Prediction: field chunks and status messages."""

from __future__ import annotations

import msgspec


class StreamChunk(msgspec.Struct, frozen=True, tag=True):
    """A piece of one output field's text, as the LM writes it (DSPy's ``StreamResponse``).

    ``predictor`` is the path of the predictor that writes it, as DSPy's ``named_predictors``
    names it (``"self"`` for a Predict, ``"predict"`` for a ChainOfThought, ``"react"`` and
    ``"extract.predict"`` for a ReAct; in a wrapped program, prefixed by the sub-module's
    attribute path); ``field`` the output field; ``chunk`` the text; ``is_last`` whether the
    field's text is complete with it. DSPy's attribute names are aliases: ``predict_name``,
    ``signature_field_name``, ``is_last_chunk``.
    """

    predictor: str
    field: str
    chunk: str
    is_last: bool

    @property
    def predict_name(self) -> str:
        """DSPy's name of :attr:`predictor`."""
        return self.predictor

    @property
    def signature_field_name(self) -> str:
        """DSPy's name of :attr:`field`."""
        return self.field

    @property
    def is_last_chunk(self) -> bool:
        """DSPy's name of :attr:`is_last`."""
        return self.is_last


class StatusMessage(msgspec.Struct, frozen=True, tag=True):
    """Progress between field chunks, as DSPy's default status messages word it: before a
    ReAct tool runs (``"Calling tool search..."``) and after it."""

    message: str


def tool_started(name: str) -> StatusMessage:
    """DSPy's status message before tool ``name`` runs (none for ReAct's ``finish``)."""
    return StatusMessage(f"Calling tool {name}...")


#: DSPy's status message after a tool ran (none after ``finish``, whose result is "Completed.").
TOOL_ENDED = StatusMessage("Tool calling finished! Querying the LLM with tool calling results...")

#: Either kind of event a stream yields before its Prediction.
StreamEvent = StreamChunk | StatusMessage
