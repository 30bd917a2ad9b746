"""Who may call a route: bearer tokens with one role each (only their SHA-256 is stored)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import anyio.to_thread
from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from lifecycle.auth import Principal, Role
from lifecycle.domain import utcnow
from lifecycle.services.tokens import authenticate
from lifecycle.store.ports import Tokens

MAX_INDEX = 2**31 - 1
"""Upper bound of integer query parameters (offsets, log sizes): larger ones are a 422, not a
database overflow."""


class Auth:
    """The role checks of one app: ``admin``, ``auditor`` and ``reader`` (either of the two) are
    FastAPI dependencies that answer with the caller's ``Principal``."""

    def __init__(self, tokens: Tokens, clock: Callable[[], datetime] = utcnow) -> None:
        self._tokens = tokens
        self._clock = clock
        self._bearer = HTTPBearer(auto_error=False)
        self.admin: Any = self.require(Role.ADMIN)
        self.auditor: Any = self.require(Role.AUDITOR)
        self.reader: Any = self.require(Role.ADMIN, Role.AUDITOR)

    def require(self, *roles: Role) -> Any:
        bearer = self._bearer

        async def check(
            credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
        ) -> Principal:
            secret = (
                credentials.credentials
                if credentials is not None and credentials.scheme.lower() == "bearer"
                else None
            )
            return await anyio.to_thread.run_sync(
                authenticate, self._tokens, secret, roles, self._clock()
            )

        return Depends(check)
