"""The subset of JSON Schema our structured results use, checked with an error the model can fix.

Types, `required`, `properties`, `items`, `enum`, `minimum` and `maximum`:
enough to tell the model exactly which field is wrong, without a dependency.
"""

from __future__ import annotations

import json
from typing import Any

from tasks.agents.errors import ToolError

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def check_result(value: Any, schema: dict[str, Any], where: str) -> None:
    """Check a structured result against the subset of JSON Schema our roles use.

    Types, `required`, `properties`, `items`, `enum`, `minimum` and `maximum`:
    enough to give the model a precise error to correct, without a dependency.
    """
    kind = schema.get("type")
    if kind in _JSON_TYPES:
        expected = _JSON_TYPES[kind]
        is_bool = isinstance(value, bool)
        if not isinstance(value, expected) or (is_bool and kind in ("integer", "number")):
            raise ToolError(f"submit: {where} must be of type {kind}")
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(json.dumps(v) for v in schema["enum"])
        raise ToolError(f"submit: {where} must be one of {allowed}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise ToolError(f"submit: {where} must be at least {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise ToolError(f"submit: {where} must be at most {schema['maximum']}")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                raise ToolError(f"submit: {where} is missing {key!r}")
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                check_result(value[key], sub, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            check_result(item, schema["items"], f"{where}[{i}]")
