"""The module types' table is the single source: names, options, inputs and builders."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

import dspex
from dspex._kinds import KINDS, ModuleKind
from dspex.backends.dspy import DSPY_MODULE_TYPES
from dspex.backends.native import NATIVE_MODULE_TYPES
from dspex.config import MODULE_TYPES, Config, module_type_name
from dspex.errors import ConfigError
from dspex.modules import ModuleType
from dspex.runtime import Runtime


def test_config_names_are_the_tables() -> None:
    assert tuple(KINDS) == MODULE_TYPES
    assert all(kind.name == name for name, kind in KINDS.items())
    assert module_type_name("multi_chain_comparison") == "MultiChainComparison"


async def test_the_registry_and_the_backends_follow_the_table() -> None:
    assert set(KINDS) == DSPY_MODULE_TYPES  # dspy runs them all
    assert {k.name for k in KINDS.values() if k.native is not None} == NATIVE_MODULE_TYPES
    async with Runtime(config=Config()) as runtime:
        registry = runtime.registry
        assert registry.module_types == sorted(KINDS)
        for kind in KINDS.values():
            expected = ("native", "dspy") if kind.native is not None else ("dspy",)
            assert registry.available_implementations(kind.name) == expected


def test_each_facade_names_its_kind_and_takes_its_options() -> None:
    facades: dict[str, type] = {}
    for obj in vars(dspex).values():
        name = getattr(obj, "module_type", None)
        if isinstance(obj, type) and isinstance(name, str):
            facades[name] = obj
    assert set(facades) == set(KINDS)  # one facade per module type, none unknown
    for name, facade in facades.items():
        if issubclass(facade, ModuleType):  # not Module: its wrap takes a program, no options
            assert (facade.accepted, facade.required) == (KINDS[name].options, KINDS[name].required)
        assert set(KINDS[name].required) <= set(KINDS[name].options), name


@pytest.mark.parametrize("kind", KINDS.values(), ids=list(KINDS))
def test_every_builder_resolves_to_a_builder_of_its_protocol(kind: ModuleKind) -> None:
    builders: list[Any] = [kind.dspy_builder()]
    if kind.native is not None:
        builders.append(kind.native_builder())
    for builder in builders:
        assert callable(builder)
        inspect.signature(builder).bind("first", "spec")  # (dspy, spec) or (spec, client)


def test_a_type_without_native_says_so() -> None:
    with pytest.raises(ConfigError, match="ProgramOfThought has no native implementation"):
        KINDS["ProgramOfThought"].native_builder()


def test_options_are_checked_against_the_kind() -> None:
    react = KINDS["ReAct"]
    react.check_options({"tools": [], "max_iters": 3})
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['tool'\]; it accepts: tools"):
        react.check_options({"tool": []})
    with pytest.raises(ConfigError, match=r"ReAct needs the option\(s\) \['tools'\]"):
        react.check_options({})
    with pytest.raises(ConfigError, match="it accepts: none"):
        KINDS["Predict"].check_options({"n": 2})
