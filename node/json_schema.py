"""JSON Schema pieces shared by the API modules that build the OpenAPI document.

Every object the chorus API answers with is closed: all its properties required, no
others allowed, so schemathesis (and a client generated from the document) catches a
field added or dropped by mistake."""

from __future__ import annotations

from typing import Any

__all__ = ["object_schema"]


def object_schema(properties: dict[str, Any], description: str = "") -> dict[str, Any]:
    """A closed object: every property required, no additional ones."""
    schema: dict[str, Any] = {
        "type": "object",
        "required": list(properties),
        "additionalProperties": False,
        "properties": properties,
    }
    if description:
        schema["description"] = description
    return schema
