"""The service's exception tree, and the connectors' tree re-exported beside it.

    LifecycleError
     ├── ConfigError
     │    ├── SecretError
     │    └── DatabaseNotReadyError   (no database, or an older schema: run `db upgrade`)
     ├── IntakeError                  (HR webhook input; maps to a 4xx problem)
     │    ├── MalformedBodyError      (400: not UTF-8, nested too deeply)
     │    ├── SignatureError
     │    ├── UnknownSourceError
     │    ├── ConflictingDeliveryError (409: a known event id with another payload)
     │    ├── PayloadTooLargeError
     │    ├── UnsupportedMediaTypeError
     │    ├── PayloadError
     │    └── UnknownWorkerError
     ├── RequestError                 (any route: a well-formed request that cannot be served)
     │    ├── OutOfRangeError         (422: e.g. a log size beyond the log)
     │    └── StateConflictError      (409: e.g. cancelling a run that already started)
     ├── AuthError
     │    ├── NotAuthenticatedError
     │    └── ForbiddenError
     ├── NotFoundError
     ├── ConflictError                (409: e.g. a token name already in use)
     └── StoreError
          ├── EvidenceError
          └── LeaseLostError          (another replica took the run over: stop, write nothing)

    ConnectorError                    (connectors.base; carries connector name and account id)
     ├── TransientConnectorError      (retried with backoff; honours retry_after)
     │    ├── StepTimeoutError        (here: the executor stopped waiting for a call)
     │    └── ReadbackMismatchError   (here: the read-back does not show the change yet)
     └── PermanentConnectorError      (escalated at once)
          ├── UnsupportedOperationError
          └── ConnectorConfigError    (from_config; the service wraps it in ConfigError)

Each class's docstring is its default message. The connector library is a package of its own
that imports nothing from ``lifecycle``, so its errors are not ``LifecycleError``s: code that
handles both catches ``(LifecycleError, ConnectorError)``. Connectors raise ``ConnectorError``
subclasses ``from`` the vendor exception; no vendor exception crosses a connector boundary.
Both trees carry ``message``.
"""

from __future__ import annotations

from connectors.base import (
    ConnectorConfigError,
    ConnectorError,
    PermanentConnectorError,
    TransientConnectorError,
    UnsupportedOperationError,
)

__all__ = [
    "AuthError",
    "ConfigError",
    "ConflictError",
    "ConnectorConfigError",
    "ConnectorError",
    "DatabaseNotReadyError",
    "EvidenceError",
    "ForbiddenError",
    "IntakeError",
    "LeaseLostError",
    "LifecycleError",
    "NotAuthenticatedError",
    "NotFoundError",
    "PayloadError",
    "PayloadTooLargeError",
    "PermanentConnectorError",
    "ReadbackMismatchError",
    "SecretError",
    "SignatureError",
    "StateConflictError",
    "StepTimeoutError",
    "StoreError",
    "TransientConnectorError",
    "UnknownSourceError",
    "UnknownWorkerError",
    "UnsupportedOperationError",
]


class LifecycleError(Exception):
    """The lifecycle service failed."""

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (self.__class__.__doc__ or "").strip()
        super().__init__(self.message)


class ConfigError(LifecycleError):
    """The configuration is invalid."""


class SecretError(ConfigError):
    """A secret reference could not be resolved."""


class DatabaseNotReadyError(ConfigError):
    """The database does not exist or is not at the newest schema: run `lifecycle db upgrade`."""


class IntakeError(LifecycleError):
    """The HR event was rejected."""

    status_code = 400


class MalformedBodyError(IntakeError):
    """The request body cannot be read (not UTF-8, or JSON nested too deeply)."""

    status_code = 400


class SignatureError(IntakeError):
    """The webhook signature is missing, invalid or too old."""

    status_code = 401


class UnknownSourceError(IntakeError):
    """No HR source with this name is configured."""

    status_code = 404


class PayloadError(IntakeError):
    """The HR event body is malformed."""

    status_code = 422


class ConflictingDeliveryError(IntakeError):
    """This event id was delivered before with a different payload; it is not a re-delivery."""

    status_code = 409


class UnsupportedMediaTypeError(IntakeError):
    """The request body's content type is not one this source sends."""

    status_code = 415


class PayloadTooLargeError(IntakeError):
    """The HR event body is larger than the limit."""

    status_code = 413


class UnknownWorkerError(IntakeError):
    """The HR event names a worker that is not in the workforce roster."""

    status_code = 422


class RequestError(LifecycleError):
    """The request cannot be served as asked."""

    status_code = 400


class OutOfRangeError(RequestError):
    """A value in the request is outside what the data allows."""

    status_code = 422


class StateConflictError(RequestError):
    """The object is not in a state that allows this."""

    status_code = 409


class AuthError(LifecycleError):
    """Authentication failed."""


class NotAuthenticatedError(AuthError):
    """A valid bearer token is required."""


class ForbiddenError(AuthError):
    """This token's role may not perform this operation."""


class NotFoundError(LifecycleError):
    """The requested object does not exist."""


class ConflictError(LifecycleError):
    """The request conflicts with what exists already."""


class StoreError(LifecycleError):
    """The database operation failed."""


class EvidenceError(StoreError):
    """The evidence log could not be appended to or verified."""


class LeaseLostError(StoreError):
    """Another replica has taken this run over; this replica's writes to it are refused."""


class StepTimeoutError(TransientConnectorError):
    """The connected system did not answer within the step timeout."""


class ReadbackMismatchError(TransientConnectorError):
    """The read-back does not (yet) show the intended state."""
