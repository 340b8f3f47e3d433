"""Config: keywords, environment variables, aliases and clear errors."""

from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

import dspex
from dspex.config import (
    MODULE_TYPES,
    AdaptiveConfig,
    CacheConfig,
    CircuitConfig,
    Config,
    Rollout,
    Shadow,
    WorkerConfig,
    implementation_name,
    module_type_name,
)
from dspex.errors import ConfigError

STRUCTS = (Config, AdaptiveConfig, CircuitConfig, WorkerConfig, Rollout, Shadow)


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
        ({"adapter": "yaml"}, "adapter must be one of 'chat', 'json', 'xml'"),
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


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Config(foo=1), "unknown config key 'foo'; known: implementation_preference"),
        (lambda: Config(max_concurency=8), "'max_concurency' \\(did you mean 'max_concurrency'"),
        (lambda: Config(calltimeout=1), "did you mean 'call_timeout'"),
        (lambda: AdaptiveConfig(explore=0.1), "'adaptive.explore' \\(did you mean 'explore_rate'"),
        (lambda: CircuitConfig(cooldwn=1), "'circuit.cooldwn' \\(did you mean 'cooldown'"),
        (lambda: Rollout(native_precent=5), "'rollout.native_precent' \\(did you mean"),
        (lambda: Shadow(rates=0.5), "'shadow.rates' \\(did you mean 'rate'"),
        (lambda: Config(adaptive={"alhpa": 0.5}), "'adaptive.alhpa' \\(did you mean 'alpha'"),
        (
            lambda: Config(rollout={"Predict": {"native_precent": 5}}),
            "'rollout.Predict.native_precent' \\(did you mean 'native_percent'",
        ),
        (lambda: Config("native_first"), "Config takes keyword arguments only"),
    ],
)
def test_unknown_keys_are_config_errors_naming_the_closest_key(build: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build()


@pytest.mark.parametrize(
    ("kind", "field"),
    [(kind, field) for kind in STRUCTS for field in kind.__struct_fields__],
)
@pytest.mark.parametrize("value", [object(), "1", [1]])
def test_a_wrong_typed_value_of_any_key_is_a_config_error(
    kind: type[Any], field: str, value: object
) -> None:
    if value == "1" and kind is Config and field in ("adapter", "overload"):
        value = "1x"  # still a str, as these take
    with pytest.raises(ConfigError, match=field):
        kind(**{field: value})


def test_module_types_may_be_written_in_snake_case() -> None:
    seed = [
        "predict",
        "chain_of_thought",
        "react",
        "multi_chain_comparison",
        "best_of_n",
        "refine",
        "parallel",
        "program_of_thought",
        "module",
    ]
    assert [module_type_name(name) for name in seed] == list(MODULE_TYPES)
    assert [module_type_name(name) for name in MODULE_TYPES] == list(MODULE_TYPES)
    config = Config(
        module_overrides={"chain_of_thought": "python", "REACT": "dspy"},  # type: ignore[dict-item]
        rollout={"best_of_n": {"native_percent": 5}},  # type: ignore[dict-item]
        shadow={"predict": Shadow(rate=0.5)},
    )
    assert config.module_overrides == {"ChainOfThought": "dspy", "ReAct": "dspy"}
    assert list(config.rollout) == ["BestOfN"]
    assert config.shadow == {"Predict": Shadow(rate=0.5)}
    from_env = Config.from_env(
        {
            "DSPEX_MODULE_OVERRIDES": "chain_of_thought=python,program_of_thought=dspy",
            "DSPEX_SHADOW": '{"multi_chain_comparison": {"rate": 0.2}}',
        }
    )
    assert from_env.module_overrides == {"ChainOfThought": "dspy", "ProgramOfThought": "dspy"}
    assert list(from_env.shadow) == ["MultiChainComparison"]


@pytest.mark.parametrize(
    "build",
    [
        lambda: Config(module_overrides={"ChainOfThougt": "dspy"}),
        lambda: Config(rollout={"Chain": {"native_percent": 5}}),
        lambda: Config(shadow={"Tree": {}}),
        lambda: Config(module_overrides={1: "dspy"}),
        lambda: Config.from_env({"DSPEX_MODULE_OVERRIDES": "Preddict=dspy"}),
        lambda: Config.from_env({"DSPEX_ROLLOUT": '{"cot": {"native_percent": 5}}'}),
        lambda: Config().replace(shadow={"Nope": {"rate": 1}}),
    ],
)
def test_unknown_module_types_are_config_errors_listing_the_known_ones(build: Any) -> None:
    known = ", ".join(MODULE_TYPES)
    with pytest.raises(ConfigError, match=f"unknown module type .*; known: {known}"):
        build()


def test_a_typo_of_a_module_type_gets_the_closest_one() -> None:
    with pytest.raises(ConfigError, match="'chain_of_thougt' \\(did you mean 'ChainOfThought'"):
        Config(module_overrides={"chain_of_thougt": "dspy"})  # type: ignore[dict-item]


def test_one_module_type_named_twice_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="names ChainOfThought twice: as 'chain_of_thought' and"):
        Config(module_overrides={"chain_of_thought": "dspy", "ChainOfThought": "native"})  # type: ignore[dict-item]


