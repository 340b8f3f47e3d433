"""ReAct's tools: Python callables described and called exactly as ``dspy.Tool`` does it.

A tool's name, description and JSON-schema ``args`` come from its signature and docstring as in
DSPy 3.4.1 (``Tool._parse_function``), its prompt line is ``str(dspy.Tool)``, and a call checks
and converts the LM's arguments as ``Tool._validate_and_parse_args`` does, raising the same
errors (which ReAct shows the LM as the observation). Unlike ``Tool.acall``, a sync tool runs in
one of the runtime's threads for sync user code (``anyio.to_thread`` under one limiter,
``Config.sync_threads``) so it never blocks the event loop.
"""

from __future__ import annotations

import inspect
import traceback
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, get_origin, get_type_hints

from dspex._threads import current_threads
from dspex.errors import ConfigError

#: DSPy's ReAct ``finish`` tool: its name, the start of its description, its result.
FINISH = "finish"


def format_error_for_lm(error: BaseException, *, traceback_frames: int = 0) -> str:
    """DSPy's ``format_error_for_lm``: ``str(error)``, or a traceback of at most
    ``traceback_frames`` frames (newline first) when that is positive."""
    if traceback_frames <= 0:
        return str(error)
    return (
        "\n"
        + "".join(
            traceback.format_exception(
                type(error), error, error.__traceback__, limit=traceback_frames
            )
        ).strip()
    )


class NativeTool:
    """One tool of a native ReAct: DSPy's ``Tool`` fields plus an async, non-blocking call.

    Build it with :meth:`of` from a callable (or a ``dspy.Tool``, whose fields are reused).
    """

    __slots__ = (
        "_models",
        "_validators",
        "arg_types",
        "args",
        "desc",
        "func",
        "has_kwargs",
        "inline",
        "name",
    )

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str,
        desc: str | None,
        args: dict[str, Any],
        arg_types: dict[str, Any],
        has_kwargs: bool,
        inline: bool = False,
    ):
        self.func = func
        #: Run a sync ``func`` on the event loop (for trivial tools such as ``finish``).
        self.inline = inline
        self.name = name
        self.desc = desc
        self.args = args
        self.arg_types = arg_types
        self.has_kwargs = has_kwargs
        self._validators: dict[str, Any] = {}
        self._models: dict[str, Any] = {}

    @classmethod
    def of(cls, tool: Any) -> NativeTool:
        """The tool for a callable (sync or async) or a ``dspy.Tool``; ConfigError otherwise."""
        if isinstance(tool, NativeTool):
            return tool
        if type(tool).__name__ == "Tool" and type(tool).__module__.startswith("dspy"):
            return cls(
                tool.func,
                name=tool.name,
                desc=tool.desc,
                args=tool.args,
                arg_types=tool.arg_types or {},
                has_kwargs=tool.has_kwargs,
            )
        if not callable(tool):
            raise ConfigError(f"ReAct tools must be callables or dspy.Tool objects, got {tool!r}")
        try:
            return cls._from_function(tool)
        except Exception as exc:  # e.g. a type hint pydantic cannot describe, as in dspy.Tool
            raise ConfigError(
                f"cannot describe the tool {tool!r}: {type(exc).__name__}: {exc}"
            ) from exc

    @classmethod
    def _from_function(cls, func: Callable[..., Any]) -> NativeTool:
        """DSPy's ``Tool._parse_function``, step for step."""
        from pydantic import BaseModel, TypeAdapter

        annotated: Any = func
        if not (inspect.isfunction(func) or inspect.ismethod(func)):
            annotated = func.__call__  # type: ignore[operator]  # an object: __call__ has them
        name = getattr(func, "__name__", type(func).__name__)
        desc = getattr(func, "__doc__", None) or getattr(annotated, "__doc__", "")
        sig = inspect.signature(annotated)
        available = get_type_hints(annotated)
        hints = {p: available.get(p, Any) for p in sig.parameters}
        args: dict[str, Any] = {}
        for k, v in hints.items():
            origin = get_origin(v) or v
            if isinstance(origin, type) and issubclass(origin, BaseModel):
                args[k] = _resolve_refs(v.model_json_schema())
            else:
                args[k] = _resolve_refs(TypeAdapter(v).json_schema())
            default = sig.parameters[k].default
            if default is not inspect.Parameter.empty:
                args[k]["default"] = _to_json_default(default)
        has_kwargs = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
        return cls(func, name=name, desc=desc, args=args, arg_types=hints, has_kwargs=has_kwargs)

    def __str__(self) -> str:
        """The tool as DSPy's ReAct lists it: ``name, whose description is <desc>..</desc>.
        It takes arguments {...}.``"""
        desc = (
            f", whose description is <desc>{self.desc}</desc>.".replace("\n", "  ")
            if self.desc
            else "."
        )
        return f"{self.name}{desc} It takes arguments {self.args}."

    def __repr__(self) -> str:
        return f"NativeTool(name={self.name}, desc={self.desc}, args={self.args})"

    # -- calls ---------------------------------------------------------------------------------

    def parse_args(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Check ``kwargs`` against the JSON schemas and convert them to the hinted types, as
        ``Tool._validate_and_parse_args`` does (with the same ValueError messages)."""
        from jsonschema import ValidationError

        for k, v in kwargs.items():
            if k not in self.args:
                if self.has_kwargs:
                    continue
                raise ValueError(f"Arg {k} is not in the tool's args.")
            try:
                instance = v.model_dump() if hasattr(v, "model_dump") else v
                type_str = self.args[k].get("type")
                if type_str is not None and type_str != "Any":
                    self._validate(k, instance)
            except ValidationError as e:
                # Implicitly chained, as in DSPy: the traceback the LM sees reads "During
                # handling of the above exception, another exception occurred".
                raise ValueError(f"Arg {k} is invalid: {e.message}")
        parsed = {}
        for k, v in kwargs.items():
            if k in self.arg_types and self.arg_types[k] != Any:
                parsed[k] = self._model(k).model_validate({"value": v}).value
            else:
                parsed[k] = v
        return parsed

    def _validate(self, name: str, instance: Any) -> None:
        """``jsonschema.validate(instance, schema)``, with the checked validator kept."""
        validator = self._validators.get(name)
        if validator is None:
            from jsonschema.validators import validator_for

            schema = self.args[name]
            cls = validator_for(schema)
            cls.check_schema(schema)
            validator = self._validators[name] = cls(schema)
        from jsonschema.exceptions import best_match

        error = best_match(validator.iter_errors(instance))
        if error is not None:
            raise error

    def _model(self, name: str) -> Any:
        """DSPy's per-call ``create_model("Wrapper", value=(type, ...))``, built once."""
        model = self._models.get(name)
        if model is None:
            from pydantic import create_model

            model = self._models[name] = create_model("Wrapper", value=(self.arg_types[name], ...))
        return model

    async def observe(self, kwargs: Mapping[str, Any]) -> Any:
        """The observation ReAct records for a call with the LM's arguments ``kwargs``: the
        tool's result, or ``Execution error in <name>: <traceback>`` if it raised."""
        func = self.func
        try:
            parsed = self.parse_args(kwargs)
            if self.inline:
                return func(**parsed)
            if _is_async(func):
                return await func(**parsed)
        except Exception as err:
            return self.error(err)
        result = await current_threads().run(self._observe_sync, parsed)
        if inspect.isawaitable(result):  # a sync callable that returned a coroutine
            try:
                return await result
            except Exception as err:
                return self.error(err)
        return result

    def _observe_sync(self, parsed: dict[str, Any]) -> Any:
        try:
            return self.func(**parsed)
        except Exception as err:
            return self.error(err)

    def error(self, err: Exception) -> str:
        """DSPy's observation for a failed call, caught in the frame that called the tool.

        DSPy formats ``traceback_frames=5`` from ``ReAct.aforward``, two frames above its
        ``Tool.acall`` (which calls the tool); counting from our frame that calls the tool, 3
        frames show the same frames of the tool's own code.
        """
        return f"Execution error in {self.name}: {format_error_for_lm(err, traceback_frames=3)}"


def _is_async(func: Any) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 (an object with an async __call__)
    )


