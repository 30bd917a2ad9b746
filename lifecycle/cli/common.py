"""What every command shares: consoles, options, the configuration, JSON or human output, the
HTTP client of a running service, and waiting for a run. Exit codes: 0 ok, 1 failure, 2 usage."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from lifecycle.exceptions import ConfigError
from lifecycle.settings import Settings, load_settings

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)
FINISHED = {"verified", "incomplete", "failed", "no_accounts", "cancelled"}
SUCCEEDED = {"verified", "no_accounts"}
DEFAULT_URL = "http://127.0.0.1:8080"

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", envvar="LIFECYCLE_CONFIG", help="Configuration TOML file."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
UrlOpt = Annotated[
    str, typer.Option("--url", envvar="LIFECYCLE_URL", help="Base URL of the running service.")
]
TokenOpt = Annotated[
    str | None,
    typer.Option("--token", envvar="LIFECYCLE_TOKEN", help="API bearer token (admin/auditor)."),
]


def fail(message: str) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(1)


def settings_from(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        fail(exc.message)


def emit(data: Any, as_json: bool, human: str | None = None) -> None:
    if as_json or human is None:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    else:
        out.print(human, highlight=False)


def client(url: str, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, headers=headers, timeout=30)


def api_call(http: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    try:
        response = http.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        fail(f"cannot reach the service at {http.base_url}: {type(exc).__name__}")
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        fail(f"{method} {path}: HTTP {response.status_code}: {detail}")
    return response.json() if "json" in response.headers.get("content-type", "") else response.text


def progress_table(run: dict[str, Any]) -> Table:
    """One row per system, one column per action (in the order the chain runs them)."""
    table = Table(title=f"run {run['id']} - {run['worker_id']} - {run['status']}")
    steps = run.get("steps", [])  # by system, in chain order
    actions = list(dict.fromkeys(s["action"] for s in steps)) or [
        "disable",
        "revoke_sessions",
        "remove_access",
        "verify",
    ]
    table.add_column("system")
    for action in actions:
        table.add_column(action)
    systems: dict[str, dict[str, str]] = {}
    for step in steps:
        mark = step["status"] + (f" ({step['attempts']})" if step["attempts"] > 1 else "")
        systems.setdefault(step["connector"], {})[step["action"]] = mark
    for system, marks in sorted(systems.items()):
        table.add_row(system, *(marks.get(a, "") for a in actions))
    return table


def wait_for_run(
    http: httpx.Client, run: dict[str, Any], timeout: float, *, live: bool, as_json: bool
) -> dict[str, Any]:
    """Poll the run until it finishes or ``timeout`` passes (showing its steps with ``live``)."""
    deadline = time.monotonic() + timeout
    if not live:
        while run["status"] not in FINISHED and time.monotonic() < deadline:
            time.sleep(0.2)
            run = api_call(http, "GET", f"/v1/runs/{run['id']}")
        return run
    with Live(progress_table(run), console=err, transient=as_json, refresh_per_second=8) as view:
        while True:
            run = api_call(http, "GET", f"/v1/runs/{run['id']}")
            view.update(progress_table(run))
            if run["status"] in FINISHED or time.monotonic() > deadline:
                return run
            time.sleep(0.2)
