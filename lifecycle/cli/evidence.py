"""``lifecycle evidence``: the latest checkpoint, an auditor's bundle, and its offline check."""

from __future__ import annotations

import sys
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from lifecycle.cli.common import (
    DEFAULT_URL,
    ConfigOpt,
    JsonOpt,
    UrlOpt,
    api_call,
    client,
    emit,
    fail,
    out,
    settings_from,
)
from lifecycle.domain import utc, utcnow
from lifecycle.exceptions import LifecycleError

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
    as_json: JsonOpt = False,
) -> None:
    """Write an auditor's evidence bundle (records, proofs, checkpoint, key, CSV, PDF)."""
    from lifecycle.evidence.export import export_bundle
    from lifecycle.service import load_key, open_store

    settings = settings_from(config)
    key = load_key(settings)
    if key is None:
        fail(f"cannot load the evidence key {settings.service.evidence_key}")
    store = open_store(settings)
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
    finally:
        store.dispose()
    emit(
        asdict(summary),
        as_json,
        f"wrote {out_path}: {summary.records} records ({summary.terminations} terminations, "
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