async def call_user(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Call a user's function without blocking the event loop: an async one is awaited, a
    sync one runs in one of the threads for sync user code (``Config.sync_threads``), and a
    coroutine it returns is awaited."""
    if _is_async(func):
        return await func(*args, **kwargs)
    result = await current_threads().run(func, *args, **kwargs)
    if inspect.isawaitable(result):
        return await result
    return result


def _to_json_default(value: Any) -> Any:
    """DSPy's ``_to_json_default``: a parameter default in its JSON form."""
    if isinstance(value, Decimal):
        return float(value)
    try:
        import pydantic_core

        return pydantic_core.to_jsonable_python(value)
    except Exception:
        return value


def _resolve_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """DSPy's ``_resolve_json_schema_reference``: ``$ref`` s inlined, ``$defs`` dropped."""
    if "$defs" not in schema and "definitions" not in schema:
        return schema

    def resolve(obj: Any) -> Any:
        if isinstance(obj, dict):
            if "$ref" in obj:
                return resolve(schema["$defs"][obj["$ref"].split("/")[-1]])
            return {k: resolve(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [resolve(item) for item in obj]
        return obj

    resolved: dict[str, Any] = resolve(schema)
    resolved.pop("$defs", None)
    return resolved


def finish_tool(outputs: str) -> NativeTool:
    """ReAct's ``finish`` tool, as DSPy builds it (no arguments; returns ``"Completed."``)."""
    return NativeTool(
        lambda: "Completed.",
        name=FINISH,
        desc=(
            "Marks the task as complete. That is, signals that all information for producing "
            f"the outputs, i.e. {outputs}, are now available to be extracted."
        ),
        args={},
        arg_types={},
        has_kwargs=False,
        inline=True,
    )
