"""The OpenAPI document says what the service really answers, errors included.

FastAPI documents the success of each route and a 422 of its own shape; the service answers
every error with problem+json (``lifecycle.web.problems``). ``describe_errors`` rewrites the
document once, when it is first asked for:

- every route may answer 413 (the body limit is enforced before any route runs);
- a route behind a token answers 401 and 403, and 503 when the database does not answer;
- a route with parameters or a body answers 422 (``validation``), one with path parameters 404,
  one with a body 400 (a body that cannot be parsed);
- a route adds its own (``responses=errors(409)`` in its decorator);
- every error response is ``application/problem+json`` with the ``Problem`` schema, unless the
  route declared a schema of its own for it (``/readyz``'s 503 is its JSON report);
- FastAPI's ``HTTPValidationError`` schemas are gone.

``tests/acceptance`` records every response the acceptance suite sees and checks it is declared.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from lifecycle.web.problems import PROBLEM, Problem, problem_response

FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's own error answers, for its decorator: ``responses=errors(404, 409)``."""
    return {status: problem_response(status) for status in statuses}


def json_answer(description: str) -> dict[str, Any]:
    """A further success answer of a route, as JSON (``responses={200: json_answer(...)}``)."""
    return {
        "description": description,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }


def statuses_of(operation: dict[str, Any]) -> set[int]:
    """The error statuses an operation answers by the rules above (its own come with it)."""
    found = {413}
    if operation.get("security"):
        found |= {401, 403, 503}
    parameters = operation.get("parameters", [])
    if parameters or "requestBody" in operation:
        found.add(422)
    if "requestBody" in operation:
        found.add(400)  # a body that cannot be parsed at all (FastAPI answers 400)
    if any(p.get("in") == "path" for p in parameters):
        found.add(404)
    return found


def _is_own_schema(response: dict[str, Any]) -> bool:
    """Whether a response carries a schema the route declared (not FastAPI's default)."""
    for media, body in response.get("content", {}).items():
        if media == PROBLEM:
            continue
        schema = body.get("schema", {})
        ref = schema.get("$ref", "")
        if schema and not ref.endswith(FASTAPI_VALIDATION):
            return True
    return False


def describe_errors(app: FastAPI) -> None:
    """Replace ``app.openapi`` with a document that declares every error it answers."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
        )
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name in FASTAPI_VALIDATION:
            schemas.pop(name, None)
        problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(problem_schema.pop("$defs", {}))
        schemas["Problem"] = problem_schema
        for operations in document["paths"].values():
            for operation in operations.values():
                responses: dict[str, Any] = operation["responses"]
                for status in statuses_of(operation):
                    responses.setdefault(str(status), {})
                for key, response in responses.items():
                    if key.isdigit() and int(key) >= 400 and not _is_own_schema(response):
                        response.clear()
                        response.update(problem_response(int(key)))
                    elif key.isdigit():
                        response.setdefault("description", HTTPStatus(int(key)).phrase)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
