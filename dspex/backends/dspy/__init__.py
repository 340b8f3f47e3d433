"""The dspy implementation: the same module types on real DSPy 3.4.1 (the reference)."""

from dspex.backends.dspy._backend import DSPY_MODULE_TYPES, DSPyBackend, import_dspy

__all__ = ["DSPY_MODULE_TYPES", "DSPyBackend", "import_dspy"]
