"""LM: configuration mirroring dspy.LM, with the API key kept out of sight."""

from __future__ import annotations

import inspect
import subprocess
import sys
from typing import Any

import msgspec
import pytest

from dspex.errors import ConfigError
from dspex.lm import LM

KEY = "sk-very-secret-key-123"


def test_defaults_mirror_dspy_lm() -> None:
    import dspy

    params = inspect.signature(dspy.LM.__init__).parameters
    lm = LM("openai/m")
    assert lm.temperature == params["temperature"].default
    assert lm.max_tokens == params["max_tokens"].default
    assert lm.num_retries == params["num_retries"].default
    assert (lm.api_base, lm.api_key, lm.timeout, lm.extra) == (None, None, 600.0, {})


def test_api_key_is_not_in_repr_or_str() -> None:
    lm = LM("openai/m", api_base="http://127.0.0.1:1/v1", api_key=KEY)
    for text in (repr(lm), str(lm), f"{lm}", repr([lm])):
        assert KEY not in text
        assert "api_key='***'" in text
    assert ("api_key", "***") in lm.__rich_repr__()
    assert repr(LM("openai/m")).startswith("LM(model='openai/m', api_base=None, api_key=None,")
    assert lm.api_key == KEY


def test_lm_is_frozen_and_replaceable() -> None:
    lm = LM("openai/m", temperature=0.0)
    with pytest.raises(AttributeError):
        lm.temperature = 1.0  # type: ignore[misc]
    assert msgspec.structs.replace(lm, temperature=0.7).temperature == 0.7


@pytest.mark.parametrize(
    ("model", "wire", "provider"),
    [
        ("openai/my-model", "my-model", "openai"),
        ("openai/org/my-model", "org/my-model", "openai"),
        ("gpt-4o-mini", "gpt-4o-mini", "openai"),
        ("anthropic/claude", "anthropic/claude", "anthropic"),
    ],
)
def test_wire_model_strips_the_openai_prefix_like_litellm(
    model: str, wire: str, provider: str
) -> None:
    lm = LM(model)
    assert (lm.wire_model, lm.provider) == (wire, provider)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": ""}, "non-empty"),
        ({"model": "openai/"}, "openai/<name>"),
        ({"model": "m", "temperature": -0.1}, "temperature"),
        ({"model": "m", "temperature": float("inf")}, "temperature"),
        ({"model": "m", "max_tokens": 0}, "max_tokens"),
        ({"model": "m", "max_tokens": 1.5}, "max_tokens"),
        ({"model": "m", "timeout": 0}, "timeout"),
        ({"model": "m", "num_retries": -1}, "num_retries"),
        ({"model": "m", "num_retries": True}, "num_retries"),
        ({"model": "m", "api_base": "127.0.0.1:8000/v1"}, "http"),
        ({"model": "m", "extra": {"temperature": 1}}, "LM field"),
        ({"model": "m", "extra": {"stream": True}}, "not supported"),
        ({"model": "openai/gpt-5-mini", "temperature": 0.5}, "reasoning model"),
        ({"model": "openai/o3", "max_tokens": 1000}, "reasoning model"),
    ],
)
def test_invalid_settings_are_config_errors(kwargs: dict[str, Any], message: str) -> None:
    model = kwargs.pop("model")
    with pytest.raises(ConfigError, match=message):
        LM(model, **kwargs)


def test_to_dspy_builds_the_equivalent_dspy_lm() -> None:
    lm = LM(
        "openai/m",
        api_base="http://127.0.0.1:1/v1",
        api_key=KEY,
        temperature=0.3,
        max_tokens=64,
        timeout=12.0,
        num_retries=1,
        extra={"top_p": 0.9},
    )
    dspy_lm = lm.to_dspy()
    assert dspy_lm.model == "openai/m"
    assert dspy_lm.num_retries == 1
    assert dspy_lm.cache is False
    assert dspy_lm.engine == "litellm"
    assert dspy_lm.kwargs == {
        "temperature": 0.3,
        "max_tokens": 64,
        "timeout": 12.0,
        "api_base": "http://127.0.0.1:1/v1",
        "api_key": KEY,
        "top_p": 0.9,
    }
    assert lm.to_dspy(engine="auto", cache=True).engine == "auto"
    assert LM.from_dspy(dspy_lm) == lm


def test_from_dspy_reads_a_plain_dspy_lm() -> None:
    import dspy

    lm = LM.from_dspy(dspy.LM("openai/gpt-5-mini", max_tokens=16000, rollout_id=None, seed=1))
    assert lm == LM("openai/gpt-5-mini", max_tokens=16000, extra={"seed": 1})
    assert LM.from_dspy(dspy.LM("openai/m", base_url="http://h/v1")).api_base == "http://h/v1"


def test_from_dspy_refuses_settings_it_cannot_honour() -> None:
    import dspy

    with pytest.raises(ConfigError, match="extra_headers"):
        LM.from_dspy(dspy.LM("openai/m", extra_headers={"x": "y"}))
    with pytest.raises(ConfigError, match="chat models"):
        LM.from_dspy(dspy.LM("openai/m", model_type="text"))


def test_importing_dspex_does_not_import_dspy_or_litellm() -> None:
    code = (
        "import sys, dspex, dspex.lm, dspex.testing\n"
        "print(sorted(m for m in ('dspy', 'litellm', 'httpx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
