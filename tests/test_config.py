"""Config: keywords, environment variables, aliases and clear errors."""

from __future__ import annotations

import pytest

from dspex.config import Config, implementation_name
from dspex.errors import ConfigError


def test_defaults() -> None:
    config = Config()
    assert config.implementation_preference == "auto"
    assert config.allow_fallback is True
    assert config.module_overrides == {}
    assert config.adapter == "chat"


def test_python_is_an_alias_of_dspy() -> None:
    config = Config(
        implementation_preference="python_first",  # type: ignore[arg-type]
        module_overrides={"ReAct": "python"},  # type: ignore[dict-item]
    )
    assert config.implementation_preference == "dspy_first"
    assert config.module_overrides == {"ReAct": "dspy"}
    assert implementation_name("python") == "dspy"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"implementation_preference": "fastest"}, "implementation_preference must be one of"),
        ({"module_overrides": {"Predict": "rust"}}, r"module_overrides\['Predict'\] must be"),
        ({"module_overrides": ["Predict"]}, "module_overrides must be a mapping"),
        ({"adapter": "xml"}, "adapter must be one of 'chat', 'json'"),
        ({"max_concurrency": 0}, "max_concurrency must be an int >= 1"),
        ({"mailbox_size": True}, "mailbox_size must be an int >= 1"),
        ({"call_timeout": -1}, "call_timeout must be None or seconds > 0"),
        ({"allow_fallback": "yes"}, "allow_fallback must be a bool"),
        ({"gc_freeze": 1}, "gc_freeze must be a bool"),
        ({"preload_dspy": "on"}, "preload_dspy must be a bool"),
        ({"adaptive": {"explore_rate": 2}}, r"adaptive.explore_rate must be in \[0, 1\]"),
        ({"adaptive": {"speed": 1}}, "unknown config key 'adaptive.speed'"),
        ({"circuit": {"cooldown": 0}}, "circuit.cooldown must be > 0"),
        ({"colour": "blue"}, "unknown config key"),
    ],
)
def test_invalid_values_name_the_key_and_the_allowed_values(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Config().replace(**changes)


def test_replace_merges_nested_keys() -> None:
    config = Config(adaptive={"alpha": 0.5}).replace(adaptive={"explore_rate": 0.2})  # type: ignore[arg-type]
    assert (config.adaptive.alpha, config.adaptive.explore_rate) == (0.5, 0.2)


def test_from_env_reads_dspex_variables() -> None:
    env = {
        "DSPEX_IMPLEMENTATION_PREFERENCE": "native_first",
        "DSPEX_ALLOW_FALLBACK": "false",
        "DSPEX_MODULE_OVERRIDES": "ReAct=python, Predict=native",
        "DSPEX_MAX_CONCURRENCY": "8",
        "DSPEX_CALL_TIMEOUT": "2.5",
        "DSPEX_CIRCUIT_COOLDOWN": "1.5",
        "DSPEX_ADAPTIVE_EXPLORE_RATE": "0",
        "DSPEX_GC_FREEZE": "false",
        "DSPEX_PRELOAD_DSPY": "true",
        "UNRELATED": "x",
    }
    config = Config.from_env(env, adapter="json")
    assert config.implementation_preference == "native_first"
    assert config.allow_fallback is False
    assert config.module_overrides == {"ReAct": "dspy", "Predict": "native"}
    assert config.max_concurrency == 8
    assert config.call_timeout == 2.5
    assert config.circuit.cooldown == 1.5
    assert config.adaptive.explore_rate == 0.0
    assert config.gc_freeze is False
    assert config.preload_dspy is True
    assert config.adapter == "json"
    assert Config.from_env({}) == Config()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DSPEX_ALLOW_FALLBACK": "maybe"}, "allow_fallback must be true or false"),
        ({"DSPEX_MAX_CONCURRENCY": "lots"}, "max_concurrency must be a number"),
        ({"DSPEX_MODULE_OVERRIDES": "ReAct"}, "must look like 'ReAct=dspy"),
        ({"DSPEX_IMPLEMENTATION_PREFERENCE": "turbo"}, "implementation_preference must be"),
    ],
)
def test_bad_environment_values_are_config_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.from_env(env)
