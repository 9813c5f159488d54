"""Input parsing for the two hot routes, `POST /sync` and `GET /operations/{id}`.

Clients poll `GET /operations/{id}` and submit in bursts; FastAPI's parameter and body
machinery cost about a third of those requests' CPU. These two routes therefore take the
raw request and validate it here with the same pydantic models and the same rules - a
failure is the same `RequestValidationError` (422, field and reason) - while the OpenAPI
document still declares the parameter and the body (`ID_PARAMETER`, `SYNC_BODY`).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from crypto_lakehouse.executor.models import SyncRequest

ID_PATTERN = "^[0-9a-f]{32}$"
_ID = re.compile(ID_PATTERN)
ID_PARAMETER = {
    "name": "operation_id",
    "in": "path",
    "required": True,
    "description": "32 hex digits",
    "schema": {"type": "string", "pattern": ID_PATTERN, "title": "Operation Id"},
}
SYNC_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SyncRequest"}}},
}


def parse_sync_request(body: bytes) -> SyncRequest:
    """Validate the JSON bytes; RequestValidationError with `body.*` locations otherwise."""
    try:
        return SyncRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


def path_operation_id(request: Request) -> str:
    operation_id = request.path_params["operation_id"]
    if not _ID.match(operation_id):
        raise RequestValidationError(
            [
                {
                    "loc": ("path", "operation_id"),
                    "msg": f"String should match pattern '{ID_PATTERN}'",
                    "type": "string_pattern_mismatch",
                }
            ]
        )
    return operation_id


def with_request_schemas(schema: dict[str, Any]) -> dict[str, Any]:
    """Add `SyncRequest` (and the models it uses) to the document's components."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    generated = SyncRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in generated.pop("$defs", {}).items():
        components.setdefault(name, definition)
    components.setdefault("SyncRequest", generated)
    return schema
