"""The dspy implementation: the same module types on real DSPy 3.4.1 (the reference)."""

from dspex._dspy_import import import_dspy
from dspex.backends.dspy._backend import DSPY_MODULE_TYPES, DSPyBackend

__all__ = ["DSPY_MODULE_TYPES", "DSPyBackend", "import_dspy"]
