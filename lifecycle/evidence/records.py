"""``dpe/1`` evidence records: built from a finished run, serialised as RFC 8785 canonical JSON.

No patient data and no secrets: systems, account ids, operations, times, hashes of vendor
responses (never the bodies), and what the read-back showed.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import rfc8785

from lifecycle.models import Run, RunStatus, Step, StepStatus, WorkerRow

SCHEMA = "dpe/1"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


ERROR_CAP = 300
"""Records are kept six years: a vendor's error text is cut short (it can quote data)."""


def _capped(text: str | None) -> str | None:
    if text is None or len(text) <= ERROR_CAP:
        return text
    return text[: ERROR_CAP - 1] + "\u2026"


def _action(step: Step) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(step.result_json) if step.result_json else {}
    readback: dict[str, Any] | None = json.loads(step.readback_json) if step.readback_json else None
    return {
        "system": step.connector,
        "account_id": step.account_id,
        "op": step.action,
        "requested_at": _iso(step.started_at),
        "completed_at": _iso(step.finished_at),
        "outcome": result.get("outcome", step.status)
        if step.status == StepStatus.DONE
        else step.status,
        "attempts": step.attempts,
        "error": _capped(step.error),
        "vendor_request_id": result.get("vendor_request_id"),
        "response_sha256": result.get("response_sha256"),
        "removed": list(result.get("removed", [])),
        "skipped": list(result.get("skipped", [])),
        "detail": dict(result.get("detail", {})),
        "readback": readback,
    }


def _policy(run: Run) -> dict[str, Any] | None:
    """Policy, inactivity and reconciliation runs name the policy version they enforced."""
    plan: dict[str, Any] = json.loads(run.plan_json) if run.plan_json else {}
    policy = plan.get("policy")
    return {"name": policy["name"], "version_sha256": policy["sha256"]} if policy else None


def _actions(run: Run, steps: list[Step]) -> list[dict[str, Any]]:
    actions = []
    for step in sorted(steps, key=lambda s: (s.connector, s.position)):
        action = _action(step)
        if run.kind in ("onboard", "transfer"):
            # A mover records what was added as well as what was removed (PS-5).
            result = json.loads(step.result_json) if step.result_json else {}
            action["added"] = list(result.get("added", []))
        actions.append(action)
    return actions


def build_record(
    *,
    seq: int,
    record_id: str,
    run: Run,
    steps: list[Step],
    worker: WorkerRow | None,
    status: RunStatus,
    time_to_revoke_ms: int | None,
    sla_seconds: int,
) -> dict[str, Any]:
    """The record for a finished run (``status`` is the run's final status)."""
    playbook: dict[str, Any] | None = (
        {"name": run.playbook_name, "version_sha256": run.playbook_sha256}
        if run.playbook_name
        else None
    )
    previous = json.loads(run.plan_json).get("from") if run.plan_json else None
    if playbook is not None and previous:
        # A mover's record names the role it moved from as well (its file's SHA-256 too).
        playbook["from"] = {"name": previous["name"], "version_sha256": previous["sha256"]}
    return {
        "schema": SCHEMA,
        "record_id": record_id,
        "seq": seq,
        "run_id": run.id,
        "kind": run.kind,
        "status": str(status),
        "subject": {
            "worker_id": run.worker_id,
            "engagement": worker.engagement if worker else None,
            "vendor": worker.vendor if worker else None,
        },
        "trigger": {
            "source": run.source,
            "event_id": run.source_event_id,
            "effective_at": _iso(run.effective_at),
            "received_at": _iso(run.received_at),
            "reason": run.reason,
            "payload_sha256": run.payload_sha256,
        },
        "playbook": playbook,
        "policy": _policy(run),
        "actions": _actions(run, steps),
        "computed": {
            "time_to_revoke_ms": time_to_revoke_ms,
            "sla_seconds": sla_seconds,
            "sla_met": (time_to_revoke_ms is not None and time_to_revoke_ms <= sla_seconds * 1000)
            if run.kind == "offboard"
            else None,  # joiners, movers and policy runs have no revocation SLA
        },
        "actor": run.actor,
    }


def canonical(record: dict[str, Any]) -> bytes:
    """RFC 8785 (JCS) bytes: the exact bytes that are hashed into the log."""
    return rfc8785.dumps(record)
