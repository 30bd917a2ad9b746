"""The ``[connectors.<name>]`` table of the SCIM connector (``kind = "scim"``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from connectors._http import BearerOrOAuthOptions
from connectors.scim.api import DEFAULT_MATCH, MatchAttribute


class ScimOptions(BearerOrOAuthOptions):
    kind: Literal["scim"] = "scim"
    page_size: int = Field(default=100, ge=1, le=1000)
    match: list[MatchAttribute] = Field(default_factory=lambda: list(DEFAULT_MATCH), min_length=1)
    """Which User attributes correlate a worker: externalId = worker id, userName = UPN (or
    email), emails = email."""
    verify_tls: bool = True
