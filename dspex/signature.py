"""Native DSPy signatures: DSPy's string form, typed fields, round trips with ``dspy.Signature``.

>>> from dspex.signature import Signature
>>> qa = Signature.parse("context, question -> answer, confidence: float")
>>> [f.name for f in qa.outputs], qa.outputs[1].annotation
(['answer', 'confidence'], <class 'float'>)
>>> qa.with_reasoning().output_names
('reasoning', 'answer', 'confidence')

Importing this module does not import dspy (only :meth:`Signature.to_dspy` does).
"""

from dspex._signature._field import Field, FieldKind, infer_prefix
from dspex._signature._model import (
    Signature,
    SignatureLike,
    SignatureWarning,
    default_instructions,
    ensure_signature,
)

__all__ = [
    "Field",
    "FieldKind",
    "Signature",
    "SignatureLike",
    "SignatureWarning",
    "default_instructions",
    "ensure_signature",
    "infer_prefix",
]
