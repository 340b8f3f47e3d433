"""dspex.lm exposes exactly what its __all__ says."""

from __future__ import annotations

import types

import dspex.lm


def test_public_names_are_all() -> None:
    public = {
        name
        for name, value in vars(dspex.lm).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(dspex.lm.__all__)
    for name in dspex.lm.__all__:
        value = getattr(dspex.lm, name)
        if callable(value):
            assert value.__doc__, name
