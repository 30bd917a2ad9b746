"""RFC 9457 problem details: one stable ``type`` per kind of error, the HTTP reason phrase as
``title``, and what the OpenAPI document says about them.

``type`` is the relative URI ``/problems/<kind>``; the service serves a short description at that
path (no token needed) and ``docs/problems.md`` lists every kind. A client branches on ``type``
(or ``status``), never on ``detail``, which is for people.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from lifecycle.exceptions import (
    ConfigError,
    ConflictError,
    ConflictingDeliveryError,
    ConnectorError,
    ForbiddenError,
    IntakeError,
    LifecycleError,
    MalformedBodyError,
    NotAuthenticatedError,
    NotFoundError,
    OutOfRangeError,
    PayloadError,
    PayloadTooLargeError,
    RequestError,
    SignatureError,
    StateConflictError,
    StoreError,
    UnknownSourceError,
    UnknownWorkerError,
    UnsupportedMediaTypeError,
)

PROBLEM = "application/problem+json"
BASE = "/problems/"


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    status: int
    meaning: str

    @property
    def type(self) -> str:
        return BASE + self.name

    @property
    def title(self) -> str:
        return HTTPStatus(self.status).phrase


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("bad-request", 400, "The request cannot be served as asked."),
        Kind(
            "malformed-body", 400, "The body cannot be read: not UTF-8, or JSON nested too deeply."
        ),
        Kind("hr-event-rejected", 400, "The HR delivery was refused."),
        Kind(
            "not-authenticated",
            401,
            "No bearer token, or one unknown, revoked or expired. Create one on the service's host "
            "with `lifecycle tokens create --role admin --name NAME` and send it as "
            "`Authorization: Bearer <token>`.",
        ),
        Kind(
            "bad-signature",
            401,
            "An HR delivery's signature or token is missing, wrong, or outside the time window.",
        ),
        Kind("forbidden", 403, "The token's role may not do this (admin and auditor are apart)."),
        Kind("not-found", 404, "No such object, or no such route."),
        Kind("unknown-source", 404, "No HR source of this name is configured."),
        Kind("method-not-allowed", 405, "The route exists; the `Allow` header lists its methods."),
        Kind("conflict", 409, "The request conflicts with what exists (e.g. a token name in use)."),
        Kind(
            "state-conflict",
            409,
            "The object is not in a state that allows this (a run not awaiting approval, a "
            "playbook for a suspended worker, a restore already open).",
        ),
        Kind(
            "conflicting-delivery",
            409,
            "An HR event id delivered before with another payload: kept as a conflict, alerted.",
        ),
        Kind("payload-too-large", 413, "The body is larger than `[service] max_body_bytes`."),
        Kind("unsupported-media-type", 415, "The body's content type is not one the route takes."),
        Kind(
            "validation",
            422,
            "A parameter or body field is missing or invalid; `errors` lists each with its `loc`.",
        ),
        Kind("invalid-payload", 422, "The HR event body is well-formed but not a valid event."),
        Kind(
            "unknown-worker",
            422,
            "The HR event names a worker not in the roster: stored as `unmapped` and alerted.",
        ),
        Kind("out-of-range", 422, "A value is outside what the data allows (e.g. a log size)."),
        Kind("internal", 500, "The service failed; its log has the details."),
        Kind(
            "connector-failed",
            500,
            "A connected system failed while answering the request (its log names which).",
        ),
        Kind(
            "unavailable",
            503,
            "The database or the configuration does not let the service answer now.",
        ),
    )
}

# Most specific first: the first class an error is an instance of names its kind.
BY_EXCEPTION: tuple[tuple[type[BaseException], str], ...] = (
    (NotAuthenticatedError, "not-authenticated"),
    (ForbiddenError, "forbidden"),
    (SignatureError, "bad-signature"),
    (MalformedBodyError, "malformed-body"),
    (UnknownSourceError, "unknown-source"),
    (ConflictingDeliveryError, "conflicting-delivery"),
    (PayloadTooLargeError, "payload-too-large"),
    (UnsupportedMediaTypeError, "unsupported-media-type"),
    (UnknownWorkerError, "unknown-worker"),
    (PayloadError, "invalid-payload"),
    (IntakeError, "hr-event-rejected"),
    (OutOfRangeError, "out-of-range"),
    (StateConflictError, "state-conflict"),
    (RequestError, "bad-request"),
    (NotFoundError, "not-found"),
    (ConflictError, "conflict"),
    (StoreError, "unavailable"),
    (ConfigError, "unavailable"),
    (ConnectorError, "connector-failed"),
)
BY_STATUS = {
    400: "bad-request",
    401: "not-authenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation",
    500: "internal",
    503: "unavailable",
}


def error_problem(exc: LifecycleError) -> JSONResponse:
    """The answer to an error of the service (a 5xx is logged: the caller cannot fix it)."""
    kind = kind_of(exc)
    if kind.status >= 500:
        logging.getLogger("lifecycle.api").error("request failed: %s", exc.message)
    return problem(kind, exc.message)


def kind_of(exc: BaseException) -> Kind:
    """The kind of an error raised by the service (``internal`` for anything unforeseen)."""
    for cls, name in BY_EXCEPTION:
        if isinstance(exc, cls):
            kind = KINDS[name]
            status = getattr(exc, "status_code", kind.status)
            if isinstance(exc, IntakeError | RequestError) and status != kind.status:
                return KINDS[BY_STATUS.get(status, name)]
            return kind
    return KINDS["internal"]


def kind_for_status(status: int) -> Kind:
    """The generic kind of an HTTP status (framework errors: routing, validation)."""
    name = BY_STATUS.get(status)
    if name is not None:
        return KINDS[name]
    return Kind("http-" + str(status), status, HTTPStatus(status).phrase)


def problem(
    kind: Kind, detail: str, *, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """The problem+json answer of ``kind``; a 401 names the scheme (``WWW-Authenticate``)."""
    head = dict(headers or {})
    if kind.status == 401 and kind.name == "not-authenticated":
        head.setdefault("WWW-Authenticate", "Bearer")
    return JSONResponse(
        {"type": kind.type, "title": kind.title, "status": kind.status, "detail": detail, **extra},
        status_code=kind.status,
        media_type=PROBLEM,
        headers=head or None,
    )


class ValidationItem(BaseModel):
    loc: list[str | int]
    msg: str


class Problem(BaseModel):
    """RFC 9457 problem details, as every error of this API is answered."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": True})

    type: str = Field(
        description="Stable URI of the error kind (relative: /problems/<kind>); see "
        "docs/problems.md.",
        examples=["/problems/not-authenticated"],
    )
    title: str = Field(description="The HTTP reason phrase.", examples=["Unauthorized"])
    status: int = Field(description="The HTTP status code.", examples=[401])
    detail: str = Field(description="What went wrong in this request, for people.")
    errors: list[ValidationItem] | None = Field(
        default=None, description="Validation problems (422 `validation` only)."
    )


def problem_response(status: int) -> dict[str, Any]:
    """An OpenAPI response object: problem+json with the Problem schema."""
    return {
        "description": HTTPStatus(status).phrase,
        "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
