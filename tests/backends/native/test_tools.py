"""Native ReAct tools against ``dspy.Tool``: descriptions, argument checks, error text."""

from __future__ import annotations

import asyncio
import enum
import threading
from decimal import Decimal
from typing import Any, Literal

import dspy
import pydantic
import pytest
from dspy.utils.exceptions import format_error_for_lm as dspy_format_error

from dspex.backends.native._tools import NativeTool, format_error_for_lm
from dspex.errors import ConfigError


class Unit(enum.Enum):
    C = "celsius"
    F = "fahrenheit"


class Place(pydantic.BaseModel):
    city: str
    country: str = "FR"


class Trip(pydantic.BaseModel):
    stops: list[Place]


def lookup(city: str, n: int = 2) -> str:
    """Look up facts
    about a city."""
    return f"{city} is a city."


async def weather(city: str, unit: Unit = Unit.C, when: Literal["now", "later"] = "now") -> str:
    """Weather in a city."""
    return city


def no_doc(x, y: float = 1.5, z: Decimal = Decimal("2.5"), *rest: int, **extra: Any):  # type: ignore[no-untyped-def]
    return x


def models(place: Place, trip: Trip | None = None, tags: list[str] | None = None) -> str:
    """Pydantic arguments, nested and optional."""
    return place.city


class Counter:
    """A callable object."""

    def __call__(self, step: int = 1) -> int:
        return step


class AsyncCallable:
    async def __call__(self, text: str) -> str:
        """Echo asynchronously."""
        return text


TOOLS = [lookup, weather, no_doc, models, Counter(), AsyncCallable()]


@pytest.mark.parametrize("func", TOOLS, ids=lambda f: getattr(f, "__name__", type(f).__name__))
def test_described_exactly_as_dspy_tool(func: Any) -> None:
    ours, theirs = NativeTool.of(func), dspy.Tool(func)
    assert (ours.name, ours.desc, ours.args) == (theirs.name, theirs.desc, theirs.args)
    assert ours.arg_types == theirs.arg_types
    assert ours.has_kwargs == theirs.has_kwargs
    assert str(ours) == str(theirs)


def test_dspy_tool_objects_keep_their_fields() -> None:
    tool = dspy.Tool(lookup, name="find", desc="Find things.", arg_desc={"city": "A city name"})
    ours = NativeTool.of(tool)
    assert str(ours) == str(tool)
    assert ours.args["city"]["description"] == "A city name"


def test_not_a_callable_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="callables"):
        NativeTool.of(42)


ARGUMENTS = [
    {"city": "Paris"},
    {"city": "Paris", "n": 3},
    {"city": "Paris", "n": "3"},  # not an integer
    {"city": 7},
    {"town": "Paris"},  # not an argument
    {"place": {"city": "Lyon"}},
    {"place": {"country": "FR"}},  # passes the schema's type check, fails pydantic
    {"trip": {"stops": [{"city": "A"}]}, "place": {"city": "B"}},
    {"step": 2.5},
    {"x": object(), "extra_arg": 1},
]


@pytest.mark.parametrize("kwargs", ARGUMENTS)
@pytest.mark.parametrize("func", [lookup, models, Counter(), no_doc], ids=str)
def test_arguments_checked_and_converted_as_dspy_does(func: Any, kwargs: dict[str, Any]) -> None:
    def outcome(parse: Any) -> tuple[str, Any]:
        try:
            return ("ok", parse(**kwargs))
        except Exception as exc:
            return (type(exc).__name__, str(exc))

    ours = outcome(lambda **kw: NativeTool.of(func).parse_args(kw))
    theirs = outcome(dspy.Tool(func)._validate_and_parse_args)
    assert ours == theirs


def test_error_text_is_dspy_format_error_for_lm() -> None:
    def fail() -> None:
        try:
            {}["missing"]
        except KeyError:
            raise ValueError("while handling") from None

    with pytest.raises(ValueError, match="while handling") as info:
        fail()
    for frames in (0, 1, 5):
        ours = format_error_for_lm(info.value, traceback_frames=frames)
        assert ours == dspy_format_error(info.value, traceback_frames=frames)


async def test_sync_tools_run_in_a_worker_thread_async_ones_on_the_loop() -> None:
    threads: dict[str, int] = {}

    def sync_tool() -> str:
        threads["sync"] = threading.get_ident()
        return "s"

    async def async_tool() -> str:
        threads["async"] = threading.get_ident()
        return "a"

    assert await NativeTool.of(sync_tool).observe({}) == "s"
    assert await NativeTool.of(async_tool).observe({}) == "a"
    assert threads["async"] == threading.get_ident()
    assert threads["sync"] != threading.get_ident()


async def test_a_failing_tool_becomes_the_observation_dspy_shows() -> None:
    def broken(x: int) -> int:
        """Fails."""
        raise RuntimeError(f"no {x}")

    observation = await NativeTool.of(broken).observe({"x": 1})
    assert observation.startswith("Execution error in broken: \nTraceback (most recent call last):")
    assert observation.endswith("RuntimeError: no 1")
    assert 'raise RuntimeError(f"no {x}")' in observation  # the tool's own frame is shown
    missing = await NativeTool.of(broken).observe({})
    assert missing.endswith("broken() missing 1 required positional argument: 'x'")


async def test_a_sync_callable_returning_a_coroutine_is_awaited() -> None:
    async def later() -> str:
        await asyncio.sleep(0)
        return "done"

    def starts_later() -> Any:
        return later()

    assert await NativeTool.of(starts_later).observe({}) == "done"
