"""Field names that DSPy 3.4.1 (through pydantic) rejects, fails on, or warns about.

Measured against ``dspy.Signature`` 3.4.1 / ``pydantic.BaseModel`` 2.x; ``tests/test_signature.py``
re-derives these sets from the installed DSPy so a version bump cannot silently drift.
"""

from __future__ import annotations

# DSPy's metaclass properties: the class is created, then DSPy fails with an internal TypeError.
DSPY_PROPERTIES = frozenset(
    {"fields", "input_fields", "instructions", "output_fields", "signature"}
)

# pydantic refuses these outright (``model_config`` breaks model creation; the others are members of
# the protected ``model_validate``/``model_dump`` namespaces).
PYDANTIC_REJECTED = frozenset(
    {
        "model_config",
        "model_dump",
        "model_dump_json",
        "model_validate",
        "model_validate_json",
        "model_validate_strings",
    }
)

# pydantic accepts these but warns that the field shadows an attribute of the parent class.
SHADOWING = frozenset(
    {
        "append",
        "append_instructions",
        "construct",
        "copy",
        "delete",
        "dict",
        "dump_state",
        "equals",
        "from_orm",
        "insert",
        "json",
        "load_state",
        "model_computed_fields",
        "model_construct",
        "model_copy",
        "model_extra",
        "model_fields",
        "model_fields_set",
        "model_json_schema",
        "model_parametrized_name",
        "model_post_init",
        "model_rebuild",
        "mro",
        "parse_file",
        "parse_obj",
        "parse_raw",
        "prepend",
        "register",
        "schema",
        "schema_json",
        "update_forward_refs",
        "validate",
        "with_instructions",
        "with_updated_fields",
    }
)

PROTECTED_PREFIXES = ("model_validate", "model_dump")


def name_problem(name: str) -> tuple[str, bool] | None:
    """``(message, is_error)`` when DSPy would reject (or warn about) ``name``; else ``None``."""
    if name.startswith("_"):
        return (
            f"field name {name!r} starts with an underscore, which pydantic does not allow",
            True,
        )
    if name in DSPY_PROPERTIES:
        return (
            f"field name {name!r} clashes with dspy.Signature.{name} "
            "(DSPy fails with an internal TypeError); rename the field",
            True,
        )
    if name in PYDANTIC_REJECTED:
        return (
            f"field name {name!r} clashes with pydantic.BaseModel.{name}; rename the field",
            True,
        )
    if name in SHADOWING:
        return (f"field name {name!r} shadows an attribute of dspy.Signature", False)
    if name.startswith(PROTECTED_PREFIXES):
        return (f"field name {name!r} is in pydantic's protected namespace 'model_'", False)
    return None