def test_unknown_dspex_variables_are_warned_about_with_the_closest_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = {
        "DSPEX_CIRCUIT_COOLDWN": "5",
        "DSPEX_MAX_CONCURENCY": "8",
        "dspex_call_timeout": "2",
        "DSPEX_ZZZ": "1",
        "DSPEX_CIRCUIT_COOLDOWN": "1.5",
        "DSPEX_CACHE_DIR": "/somewhere",
        "OTHER_THING": "x",
    }
    with caplog.at_level(logging.WARNING, logger="dspex.config"):
        config = Config.from_env(env)
    assert config.circuit.cooldown == 1.5
    messages = [r.getMessage() for r in caplog.records]
    warnings = {re.findall(r"variable (\w+)", m)[0]: m for m in messages}
    assert set(warnings) == {
        "DSPEX_CIRCUIT_COOLDWN",
        "DSPEX_MAX_CONCURENCY",
        "dspex_call_timeout",
        "DSPEX_ZZZ",
    }
    assert all(r.levelno == logging.WARNING and r.name == "dspex.config" for r in caplog.records)
    assert "(did you mean 'DSPEX_CIRCUIT_COOLDOWN'?)" in warnings["DSPEX_CIRCUIT_COOLDWN"]
    assert "(did you mean 'DSPEX_MAX_CONCURRENCY'?)" in warnings["DSPEX_MAX_CONCURENCY"]
    assert "(did you mean 'DSPEX_CALL_TIMEOUT'?)" in warnings["dspex_call_timeout"]
    assert "dspex reads DSPEX_IMPLEMENTATION_PREFERENCE, " in warnings["DSPEX_ZZZ"]


def test_every_dspex_variable_dspex_reads_is_known(caplog: pytest.LogCaptureFixture) -> None:
    source = Path(dspex.__file__).parent
    names = {
        name
        for path in source.rglob("*.py")
        for name in re.findall(r"\bDSPEX_[A-Z][A-Z_]*[A-Z]\b", path.read_text("utf-8"))
    }
    names |= {
        f"DSPEX_{key.upper()}"
        for key in Config.__struct_fields__
        if key not in ("adaptive", "circuit", "workers", "cache")
    }
    names |= {f"DSPEX_ADAPTIVE_{key.upper()}" for key in AdaptiveConfig.__struct_fields__}
    names |= {f"DSPEX_CIRCUIT_{key.upper()}" for key in CircuitConfig.__struct_fields__}
    names |= {f"DSPEX_WORKERS_{key.upper()}" for key in WorkerConfig.__struct_fields__}
    names |= {f"DSPEX_CACHE_{key.upper()}" for key in CacheConfig.__struct_fields__}
    assert "DSPEX_CACHE_DIR" in names
    with caplog.at_level(logging.WARNING, logger="dspex.config"):
        for name in sorted(names):
            with contextlib.suppress(ConfigError):  # "1" is no valid value of some: no matter
                Config.from_env({name: "1"})
    assert [r.getMessage() for r in caplog.records] == []


def test_config_round_trips_through_msgspec() -> None:
    config = Config(module_overrides={"react": "dspy"}, rollout={"Predict": {"native_percent": 5}})  # type: ignore[dict-item]
    assert msgspec.json.decode(msgspec.json.encode(config), type=Config) == config
    assert Config(**msgspec.structs.asdict(config)) == config


def test_dspy_workers_and_their_settings() -> None:
    # DSPy in one worker process per core unless asked otherwise; 0: in this process
    assert Config().dspy_workers == len(os.sched_getaffinity(0)) >= 1
    assert Config.from_env({"DSPEX_DSPY_WORKERS": "0"}).dspy_workers == 0
    config = Config.from_env({"DSPEX_DSPY_WORKERS": "2", "DSPEX_WORKERS_MAX_RSS_MB": "800"})
    assert (config.dspy_workers, config.workers.max_rss_mb) == (2, 800.0)
    assert Config(workers={"max_requests": 100}).workers == WorkerConfig(max_requests=100)
    with pytest.raises(ConfigError, match=r"dspy_workers must be an int >= 0 or a Ray\w+, got -1"):
        Config(dspy_workers=-1)
    with pytest.raises(ConfigError, match=r"workers.grace must be seconds > 0"):
        Config(workers={"grace": 0})
    with pytest.raises(ConfigError, match=r"workers.max_requests must be None or an int >= 1"):
        Config(workers={"max_requests": 0})


def test_ray_workers_are_configured_clearly() -> None:
    ray = dspex.RayWorkers(num=3)
    assert Config(dspy_workers=ray).dspy_workers == ray
    with pytest.raises(ConfigError, match=r"RayWorkers.num must be None or an int >= 1, got 0"):
        dspex.RayWorkers(num=0)
    with pytest.raises(ConfigError, match=r"RayWorkers.num_cpus must be > 0, got 0"):
        dspex.RayWorkers(num_cpus=0)
    with pytest.raises(ConfigError, match=r"unknown config key 'workers'; known: num, num_cpus"):
        dspex.RayWorkers(workers=2)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match=r"dspy_workers must be an int >= 0 or a RayWorkers"):
        Config(dspy_workers="ray")  # type: ignore[arg-type]
