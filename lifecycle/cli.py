"""The ``lifecycle`` command line (Typer). Exit codes: 0 ok, 1 failure, 2 usage."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from connectors.base import utcnow
from lifecycle.auth import Role, new_token, token_hash
from lifecycle.evidence.checkpoint import init_key
from lifecycle.exceptions import ConfigError, LifecycleError
from lifecycle.logs import LogFormat
from lifecycle.logs import configure as configure_logging
from lifecycle.secrets import resolve_secret
from lifecycle.settings import Settings, load_settings

app = typer.Typer(
    name="lifecycle",
    help="Identity lifecycle automation: revoke every account at once, with signed evidence.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="The evidence signing key.", no_args_is_help=True)
tokens_app = typer.Typer(help="API bearer tokens.", no_args_is_help=True)
db_app = typer.Typer(help="The database.", no_args_is_help=True)
hr_app = typer.Typer(help="HR intake helpers.", no_args_is_help=True)
runs_app = typer.Typer(help="Runs (terminations, joiners, movers).", no_args_is_help=True)
evidence_app = typer.Typer(help="The evidence log.", no_args_is_help=True)
for sub, name in (
    (keys_app, "keys"),
    (tokens_app, "tokens"),
    (db_app, "db"),
    (hr_app, "hr"),
    (runs_app, "runs"),
    (evidence_app, "evidence"),
):
    app.add_typer(sub, name=name)

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)
FINISHED = {"verified", "incomplete", "failed", "no_accounts"}

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
DEFAULT_URL = "http://127.0.0.1:8080"


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


# ---------------------------------------------------------------------- serve


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str, typer.Option(envvar="LIFECYCLE_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="LIFECYCLE_PORT")] = 8080,
    log_level: Annotated[str, typer.Option(envvar="LIFECYCLE_LOG_LEVEL")] = "info",
    log_format: Annotated[
        LogFormat,
        typer.Option(
            envvar="LIFECYCLE_LOG_FORMAT",
            help="text, or json: one JSON object per line (run, worker, system, action, "
            "attempt and error class as fields).",
        ),
    ] = LogFormat.TEXT,
) -> None:
    """Run the API, the executor and the checkpoint signer."""
    import uvicorn

    from lifecycle.api import create_app
    from lifecycle.service import Service

    configure_logging(log_level, log_format)
    settings = settings_from(config)
    try:
        service = Service.build(settings)
    except LifecycleError as exc:
        fail(exc.message)
    # log_config=None: uvicorn's own lines go through the handler above, in the same format.
    uvicorn.run(
        create_app(service), host=host, port=port, log_level=log_level.lower(), log_config=None
    )


# ---------------------------------------------------------------------- db, keys, tokens


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
    err.print(f"created {role.value} token {name!r}; store it now, it is not shown again")
    sys.stdout.write(token + "\n")


# ---------------------------------------------------------------------- offboard


def _progress_table(run: dict[str, Any]) -> Table:
    table = Table(title=f"run {run['id']} - {run['worker_id']} - {run['status']}")
    for column in ("system", "disable", "revoke_sessions", "remove_access", "verify"):
        table.add_column(column)
    systems: dict[str, dict[str, str]] = {}
    for step in run.get("steps", []):
        mark = step["status"] + (f" ({step['attempts']})" if step["attempts"] > 1 else "")
        systems.setdefault(step["connector"], {})[step["action"]] = mark
    for system, actions in sorted(systems.items()):
        table.add_row(
            system,
            *(
                actions.get(a, "")
                for a in ("disable", "revoke_sessions", "remove_access", "verify")
            ),
        )
    return table


@app.command()
def offboard(
    worker: Annotated[str, typer.Argument(help="Worker id, e.g. W0042.")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the evidence).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would happen.")] = False,
    wait: Annotated[bool, typer.Option(help="Wait for verification, showing progress.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for verification.")] = 300,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Terminate WORKER now in every connected system, and wait until each is verified off."""
    with client(url, token) as http:
        body = {"worker_id": worker, "reason": reason, "dry_run": dry_run}
        run = api_call(http, "POST", "/v1/offboard", json=body)
        if dry_run:
            emit(
                run,
                as_json,
                "\n".join(
                    f"{s['system']}: "
                    + (
                        f"account {s['account_id']} ({s['login']}), "
                        f"enabled={s['enabled']}, would {', '.join(s['actions'])}"
                        if s["account_id"]
                        else (s["error"] or "no account")
                    )
                    for s in run["systems"]
                ),
            )
            return
        if not wait:
            emit(run, as_json, f"run {run['id']} accepted")
            return
        deadline = time.monotonic() + timeout
        with Live(
            _progress_table(run), console=err, transient=as_json, refresh_per_second=8
        ) as live:
            while True:
                run = api_call(http, "GET", f"/v1/runs/{run['id']}")
                live.update(_progress_table(run))
                if run["status"] in FINISHED or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
    emit(
        run,
        as_json,
        f"run {run['id']}: {run['status']}"
        + (f" in {run['time_to_revoke_ms']} ms" if run["time_to_revoke_ms"] is not None else ""),
    )
    if run["status"] not in ("verified", "no_accounts"):
        raise typer.Exit(1)


