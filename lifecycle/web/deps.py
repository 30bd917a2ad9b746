"""Who may call a route: bearer tokens with one role each (only their SHA-256 is stored)."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from lifecycle.auth import Principal, Role, token_hash
from lifecycle.exceptions import ForbiddenError, NotAuthenticatedError
from lifecycle.store.ports import Tokens

MAX_INDEX = 2**31 - 1
"""Upper bound of integer query parameters (offsets, log sizes): larger ones are a 422, not a
database overflow."""


class Auth:
    """The role checks of one app: ``admin``, ``auditor`` and ``reader`` (either of the two) are
    FastAPI dependencies that answer with the caller's ``Principal``."""

    def __init__(self, tokens: Tokens) -> None:
        self._tokens = tokens
        self._bearer = HTTPBearer(auto_error=False)
        self.admin: Any = self.require(Role.ADMIN)
        self.auditor: Any = self.require(Role.AUDITOR)
        self.reader: Any = self.require(Role.ADMIN, Role.AUDITOR)

    def require(self, *roles: Role) -> Any:
        bearer = self._bearer

        async def check(
            credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
        ) -> Principal:
            if credentials is None or credentials.scheme.lower() != "bearer":
                raise NotAuthenticatedError()
            token = await anyio.to_thread.run_sync(
                self._tokens.token_by_hash, token_hash(credentials.credentials)
            )
            if token is None:
                raise NotAuthenticatedError("the bearer token is unknown or revoked")
            if token.role not in roles:
                raise ForbiddenError(
                    f"role {token.role!r} may not do this; needs {' or '.join(roles)}"
                )
            return Principal(token.name, Role(token.role))

        return Depends(check)
