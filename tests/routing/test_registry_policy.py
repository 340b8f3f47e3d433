"""The registry's preference rules and the per-call choice, rule by rule."""

from __future__ import annotations

import pytest

from dspex._dspy_import import load_dspy
from dspex.config import Config
from dspex.errors import ConfigError
from dspex.routing import Circuit, Registry, RoutingSnapshot, choose

REGISTRY = Registry(
    {"Predict": ["native", "dspy"], "ChainOfThought": ["native", "python"], "ReAct": ["dspy"]}
)


def snap(
    config: Config,
    adaptive: dict[str, str] | None = None,
    circuits: dict[str, Circuit] | None = None,
) -> RoutingSnapshot:
    return RoutingSnapshot(1, config, REGISTRY, adaptive or {}, circuits or {})  # type: ignore[arg-type]


def test_available_implementations_normalize_python_to_dspy() -> None:
    assert REGISTRY.available_implementations("ChainOfThought") == ("native", "dspy")
    assert REGISTRY.available_implementations("ReAct") == ("dspy",)
    assert REGISTRY.native_available("Predict")
    assert not REGISTRY.native_available("ReAct")


def test_unknown_module_type_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown module type 'Nope'"):
        REGISTRY.available_implementations("Nope")


def test_forced_implementation_wins_when_it_exists() -> None:
    config = Config(implementation_preference="dspy_first", module_overrides={"Predict": "dspy"})
    assert REGISTRY.preferred_implementation("Predict", config, "native") == "native"
    assert REGISTRY.preferred_implementation("Predict", config, "python") == "dspy"


def test_forcing_a_missing_implementation_is_an_error() -> None:
    with pytest.raises(ConfigError, match="ReAct has no 'native' implementation"):
        REGISTRY.preferred_implementation("ReAct", Config(), "native")
    with pytest.raises(ConfigError, match="must be one of"):
        REGISTRY.preferred_implementation("Predict", Config(), "rust")


def test_module_override_comes_next() -> None:
    config = Config(implementation_preference="native_first", module_overrides={"Predict": "dspy"})
    assert REGISTRY.preferred_implementation("Predict", config) == "dspy"
    assert REGISTRY.preferred_implementation("ChainOfThought", config) == "native"


def test_preferences_native_first_and_dspy_first() -> None:
    assert (
        REGISTRY.preferred_implementation(
            "Predict", Config(implementation_preference="native_first")
        )
        == "native"
    )
    assert (
        REGISTRY.preferred_implementation(
            "Predict", Config(implementation_preference="python_first")
        )
        == "dspy"
    )


def test_unavailable_native_routes_to_dspy_whatever_the_preference() -> None:
    for pref in ("auto", "native_first", "dspy_first"):
        config = Config(implementation_preference=pref)  # type: ignore[arg-type]
        assert REGISTRY.preferred_implementation("ReAct", config) == "dspy"
        assert choose(snap(config), "ReAct", None, 0.0) == ("dspy", "only")


def test_auto_is_left_to_the_adaptive_policy() -> None:
    assert REGISTRY.preferred_implementation("Predict", Config()) is None


def test_override_naming_a_missing_implementation_is_rejected() -> None:
    with pytest.raises(ConfigError, match="ReAct has only"):
        REGISTRY.validate(Config(module_overrides={"ReAct": "native"}))
    with pytest.raises(ConfigError, match="unknown module type 'Parallel'; known: "):
        REGISTRY.validate(Config(module_overrides={"Parallel": "native"}))  # not registered here


def test_typos_of_module_types_never_reach_the_registry() -> None:
    with pytest.raises(ConfigError, match="unknown module type 'Typo'; known: Predict, "):
        Config(module_overrides={"Typo": "native"})


def test_choose_follows_the_rules_in_order() -> None:
    never = lambda: 1.0  # noqa: E731 - never explore
    assert choose(snap(Config()), "Predict", "dspy", 0.0, never) == ("dspy", "forced")
    assert choose(
        snap(Config(module_overrides={"Predict": "dspy"})), "Predict", None, 0.0, never
    ) == ("dspy", "override")
    assert choose(
        snap(Config(implementation_preference="dspy_first")), "Predict", None, 0.0, never
    ) == ("dspy", "preference")
    assert choose(snap(Config()), "Predict", None, 0.0, never) == ("native", "adaptive")
    assert choose(snap(Config(), adaptive={"Predict": "dspy"}), "Predict", None, 0.0, never) == (
        "dspy",
        "adaptive",
    )


def test_auto_explores_the_other_implementation_at_the_explore_rate() -> None:
    load_dspy()  # dspy is explored once DSPy is loaded (tests/routing/test_explore.py)
    config = Config(adaptive={"explore_rate": 0.25}, gc_freeze=False)  # type: ignore[arg-type]
    picks = [choose(snap(config), "Predict", None, 0.0, lambda i=i: i / 100)[1] for i in range(100)]
    assert picks.count("explore") == 25


def test_open_circuit_routes_to_dspy_until_one_probe_after_the_cooldown() -> None:
    circuit = Circuit(opened_at=0.0, until=10.0)
    s = snap(Config(implementation_preference="native_first"), circuits={"Predict": circuit})
    assert choose(s, "Predict", None, 5.0) == ("dspy", "circuit_open")
    assert s.circuit_state("Predict", 5.0) == "open"
    assert s.circuit_state("Predict", 10.0) == "half_open"
    assert choose(s, "Predict", None, 10.0) == ("native", "probe")  # to claim from the router
    assert choose(s, "Predict", None, 10.0) == ("native", "probe")  # choosing changes nothing
    probing = snap(
        Config(implementation_preference="native_first"),
        circuits={"Predict": Circuit(opened_at=0.0, until=10.0, probing=True)},
    )
    assert choose(probing, "Predict", None, 11.0) == ("dspy", "circuit_open")  # one at a time
    assert choose(s, "Predict", "native", 5.0) == ("native", "forced")  # force still wins
