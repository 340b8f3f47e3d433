"""JSONAdapter's ``response_format``: DSPy's ``_prepare_response_format`` plus the strict-schema
shaping its LM layer applies before sending (``_strict_json_schema``)."""

from __future__ import annotations

import logging
from typing import Any, get_origin

import msgspec

from dspex.errors import SignatureError
from dspex.signature import Field

from ._types import is_tool_calls

logger = logging.getLogger("dspex.backends.native")
_JSON_OBJECT = {"type": "json_object"}


def response_format(
    outputs: tuple[Field, ...], response_schema: bool, native_function_calling: bool
) -> dict[str, Any]:
    """The wire ``response_format`` for an LM that supports ``response_format``. A
    ``dspy.ToolCalls`` output is left out of the schema when the adapter uses the LM's function
    calling, and makes it JSON mode when it does not (the tool calls are then text)."""
    tool_calls = any(is_tool_calls(f.annotation) for f in outputs)
    if (
        not response_schema
        or any(get_origin(f.annotation) is dict for f in outputs)
        or (tool_calls and not native_function_calling)
    ):
        return dict(_JSON_OBJECT)
    if tool_calls:
        outputs = tuple(f for f in outputs if not is_tool_calls(f.annotation))
    try:
        schema = _structured_schema(outputs)
    except Exception as exc:
        import pydantic

        if not isinstance(
            exc,
            (
                ValueError,
                pydantic.PydanticInvalidForJsonSchema,
                pydantic.PydanticSchemaGenerationError,
            ),
        ):
            raise SignatureError(
                f"cannot build the structured-output schema: {type(exc).__name__}: {exc}"
            ) from exc
        logger.warning(
            "Failed to build structured output schema; using JSON mode before execution."
        )
        return dict(_JSON_OBJECT)
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "DSPyProgramOutputs",
            "schema": strict_json_schema(schema),
            "strict": True,
        },
    }


def _structured_schema(outputs: tuple[Field, ...]) -> dict[str, Any]:
    """DSPy's ``_get_structured_outputs_response_format`` (the schema of its pydantic model)."""
    import pydantic
    from pydantic_core import PydanticUndefined

    fields: dict[str, Any] = {}
    for f in outputs:
        default = PydanticUndefined if f.default is msgspec.UNSET else f.default
        fields[f.name] = (f.annotation, default)
    model = pydantic.create_model(
        "DSPyProgramOutputs", __config__=pydantic.ConfigDict(extra="forbid"), **fields
    )
    schema: dict[str, Any] = model.model_json_schema()
    for prop in schema.get("properties", {}).values():
        prop.pop("json_schema_extra", None)
    _enforce_required(schema)
    return schema


def _enforce_required(part: dict[str, Any]) -> None:
    if part.get("type") == "object":
        props = part.get("properties")
        if props is not None:
            part["required"] = list(props.keys())
            part["additionalProperties"] = False
            for sub in props.values():
                if isinstance(sub, dict):
                    _enforce_required(sub)
        else:
            part["properties"] = {}
            part["required"] = []
            part["additionalProperties"] = False
    if part.get("type") == "array" and isinstance(part.get("items"), dict):
        _enforce_required(part["items"])
    for key in ("$defs", "definitions"):
        if key in part:
            for sub in part[key].values():
                _enforce_required(sub)


def strict_json_schema(schema: Any, *, root: dict[str, Any] | None = None) -> Any:
    """DSPy's ``_strict_json_schema`` (OpenAI strict mode shaping), ported."""
    if not isinstance(schema, dict):
        return schema
    root = schema if root is None else root
    out = dict(schema)
    for key in ("$defs", "definitions"):
        if isinstance(out.get(key), dict):
            out[key] = {name: strict_json_schema(sub, root=root) for name, sub in out[key].items()}
    if out.get("type") == "object" and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if isinstance(out.get("properties"), dict):
        out["required"] = list(out["properties"])
        out["properties"] = {
            name: strict_json_schema(sub, root=root) for name, sub in out["properties"].items()
        }
    if isinstance(out.get("items"), dict):
        out["items"] = strict_json_schema(out["items"], root=root)
    if isinstance(out.get("anyOf"), list):
        out["anyOf"] = [strict_json_schema(item, root=root) for item in out["anyOf"]]
    if isinstance(out.get("allOf"), list):
        if len(out["allOf"]) == 1:
            out.update(strict_json_schema(out.pop("allOf")[0], root=root))
        else:
            out["allOf"] = [strict_json_schema(item, root=root) for item in out["allOf"]]
    if "default" in out and out["default"] is None:
        del out["default"]
    ref = out.get("$ref")
    if isinstance(ref, str) and len(out) > 1:
        resolved = _resolve_ref(root, ref)
        if isinstance(resolved, dict):
            out = {
                **strict_json_schema(resolved, root=root),
                **{k: v for k, v in out.items() if k != "$ref"},
            }
    return out


def _resolve_ref(root: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#/"):
        raise ValueError(f"Unexpected $ref format {ref!r}; only internal references are supported")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            raise ValueError(f"Could not resolve $ref {ref!r}")
    return node
