"""API tokens: issue (with an optional expiry, or rotating one that has the name), list, revoke,
and authenticate a request's bearer token. The CLI, the API and the console call these; only a
token's SHA-256 is stored, and nothing here ever returns or logs the hash or the token itself
(but once, to whoever created it)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from lifecycle.auth import Principal, Role, new_token, token_hash
from lifecycle.domain import ApiToken, iso_z
from lifecycle.exceptions import (
    ConflictError,
    ForbiddenError,
    NotAuthenticatedError,
    NotFoundError,
    RequestError,
)
from lifecycle.store.ports import Tokens

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,63}$")
DURATION = re.compile(r"^(\d{1,6})([mhdw])$")
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
TOUCH_EVERY = timedelta(seconds=60)
"""``last_used_at`` is written at most this often per token (a write per request would take
SQLite's write lock on every API call)."""
HOW_TO_AUTHENTICATE = (
    "create one on the service's host with `lifecycle tokens create --role admin --name NAME` "
    "(or --role auditor) and send it as the header `Authorization: Bearer <token>` "
    "(the CLI: --token or LIFECYCLE_TOKEN)"
)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: ApiToken
    secret: str
    """The bearer token itself: shown once, never stored."""
    replaced: ApiToken | None = None
    """The token of the same name that ``rotate`` revoked."""


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``2w`` as a duration; RequestError otherwise."""
    match = DURATION.match(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise RequestError(
            f"duration {text!r} is not a positive number followed by m, h, d or w (e.g. 30d)"
        )
    return timedelta(**{UNITS[match.group(2)]: int(match.group(1))})


def create_token(
    store: Tokens,
    name: str,
    role: Role,
    now: datetime,
    *,
    expires_at: datetime | None = None,
    rotate: bool = False,
) -> IssuedToken:
    """A new token named ``name``. A token not revoked already holding the name is a
    ConflictError, unless ``rotate``: then that one is revoked and the new one takes its name."""
    if not NAME.match(name):
        raise RequestError(
            f"token name {name!r}: 1 to 64 letters, digits or . _ @ : - (starting with a "
            "letter or digit)"
        )
    if expires_at is not None and expires_at <= now:
        raise RequestError("the expiry is in the past")
    secret = new_token()
    try:
        token, replaced = store.add_token(
            name, role.value, token_hash(secret), now, expires_at=expires_at, replace=rotate
        )
    except ConflictError as exc:
        raise ConflictError(
            f"{exc.message}; see `lifecycle tokens list`, or replace it (the old one is "
            f"revoked) with `lifecycle tokens create --name {name} --role {role.value} --rotate`"
        ) from exc
    return IssuedToken(token, secret, replaced)


def list_tokens(store: Tokens, *, include_revoked: bool = True) -> list[ApiToken]:
    return store.list_tokens(include_revoked=include_revoked)


def find_token(store: Tokens, ref: str) -> ApiToken:
    """The token ``ref`` names: a token not revoked with that name, else the token with that
    id; NotFoundError otherwise."""
    tokens = store.list_tokens()
    live = [t for t in tokens if t.name == ref and t.revoked_at is None]
    if live:
        return live[0]
    if ref.isdigit():
        for token in tokens:
            if token.id == int(ref):
                return token
    raise NotFoundError(f"no token named {ref!r} that is not revoked, and no token with that id")


def revoke_token(store: Tokens, ref: str | int, now: datetime) -> ApiToken:
    """Revoke the token ``ref`` names (see ``find_token``, or an id); revoking a revoked token
    changes nothing."""
    token_id = ref if isinstance(ref, int) else find_token(store, ref).id
    assert token_id is not None
    return store.revoke_token(token_id, now)


def authenticate(
    store: Tokens, secret: str | None, roles: tuple[Role, ...], now: datetime
) -> Principal:
    """The caller of a request bearing ``secret``: NotAuthenticatedError (401) without a
    token, or with one unknown, revoked or expired; ForbiddenError (403) for another role."""
    if not secret:
        raise NotAuthenticatedError(f"this request needs a bearer token: {HOW_TO_AUTHENTICATE}")
    token = store.token_by_hash(token_hash(secret))
    if token is None:
        raise NotAuthenticatedError(
            f"the bearer token is unknown or revoked (`lifecycle tokens list` shows the "
            f"tokens of a service; is it the same database?): {HOW_TO_AUTHENTICATE}"
        )
    if token.expired(now):
        raise NotAuthenticatedError(
            f"the bearer token {token.name!r} expired at {iso_z(token.expires_at)}: "
            f"{HOW_TO_AUTHENTICATE}"
        )
    if token.role not in roles:
        raise ForbiddenError(f"role {token.role!r} may not do this; needs {' or '.join(roles)}")
    _touch(store, token, now)
    return Principal(token.name, Role(token.role))


def live_token(store: Tokens, token_sha256: str, now: datetime) -> ApiToken | None:
    """The token with this hash if it may still be used (not revoked, not expired), its use
    recorded: a console session holds the hash and asks on every request."""
    token = store.token_by_hash(token_sha256)
    if token is None or token.expired(now) or token.role not in tuple(Role):
        return None
    _touch(store, token, now)
    return token


def _touch(store: Tokens, token: ApiToken, now: datetime) -> None:
    if token.id is not None and (
        token.last_used_at is None or now - token.last_used_at >= TOUCH_EVERY
    ):
        store.touch_token(token.id, now)


def token_json(token: ApiToken, now: datetime) -> dict[str, Any]:
    """A token as the API and the CLI show it: never its hash."""
    if token.revoked_at is not None:
        state = "revoked"
    elif token.expired(now):
        state = "expired"
    else:
        state = "active"
    return {
        "id": token.id,
        "name": token.name,
        "role": token.role,
        "state": state,
        "created_at": iso_z(token.created_at),
        "expires_at": iso_z(token.expires_at),
        "last_used_at": iso_z(token.last_used_at),
        "revoked_at": iso_z(token.revoked_at),
    }
