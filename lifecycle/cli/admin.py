"""``lifecycle db``, ``keys`` and ``tokens``: the database schema, the evidence signing key and
API tokens, on the service's own configuration (no running service needed)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from lifecycle.auth import Role, new_token, token_hash
from lifecycle.cli.common import ConfigOpt, err, fail, out, settings_from
from lifecycle.domain import utcnow
from lifecycle.evidence.checkpoint import init_key
from lifecycle.exceptions import LifecycleError

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
        store = open_store(settings)
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
    name: Annotated[str, typer.Option(help="Who or what holds the token (unique).")],
    config: ConfigOpt = None,
) -> None:
    """Create an API token; it is printed once, alone on the last line, and never again."""
    from lifecycle.service import open_store

    settings = settings_from(config)
    store = open_store(settings)
    token = new_token()
    try:
        store.add_token(name, role.value, token_hash(token), utcnow())
    except LifecycleError as exc:
        fail(exc.message)
    finally:
        store.dispose()
    err.print(f"created {role.value} token {name!r}; store it now, it is not shown again")
    sys.stdout.write(token + "\n")
