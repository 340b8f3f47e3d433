"""Implementations behind dspex's module API: ``native`` (our own) and ``dspy`` (real DSPy)."""
