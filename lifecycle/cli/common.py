"""What every command shares: consoles, options, the configuration, JSON or human output, the
HTTP client of a running service, and waiting for a run. Exit codes: 0 ok, 1 failure, 2 usage."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from lifecycle.exceptions import ConfigError, DatabaseNotReadyError, LifecycleError
from lifecycle.settings import Settings, configuration_found, load_settings
from lifecycle.store.ports import Store

# Colour only on a terminal, never with NO_COLOR (rich honours both); every state is also a
# word. Off a terminal lines are not cut at 80 columns: scripts and grep see whole rows.
err = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 1000)
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 1000)
STATE_STYLES = {
    "verified": "green",
    "active": "green",
    "done": "green",
    "no_accounts": "cyan",
    "running": "yellow",
    "pending": "yellow",
    "awaiting_approval": "yellow",
    "expired": "yellow",
    "incomplete": "red",
    "failed": "red",
    "revoked": "dim",
    "cancelled": "dim",
    "not_applicable": "dim",
    "no_account": "dim",
}
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


def fail(message: str, *, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def usage(message: str) -> NoReturn:
    """A usage error (exit 2): something to give the command, not a failure of the work."""
    fail(message, code=2)


NO_CONFIGURATION = (
    "no configuration: give --config FILE or set LIFECYCLE_CONFIG "
    "(config/demo.toml is the demo; docs/configuration.md)"
)


def settings_from(config: Path | None, *, required: bool = True) -> Settings:
    """The configuration; without one (no ``--config``, no ``LIFECYCLE_CONFIG``) a command that
    needs it exits 2 instead of guessing (a database in the working directory, say)."""
    if required and not configuration_found(config):
        usage(NO_CONFIGURATION)
    try:
        return load_settings(config)
    except ConfigError as exc:
        fail(exc.message)


@contextmanager
def local_store(settings: Settings) -> Iterator[Store]:
    """The configured database, which must exist at the newest schema (exit 2 with a hint to
    run ``lifecycle db upgrade`` otherwise): only ``serve`` and ``db upgrade`` create one."""
    from lifecycle.service import open_store

    try:
        store = open_store(settings)
    except DatabaseNotReadyError as exc:
        usage(exc.message)
    except LifecycleError as exc:
        fail(exc.message)
    try:
        yield store
    finally:
        store.dispose()


def emit(data: Any, as_json: bool, human: str | None = None) -> None:
    if as_json or human is None:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    else:
        out.print(human, highlight=False)


def client(url: str, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, headers=headers, timeout=30)


def problem_text(response: httpx.Response) -> str:
    """An error answer in one line: status, reason and the problem's detail."""
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    text = f"HTTP {response.status_code} {response.reason_phrase}: {detail or response.text}"
    if response.status_code == 401 and "Authorization" not in response.request.headers:
        text += " (no token given: --token or LIFECYCLE_TOKEN)"
    return text


def api_call(http: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    try:
        response = http.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        fail(f"cannot reach the service at {http.base_url}: {type(exc).__name__}")
    if response.status_code >= 400:
        fail(f"{method} {path}: {problem_text(response)}")
    return response.json() if "json" in response.headers.get("content-type", "") else response.text


def styled_state(state: str) -> str:
    """A status word, coloured where colour is shown (the word is always there)."""
    style = STATE_STYLES.get(state)
    return f"[{style}]{escape(state)}[/{style}]" if style else escape(state)


def table(columns: list[str], rows: list[list[str]], *, title: str | None = None) -> Table:
    """A table with a header row; cells are rich markup (escape data with ``cell``)."""
    grid = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        grid.add_column(column)
    for row in rows:
        grid.add_row(*row)
    return grid


def cell(value: Any, empty: str = "-") -> str:
    """A value as table text (escaped; ``empty`` for None)."""
    return empty if value is None or value == "" else escape(str(value))


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