# ---------------------------------------------------------------------- runs, evidence


@runs_app.command("list")
def runs_list(
    status: str | None = None,
    worker: str | None = None,
    limit: int = 20,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List recent runs (admin or auditor token)."""
    params = {k: v for k, v in {"status": status, "worker": worker, "limit": limit}.items() if v}
    with client(url, token) as http:
        data = api_call(http, "GET", "/v1/runs", params=params)
    emit(
        data,
        as_json,
        "\n".join(
            f"{r['id']}  {r['kind']:<9} {r['worker_id']:<8} {r['status']:<12} "
            f"{r['time_to_revoke_ms'] if r['time_to_revoke_ms'] is not None else '-':>7} ms  "
            f"{r['received_at']}"
            for r in data["runs"]
        )
        or "no runs",
    )


@runs_app.command("show")
def runs_show(
    run_id: str, url: UrlOpt = DEFAULT_URL, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """One run with its steps and read-backs."""
    with client(url, token) as http:
        run = api_call(http, "GET", f"/v1/runs/{run_id}")
    if as_json:
        emit(run, True)
        return
    out.print(_progress_table(run))
    out.print(f"time to revoke: {run['time_to_revoke_ms']} ms; evidence seq: {run['evidence_seq']}")


@evidence_app.command("checkpoint")
def evidence_checkpoint(url: UrlOpt = DEFAULT_URL) -> None:
    """Print the service's latest signed checkpoint."""
    with client(url, None) as http:
        sys.stdout.write(api_call(http, "GET", "/v1/evidence/checkpoint"))


def _previous_size(previous: Path | None) -> int | None:
    from lifecycle.evidence.checkpoint import parse_checkpoint_text

    if previous is None:
        return None
    text = previous.read_text(encoding="utf-8")
    return parse_checkpoint_text(text.split("\n\n", 1)[0] + "\n").tree_size


@evidence_app.command("export")
def evidence_export(
    out: Annotated[Path, typer.Option("--out", help="The bundle to write (FILE.zip).")],
    since: Annotated[
        datetime | None, typer.Option(help="Records appended at or after (UTC).")
    ] = None,
    until: Annotated[datetime | None, typer.Option(help="Records appended before (UTC).")] = None,
    worker: Annotated[str | None, typer.Option(help="Only this worker's records.")] = None,
    previous_checkpoint: Annotated[
        Path | None,
        typer.Option(help="A checkpoint the auditor kept: include a consistency proof from it."),
    ] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write an auditor's evidence bundle (records, proofs, checkpoint, key, CSV, PDF)."""
    from dataclasses import asdict

    from lifecycle.evidence.export import export_bundle
    from lifecycle.service import load_key, open_store

    settings = settings_from(config)
    key = load_key(settings)
    if key is None:
        fail(f"cannot load the evidence key {settings.service.evidence_key}")
    store = open_store(settings)
    utc = [v if v is None or v.tzinfo else v.replace(tzinfo=UTC) for v in (since, until)]
    try:
        summary = export_bundle(
            store,
            key,
            settings.service.log_origin,
            out,
            now=utcnow(),
            since=utc[0],
            until=utc[1],
            worker=worker,
            previous_tree_size=_previous_size(previous_checkpoint),
        )
    except LifecycleError as exc:
        fail(exc.message)
    finally:
        store.dispose()
    emit(
        asdict(summary),
        as_json,
        f"wrote {out}: {summary.records} records ({summary.terminations} terminations, "
        f"{summary.sla_met} within SLA) of a log of {summary.tree_size}",
    )


@evidence_app.command("verify")
def evidence_verify(
    bundle: Annotated[Path, typer.Argument(help="The bundle (FILE.zip).")],
    key: Annotated[
        Path,
        typer.Option(
            "--key",
            help="The log's verifier key (.pub), obtained "
            "out of band; the bundle's copy is not "
            "trusted.",
        ),
    ],
    previous_checkpoint: Annotated[
        Path | None,
        typer.Option(
            help="A checkpoint kept from an earlier audit: prove the log only grew since."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify a bundle offline: every hash, signature, inclusion proof and the sequence."""
    from lifecycle.evidence.verify import verify_bundle

    try:
        report = verify_bundle(
            bundle,
            key.read_text(encoding="utf-8").strip(),
            previous_checkpoint.read_text(encoding="utf-8") if previous_checkpoint else None,
        )
    except OSError as exc:
        fail(f"cannot read {exc.filename}: {exc.strerror}")
    except LifecycleError as exc:
        fail(f"verification FAILED: {exc.message}")
    if as_json:
        emit(report.as_dict(), True)
        return
    out.print(
        f"OK: {report.records} records verified against checkpoint of {report.origin} "
        f"at tree size {report.tree_size}",
        highlight=False,
    )
    for check in report.checks:
        out.print(f"  - {check}", highlight=False)


# ---------------------------------------------------------------------- hr


@hr_app.command("send-test-event")
def hr_send_test_event(
    worker: Annotated[str, typer.Option(help="Worker id.")] = "W0042",
    event_type: Annotated[str, typer.Option("--type", help="worker.terminated|hired|...")] = (
        "worker.terminated"
    ),
    source: Annotated[
        str | None,
        typer.Option(help="HR source name (default: the first standardwebhooks source)."),
    ] = None,
    effective_at: Annotated[
        datetime | None, typer.Option(help="Future-dated effect (UTC).")
    ] = None,
    event_id: Annotated[str | None, typer.Option(help="webhook-id (re-use to test dedup).")] = None,
    reason: str = "contract_end",
    config: ConfigOpt = None,
    url: UrlOpt = DEFAULT_URL,
    as_json: JsonOpt = False,
) -> None:
    """Sign a sample HR event with the configured secret and POST it to the service."""
    from standardwebhooks.webhooks import Webhook

    settings = settings_from(config)
    sources = {n: s for n, s in settings.hr.sources.items() if s.kind == "standardwebhooks"}
    name = source or next(iter(sources), None)
    if name is None or name not in sources:
        fail("no standardwebhooks HR source is configured (see [hr.sources.*])")
    try:
        secret = resolve_secret(
            sources[name].secret,
            allow_inline=settings.service.demo,
            what=f"[hr.sources.{name}].secret",
        )
    except LifecycleError as exc:
        fail(exc.message)
    now = datetime.now(UTC)
    data: dict[str, Any] = {"worker_id": worker, "reason": reason}
    if effective_at is not None:
        moment = effective_at if effective_at.tzinfo else effective_at.replace(tzinfo=UTC)
        data["effective_at"] = moment.isoformat()
    body = json.dumps({"type": event_type, "timestamp": now.isoformat(), "data": data})
    msg_id = event_id or f"msg_{uuid.uuid4().hex}"
    signature = Webhook(secret.get_secret_value()).sign(msg_id, now, body)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }
    with client(url, None) as http:
        answer = api_call(http, "POST", f"/v1/hr/{name}/events", content=body, headers=headers)
    emit(
        answer,
        as_json,
        f"accepted event {answer['event_id']} -> run {answer['run_id']}"
        + (f" ({answer['outcome']}: {answer['detail']})" if answer.get("detail") else "")
        + (" (duplicate delivery)" if answer["duplicate"] else ""),
    )


# ---------------------------------------------------------------------- playbooks, policy, roster

from lifecycle import cli_hr, cli_roles  # noqa: E402 - registers its commands on the apps above

cli_roles.register(app, hr_app)
cli_hr.register(hr_app)


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()


if __name__ == "__main__":
    main()
