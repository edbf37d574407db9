"""Builders of OpenAPI schema objects shared by the services' documents (the appliance admin
API, OpenAPI 3.0; the origin API, OpenAPI 3.1). Only what both versions write the same way is
here; how a value is made nullable differs between them and stays with each document."""

from __future__ import annotations

from typing import Any

JSON = "application/json"


def ref(name: str) -> dict[str, Any]:
    """A reference to ``#/components/schemas/{name}``."""
    return {"$ref": f"#/components/schemas/{name}"}


def string(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def number(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "number", "description": description, **extra}


def obj(
    description: str,
    properties: dict[str, Any],
    *,
    closed: bool = False,
    required: list[str] | None = None,
) -> dict[str, Any]:
    """An object schema: every field required (responses) unless ``required`` says which;
    ``closed`` refuses other fields (request bodies)."""
    schema: dict[str, Any] = {"type": "object", "description": description}
    schema["required"] = list(properties) if required is None else required
    schema["properties"] = properties
    if closed:
        schema["additionalProperties"] = False
    return schema


def json_response(description: str, schema: str, **extra: Any) -> dict[str, Any]:
    """A response whose JSON body is the component schema ``schema``."""
    return {"description": description, "content": {JSON: {"schema": ref(schema)}}, **extra}


def query(
    name: str, description: str, schema: dict[str, Any], *, required: bool = False
) -> dict[str, Any]:
    """A query-string parameter."""
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema,
    }


def operation(
    operation_id: str,
    summary: str,
    tag: str,
    responses: dict[str, Any],
    *,
    security: list[dict[str, list[str]]],
    description: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An operation object; ``extra`` adds fields such as ``parameters`` or ``requestBody``."""
    op: dict[str, Any] = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if description:
        op["description"] = description
    op.update(extra)
    op["security"] = security
    op["responses"] = responses
    return op
