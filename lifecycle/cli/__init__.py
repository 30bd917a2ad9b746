"""The ``lifecycle`` command line (Typer): one module per command group. Exit codes: 0 ok,
1 failure, 2 usage."""

from __future__ import annotations

import os
from importlib.metadata import version
from typing import Annotated

import typer

from lifecycle.cli import access, runs, serve
from lifecycle.cli.admin import db_app, keys_app, tokens_app
from lifecycle.cli.evidence import evidence_app
from lifecycle.cli.hr import hr_app
from lifecycle.cli.playbook import playbook_app
from lifecycle.cli.policy import policy_app, reconcile
from lifecycle.cli.workers import workers_app

app = typer.Typer(
    name="lifecycle",
    help="Identity lifecycle automation: revoke every account at once, with signed evidence.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version(show: bool) -> None:
    if show:
        typer.echo(f"lifecycle {version('lifecycle')}")
        raise typer.Exit()


@app.callback()
def _root(
    _: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Identity lifecycle automation: revoke every account at once, with signed evidence."""


app.command()(serve.serve)
app.command()(runs.offboard)
app.command()(access.suspend)
app.command()(access.restore)
app.command("reconcile")(reconcile)
for group, name in (
    (keys_app, "keys"),
    (tokens_app, "tokens"),
    (db_app, "db"),
    (hr_app, "hr"),
    (runs.runs_app, "runs"),
    (access.approvals_app, "approvals"),
    (evidence_app, "evidence"),
    (playbook_app, "playbook"),
    (policy_app, "policy"),
    (workers_app, "workers"),
):
    app.add_typer(group, name=name)


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()


if __name__ == "__main__":
    main()
