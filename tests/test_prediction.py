"""Prediction: a module's outputs, read as DSPy's Prediction is read."""

from __future__ import annotations

import dspy

from dspex.prediction import Prediction


def test_to_dict_and_dspys_to_dict_give_the_fields_as_a_new_dict() -> None:
    fields = {"reasoning": "It is the capital.", "answer": "Paris", "confidence": 0.9}
    pred = Prediction(fields, implementation="dspy", fallback=True, fallback_reason="LMError")
    for as_dict in (pred.to_dict(), pred.toDict()):
        assert as_dict == fields
        assert list(as_dict) == list(fields)  # in field order
        as_dict["answer"] = "Lyon"  # a copy: the prediction is unchanged
    assert pred.answer == "Paris"
    assert pred.toDict() == dspy.Prediction(**fields).toDict()
