"""dspex.testing exposes exactly what its __all__ says."""

from __future__ import annotations

import types

import dspex.testing


def test_public_names_are_all() -> None:
    public = {
        name
        for name, value in vars(dspex.testing).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(dspex.testing.__all__)
