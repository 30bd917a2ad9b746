"""``lifecycle playbook``: the role playbooks (local files), and joiner/mover plans and runs
through the running service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from lifecycle.cli.common import (
    DEFAULT_URL,
    SUCCEEDED,
    ConfigOpt,
    JsonOpt,
    TokenOpt,
    UrlOpt,
    api_call,
    client,
    emit,
    fail,
    out,
    settings_from,
    wait_for_run,
)
from lifecycle.exceptions import LifecycleError

playbook_app = typer.Typer(help="Role playbooks (joiner / mover).", no_args_is_help=True)


def library(config: Path | None) -> Any:
    from lifecycle.service import load_playbooks

    try:
        # The shipped playbooks need no configuration; a file may name another directory.
        return load_playbooks(settings_from(config, required=False))
    except LifecycleError as exc:
        fail(exc.message)


@playbook_app.command("list")
def playbook_list(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """The playbooks, their SHA-256 and the job codes mapped to them (local files)."""
    books = library(config)
    data = [
        {
            "name": b.name,
            "sha256": b.sha256,
            "systems": sorted(b.playbook.systems),
            "job_codes": sorted(k for k, v in books.job_codes.items() if v == b.name),
        }
        for b in sorted(books.playbooks.values(), key=lambda b: b.name)
    ]
    emit(
        data,
        as_json,
        "\n".join(
            f"{d['name']:<16} {d['sha256'][:12]}  systems: {', '.join(d['systems'])}"
            f"  job codes: {', '.join(d['job_codes']) or '-'}"
            for d in data
        )
        or "no playbooks",
    )


@playbook_app.command("show")
def playbook_show(name: str, config: ConfigOpt = None) -> None:
    """Print one playbook file and its SHA-256 (validated first)."""
    books = library(config)
    try:
        book = books.get(name)
    except LifecycleError as exc:
        fail(exc.message)
    out.print(f"# {book.path} sha256={book.sha256}", highlight=False)
    out.print(escape(book.path.read_text(encoding="utf-8")), highlight=False)


def diff_text(plan: dict[str, Any]) -> str:
    lines = [
        f"{plan['kind']} of {plan['worker_id']} to {plan['playbook']}"
        + (f" (from {plan['from']})" if plan["from"] else "")
        + f", playbook sha256 {plan['playbook_sha256'][:12]}"
    ]
    for s in plan["systems"]:
        if s["error"]:
            lines.append(f"  {s['system']}: cannot read: {s['error']}")
            continue
        parts = []
        if s["create"]:
            parts.append("create account")
        parts += [f"+{e}" for e in s["add"]] + [f"-{e}" for e in s["remove"]]
        lines.append(f"  {s['system']}: {', '.join(parts) or 'no change'}")
    return "\n".join(lines)


@playbook_app.command("plan")
def playbook_plan(
    role: Annotated[str, typer.Argument(help="Playbook name, e.g. scheduling-va.")],
    worker: Annotated[str, typer.Option(help="Worker id.")],
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show what applying ROLE to the worker would create, add (+) and remove (-), per
    system, without changing anything."""
    with client(url, token) as http:
        plan = api_call(http, "POST", f"/v1/playbooks/{role}/plan", json={"worker_id": worker})
    emit(plan, as_json, diff_text(plan))


@playbook_app.command("apply")
def playbook_apply(
    role: Annotated[str, typer.Argument(help="Playbook name, e.g. scheduling-va.")],
    worker: Annotated[str, typer.Option(help="Worker id.")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the evidence).")] = (
        "playbook applied by an admin"
    ),
    wait: Annotated[bool, typer.Option(help="Wait until the run is verified.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 300,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Apply ROLE to the worker (onboard or transfer run) and wait for its read-back."""
    body = {"worker_id": worker, "reason": reason}
    with client(url, token) as http:
        run = api_call(http, "POST", f"/v1/playbooks/{role}/apply", json=body)
        if wait:
            run = wait_for_run(http, run, timeout, live=False, as_json=as_json)
    emit(run, as_json, f"run {run['id']} ({run['kind']}): {run['status']}")
    if wait and run["status"] not in SUCCEEDED:
        raise typer.Exit(1)
