"""``lifecycle db``, ``keys`` and ``tokens``: the database schema, the evidence signing key and
API tokens, on the service's own configuration (no running service needed)."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Annotated

import typer

from lifecycle.auth import Role
from lifecycle.cli.common import (
    ConfigOpt,
    JsonOpt,
    emit,
    err,
    fail,
    local_store,
    out,
    settings_from,
    styled_state,
    table,
    usage,
)
from lifecycle.domain import iso_z, utc, utcnow
from lifecycle.evidence.checkpoint import init_key
from lifecycle.exceptions import LifecycleError, RequestError

db_app = typer.Typer(help="The database.", no_args_is_help=True)
keys_app = typer.Typer(help="The evidence signing key.", no_args_is_help=True)
tokens_app = typer.Typer(help="API bearer tokens.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None) -> None:
    """Create the database schema, or upgrade it in place to the newest revision (alembic);
    a database written by release 0.1.0 is recognised and upgraded too."""
    from lifecycle.service import open_store

    settings = settings_from(config)
    try:
        store = open_store(settings, create=True)
    except LifecycleError as exc:
        fail(exc.message)
    try:
        revision = store.schema_revision()
    finally:
        store.dispose()
    out.print(f"database schema is up to date (revision {revision})")


@keys_app.command("init")
def keys_init(
    config: ConfigOpt = None,
    force: Annotated[
        bool, typer.Option(help="Replace an existing key (orphans old checkpoints).")
    ] = False,
) -> None:
    """Create the Ed25519 evidence key and its C2SP verifier key (<path>.pub)."""
    settings = settings_from(config)
    try:
        verifier = init_key(
            settings.service.evidence_key, settings.service.log_origin, overwrite=force
        )
    except LifecycleError as exc:
        fail(exc.message)
    out.print(f"private key: {settings.service.evidence_key} (mode 0600)")
    out.print(f"verifier key ({settings.service.evidence_key}.pub):")
    sys.stdout.write(verifier.text() + "\n")


@tokens_app.command("create")
def tokens_create(
    role: Annotated[Role, typer.Option(help="admin or auditor")],
    name: Annotated[
        str, typer.Option(help="Who or what holds the token (unique among live tokens).")
    ],
    expires_in: Annotated[
        str | None,
        typer.Option(help="Expire after this long: 90m, 12h, 30d, 2w (default: never)."),
    ] = None,
    expires_at: Annotated[
        datetime | None, typer.Option(help="Expire at this time (UTC unless it says).")
    ] = None,
    rotate: Annotated[
        bool,
        typer.Option("--rotate", help="Replace the live token of this name (it is revoked)."),
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Create an API token; it is printed once, alone on the last line, and never again.
    A live token of the same name is refused (exit 1) unless --rotate replaces it."""
    from lifecycle.services.tokens import create_token, parse_duration

    if expires_in is not None and expires_at is not None:
        usage("give --expires-in or --expires-at, not both")
    now = utcnow()
    try:
        until = now + parse_duration(expires_in) if expires_in else None
    except LifecycleError as exc:
        usage(exc.message)
    if expires_at is not None:
        until = utc(expires_at)
    settings = settings_from(config)
    with local_store(settings) as store:
        try:
            issued = create_token(store, name, role, now, expires_at=until, rotate=rotate)
        except RequestError as exc:
            usage(exc.message)
        except LifecycleError as exc:
            fail(exc.message)
    if issued.replaced is not None:
        err.print(f"revoked the previous token {name!r} (id {issued.replaced.id})")
    lasts = f", expires {iso_z(until)}" if until else ""
    err.print(
        f"created {role.value} token {name!r} (id {issued.token.id}{lasts}) in "
        f"{settings.sqlite_path() or 'the configured database'}; store it now, it is not "
        "shown again"
    )
    sys.stdout.write(issued.secret + "\n")


@tokens_app.command("list")
def tokens_list(
    active: Annotated[bool, typer.Option("--active", help="Only tokens not revoked.")] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The API tokens of this configuration's database: id, name, role, state, created,
    expires, last used (never a hash)."""
    from lifecycle.services.tokens import list_tokens, token_json

    settings = settings_from(config)
    with local_store(settings) as store:
        tokens = list_tokens(store, include_revoked=not active)
    now = utcnow()
    rows = [token_json(t, now) for t in tokens]
    if as_json:
        emit({"tokens": rows}, True)
        return
    if not rows:
        out.print("no tokens; create one with `lifecycle tokens create --role admin --name NAME`")
        return
    out.print(
        table(
            ["id", "name", "role", "state", "created", "expires", "last used"],
            [
                [
                    str(r["id"]),
                    r["name"],
                    r["role"],
                    styled_state(r["state"]),
                    r["created_at"],
                    r["expires_at"] or "never",
                    r["last_used_at"] or "never",
                ]
                for r in rows
            ],
            title=f"API tokens ({len(rows)})",
        )
    )


@tokens_app.command("revoke")
def tokens_revoke(
    token: Annotated[str, typer.Argument(help="The token's name (a live one) or its id.")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke a token at once; the service refuses it from the next request on."""
    from lifecycle.services.tokens import revoke_token, token_json

    settings = settings_from(config)
    with local_store(settings) as store:
        try:
            revoked = revoke_token(store, token, utcnow())
        except LifecycleError as exc:
            fail(exc.message)
    emit(
        token_json(revoked, utcnow()),
        as_json,
        f"revoked token {revoked.name!r} (id {revoked.id}, {revoked.role})",
    )
