"""API tokens on the SQL store: names unique among live tokens, rotation, expiry, revocation,
and what a 401 tells the caller."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lifecycle.auth import Role
from lifecycle.exceptions import (
    ConflictError,
    ForbiddenError,
    NotAuthenticatedError,
    NotFoundError,
    RequestError,
)
from lifecycle.services.tokens import (
    authenticate,
    create_token,
    list_tokens,
    parse_duration,
    revoke_token,
    token_json,
)
from lifecycle.store.sql import SqlStore

NOW = datetime(2026, 12, 10, 9, 0, tzinfo=UTC)
READERS = (Role.ADMIN, Role.AUDITOR)


@pytest.fixture
def store() -> SqlStore:
    s = SqlStore("sqlite://")
    s.create_schema()
    return s


def test_a_live_name_is_refused_with_a_hint_and_rotate_replaces_it(store: SqlStore) -> None:
    first = create_token(store, "ops", Role.ADMIN, NOW)

    with pytest.raises(ConflictError) as refused:
        create_token(store, "ops", Role.ADMIN, NOW)
    assert "already exists" in refused.value.message
    assert "--rotate" in refused.value.message

    second = create_token(store, "ops", Role.ADMIN, NOW + timedelta(minutes=1), rotate=True)

    assert second.replaced is not None
    assert second.replaced.id == first.token.id
    assert second.secret != first.secret
    with pytest.raises(NotAuthenticatedError, match="unknown or revoked"):
        authenticate(store, first.secret, READERS, NOW)
    assert authenticate(store, second.secret, READERS, NOW).name == "ops"
    states = [(t.name, t.revoked_at is not None) for t in list_tokens(store)]
    assert states == [("ops", True), ("ops", False)]


def test_a_revoked_name_can_be_used_again_without_rotate(store: SqlStore) -> None:
    create_token(store, "ci", Role.AUDITOR, NOW)
    revoke_token(store, "ci", NOW)

    again = create_token(store, "ci", Role.AUDITOR, NOW)

    assert again.replaced is None
    assert authenticate(store, again.secret, READERS, NOW).role is Role.AUDITOR


def test_an_expired_token_is_refused_saying_it_expired(store: SqlStore) -> None:
    issued = create_token(store, "temp", Role.AUDITOR, NOW, expires_at=NOW + parse_duration("30d"))

    assert authenticate(store, issued.secret, READERS, NOW + timedelta(days=29)).name == "temp"
    with pytest.raises(NotAuthenticatedError) as refused:
        authenticate(store, issued.secret, READERS, NOW + timedelta(days=30))
    assert "expired at 2027-01-09T09:00:00Z" in refused.value.message
    assert token_json(list_tokens(store)[0], NOW + timedelta(days=31))["state"] == "expired"


def test_a_401_says_how_to_get_and_pass_a_token(store: SqlStore) -> None:
    with pytest.raises(NotAuthenticatedError) as missing:
        authenticate(store, None, READERS, NOW)
    assert "lifecycle tokens create --role admin --name NAME" in missing.value.message
    assert "Authorization: Bearer <token>" in missing.value.message


def test_the_wrong_role_is_forbidden(store: SqlStore) -> None:
    issued = create_token(store, "aud", Role.AUDITOR, NOW)
    with pytest.raises(ForbiddenError):
        authenticate(store, issued.secret, (Role.ADMIN,), NOW)


def test_last_use_is_recorded_at_most_once_a_minute(store: SqlStore) -> None:
    issued = create_token(store, "ops", Role.ADMIN, NOW)
    authenticate(store, issued.secret, READERS, NOW)
    authenticate(store, issued.secret, READERS, NOW + timedelta(seconds=30))
    assert list_tokens(store)[0].last_used_at == NOW
    authenticate(store, issued.secret, READERS, NOW + timedelta(seconds=61))
    assert list_tokens(store)[0].last_used_at == NOW + timedelta(seconds=61)


def test_revoke_by_name_or_id_and_the_json_never_holds_a_hash(store: SqlStore) -> None:
    a = create_token(store, "a", Role.ADMIN, NOW)
    b = create_token(store, "b", Role.ADMIN, NOW)
    assert b.token.id is not None

    revoke_token(store, "a", NOW)
    revoke_token(store, str(b.token.id), NOW)

    shown = [token_json(t, NOW) for t in list_tokens(store)]
    assert [t["state"] for t in shown] == ["revoked", "revoked"]
    assert all(a.token.token_sha256 not in str(t) for t in shown)
    assert "token_sha256" not in shown[0]
    assert list_tokens(store, include_revoked=False) == []
    with pytest.raises(NotFoundError):
        revoke_token(store, "nobody", NOW)


@pytest.mark.parametrize("text", ["30", "0d", "-1d", "3y", "d", ""])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(RequestError):
        parse_duration(text)


def test_durations() -> None:
    assert parse_duration("90m") == timedelta(minutes=90)
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration("2w") == timedelta(weeks=2)


def test_bad_names_and_past_expiries_are_refused(store: SqlStore) -> None:
    with pytest.raises(RequestError):
        create_token(store, "has space", Role.ADMIN, NOW)
    with pytest.raises(RequestError):
        create_token(store, "ok", Role.ADMIN, NOW, expires_at=NOW - timedelta(seconds=1))
