"""``lifecycle evidence``: the latest checkpoint, an auditor's bundle, and its offline check."""

from __future__ import annotations

import sys
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from lifecycle.cli.common import (
    DEFAULT_URL,
    ConfigOpt,
    JsonOpt,
    TokenOpt,
    UrlOpt,
    api_call,
    client,
    emit,
    fail,
    local_store,
    out,
    problem_text,
    settings_from,
    usage,
)
from lifecycle.domain import iso_z, utc, utcnow
from lifecycle.exceptions import LifecycleError
from lifecycle.settings import Settings, configuration_found

evidence_app = typer.Typer(help="The evidence log.", no_args_is_help=True)


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
    out_path: Annotated[Path, typer.Option("--out", help="The bundle to write (FILE.zip).")],
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
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write an auditor's evidence bundle (records, proofs, checkpoint, key, CSV, PDF): from
    the service's own database and key with a configuration, else through the running
    service with an auditor token."""
    if configuration_found(config):
        summary = _export_local(
            settings_from(config), out_path, since, until, worker, previous_checkpoint
        )
    elif token:
        summary = _export_remote(url, token, out_path, since, until, worker, previous_checkpoint)
    else:
        usage(
            "evidence export needs the service's configuration (--config FILE or "
            "LIFECYCLE_CONFIG: its database and evidence key), or an auditor token for the "
            "running service (--token or LIFECYCLE_TOKEN, with --url)"
        )
    emit(
        summary,
        as_json,
        f"wrote {out_path}: {summary['records']} records"
        + (
            f" ({summary['terminations']} terminations, {summary['sla_met']} within SLA)"
            if "terminations" in summary
            else ""
        )
        + f" of a log of {summary['tree_size']}",
    )


def _export_local(
    settings: Settings,
    out_path: Path,
    since: datetime | None,
    until: datetime | None,
    worker: str | None,
    previous_checkpoint: Path | None,
) -> dict[str, Any]:
    from lifecycle.evidence.checkpoint import load_signing_key
    from lifecycle.evidence.export import export_bundle

    try:
        # Never created here: `keys init` (or the demo's first `serve`) makes the key.
        key = load_signing_key(settings.service.evidence_key, settings.service.log_origin)
    except LifecycleError as exc:
        fail(exc.message)
    with local_store(settings) as store:
        try:
            summary = export_bundle(
                store,
                key,
                settings.service.log_origin,
                out_path,
                now=utcnow(),
                since=utc(since) if since else None,
                until=utc(until) if until else None,
                worker=worker,
                previous_tree_size=_previous_size(previous_checkpoint),
            )
        except LifecycleError as exc:
            fail(exc.message)
    return asdict(summary)


def _export_remote(
    url: str,
    token: str,
    out_path: Path,
    since: datetime | None,
    until: datetime | None,
    worker: str | None,
    previous_checkpoint: Path | None,
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "since": iso_z(utc(since)) if since else None,
        "until": iso_z(utc(until)) if until else None,
        "worker": worker,
        "previous_size": _previous_size(previous_checkpoint),
    }
    with client(url, token) as http:
        try:
            with http.stream(
                "GET",
                "/v1/evidence/bundle",
                params={k: v for k, v in params.items() if v is not None},
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    fail(f"GET /v1/evidence/bundle: {problem_text(response)}")
                with out_path.open("wb") as handle:
                    for chunk in response.iter_bytes():
                        handle.write(chunk)
        except httpx.HTTPError as exc:
            fail(f"cannot reach the service at {url}: {type(exc).__name__}")
    return {
        "path": str(out_path),
        "tree_size": int(response.headers.get("X-Evidence-Tree-Size", "0")),
        "records": int(response.headers.get("X-Evidence-Records", "0")),
    }


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
