"""The JSON of runs, steps and inbox rows (one writer each, for the API and the console), and
RFC 9457 problem documents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi.responses import JSONResponse

from lifecycle.domain import Decision, InboxEvent, RestorePlan, Run, Step, findings, iso_z
from lifecycle.web import problems

PROBLEM = problems.PROBLEM


def step_json(step: Step) -> dict[str, Any]:
    return {
        "connector": step.system,
        "action": step.action,
        "status": step.status.value,
        "attempts": step.attempts,
        "account_id": step.account_id,
        "started_at": iso_z(step.started_at),
        "finished_at": iso_z(step.finished_at),
        "next_attempt_at": iso_z(step.next_attempt_at),
        "error": step.error.message if step.error else None,
        "error_class": step.error.error_class if step.error else None,
        "error_code": step.error.code if step.error else None,
        "result": step.result.as_json() if step.result else None,
        "readback": dict(step.readback) if step.readback is not None else None,
    }


def decision_json(decision: Decision | None) -> dict[str, Any] | None:
    if decision is None:
        return None
    return {"by": decision.by, "at": iso_z(decision.at), "reason": decision.reason}


def reversal_json(run: Run) -> dict[str, Any]:
    """A restore's own fields: what it reverses and puts back, and its approval."""
    plan = run.plan
    if not isinstance(plan, RestorePlan):
        return {}
    return {
        "reverses": {"run_id": plan.reverses, "kind": plan.reverses_kind, "seq": plan.reverses_seq},
        "snapshot": {system: list(items) for system, items in sorted(plan.snapshot.items())},
        "approval": {
            "requested_by": run.actor,
            "approved": decision_json(run.approved),
            "rejected": decision_json(run.rejected),
        },
    }


def run_json(run: Run, steps: Sequence[Step] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": run.id,
        "kind": run.kind,
        "worker_id": run.worker_id,
        "status": run.status.value,
        "reason": run.reason,
        "actor": run.actor,
        "source": run.source,
        "source_event_id": run.source_event_id,
        "received_at": iso_z(run.received_at),
        "effective_at": iso_z(run.effective_at),
        "not_before": iso_z(run.not_before),
        "started_at": iso_z(run.started_at),
        "finished_at": iso_z(run.finished_at),
        "next_attempt_at": iso_z(run.next_attempt_at),
        "time_to_revoke_ms": run.time_to_revoke_ms,
        "evidence_seq": run.evidence_seq,
        "playbook": run.playbook_name,
        "playbook_sha256": run.playbook_sha256,
        "cancelled": decision_json(run.cancelled),
        "retry_of": run.retry_of,
        "retried_as": run.retried_as,
        **reversal_json(run),
    }
    if steps is not None:
        body["steps"] = [step_json(s) for s in steps]
        if isinstance(run.plan, RestorePlan):
            body["findings"] = [f.as_json() for f in findings(run.plan, steps)]
    return body


def inbox_json(row: InboxEvent) -> dict[str, Any]:
    return {
        "id": row.id,
        "source": row.source,
        "source_event_id": row.source_event_id,
        "type": row.type,
        "worker_id": row.worker_id,
        "outcome": row.outcome,
        "detail": row.detail,
        "run_id": row.run_id,
        "received_at": iso_z(row.received_at),
        "effective_at": iso_z(row.effective_at),
        "reason": row.reason,
        "payload_sha256": row.payload_sha256,
        "attempts": row.attempts,
        "next_attempt_at": iso_z(row.next_attempt_at) if row.outcome == "pending" else None,
        "escalated_at": iso_z(row.escalated_at),
    }


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    """A problem+json answer of the generic kind of ``status`` (``title`` is kept for callers
    of the earlier signature: the title is always the HTTP reason phrase)."""
    del title
    return problems.problem(problems.kind_for_status(status), detail, **extra)
