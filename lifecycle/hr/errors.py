"""Errors of reading an HR vendor's API (the look-ups some webhooks need before a decision).

    LifecycleError
     └── VendorLookupError
          ├── VendorUnavailableError   (timeouts, connection errors, 429, 5xx: retried)
          ├── VendorRefusedError       (401, 403, other 4xx, unreadable answers: a person
          │                             must fix the configuration; still retried, slowly)
          └── VendorRecordMissingError (404: the vendor has no such person)

Each class's docstring is its default message. Raised ``from`` the httpx error; no httpx error
leaves ``lifecycle.hr``. Messages never carry the API key or the vendor's response body.
"""

from __future__ import annotations

from lifecycle.exceptions import LifecycleError


class VendorLookupError(LifecycleError):
    """The HR vendor's API could not be read."""


class VendorUnavailableError(VendorLookupError):
    """The HR vendor's API is unavailable for now; the look-up is retried."""

    def __init__(self, message: str | None = None, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class VendorRefusedError(VendorLookupError):
    """The HR vendor's API refused the request (check the API key and its permissions)."""


class VendorRecordMissingError(VendorLookupError):
    """The HR vendor has no record of this person."""
