"""The public API is exactly what ``__all__`` says, and every error is a DSPexError."""

from __future__ import annotations

import inspect
import subprocess
import sys

import dspex
import dspex.errors


def test_all_names_exist_and_nothing_public_is_unlisted() -> None:
    for name in dspex.__all__:
        assert hasattr(dspex, name), name
    public = {
        n
        for n, v in vars(dspex).items()
        if not n.startswith("_") and not inspect.ismodule(v) and n != "annotations"
    }
    assert public == set(dspex.__all__)


def test_every_public_name_has_a_docstring() -> None:
    for name in dspex.__all__:
        obj = getattr(dspex, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__, f"{name} has no docstring"


def test_every_exception_derives_from_dspex_error() -> None:
    errors = [
        v
        for v in vars(dspex.errors).values()
        if inspect.isclass(v) and issubclass(v, BaseException)
    ]
    assert len(errors) > 10
    assert all(issubclass(e, dspex.DSPexError) for e in errors)


def test_import_dspex_does_not_import_dspy_or_litellm() -> None:
    code = "import sys, dspex; print(sorted(m for m in ('dspy', 'litellm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
