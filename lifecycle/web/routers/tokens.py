"""API tokens (admins): list them (never their hashes) and revoke one. Tokens are created on the
service's host (`lifecycle tokens create`), where the first admin token has to come from."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Path, Query

from lifecycle.auth import Principal
from lifecycle.services.tokens import list_tokens, revoke_token, token_json
from lifecycle.web.deps import MAX_INDEX, Auth

if TYPE_CHECKING:
    from lifecycle.service import Service


def router(service: Service, auth: Auth) -> APIRouter:
    v1 = APIRouter(prefix="/v1", tags=["tokens"])

    @v1.get("/tokens")
    async def get_tokens(
        _: Principal = auth.admin,
        include_revoked: Annotated[bool, Query(description="Revoked tokens too.")] = True,
    ) -> dict[str, Any]:
        """Every API token: id, name, role, state (active, expired, revoked), when it was
        created, expires, was last used and revoked. Never a hash."""
        tokens = await anyio.to_thread.run_sync(
            lambda: list_tokens(service.store, include_revoked=include_revoked)
        )
        now = service.clock()
        return {"tokens": [token_json(t, now) for t in tokens]}

    @v1.post("/tokens/{token_id}/revoke")
    async def post_revoke(
        token_id: Annotated[int, Path(ge=1, le=MAX_INDEX)], _: Principal = auth.admin
    ) -> dict[str, Any]:
        """Revoke a token at once (a revoked token stays revoked; revoking it again changes
        nothing). The caller may revoke its own token."""
        token = await anyio.to_thread.run_sync(
            revoke_token, service.store, token_id, service.clock()
        )
        return token_json(token, service.clock())

    return v1
