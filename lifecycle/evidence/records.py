"""``dpe/1`` evidence records: built from a finished run's domain values, serialised as RFC 8785
canonical JSON.

No patient data and no secrets: systems, account ids, operations, times, hashes of vendor
responses (never the bodies), what the read-back showed, and for a failed step the error's
class and code, never its text (a vendor's message can quote data; records are kept six years).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import rfc8785

from lifecycle.domain import RestorePlan, Run, RunStatus, Step, StepStatus, Worker, findings, iso_z

SCHEMA = "dpe/1"


@dataclass(frozen=True, slots=True)
class RecordOptions:
    """What the run's kind asks of its record (from its ``RunSpec``)."""

    sla: bool = False
    """A termination: ``computed.sla_met`` is decided (None for other kinds)."""
    added: bool = False
    """A joiner/mover: each action records what it added as well as what it removed."""
    reversal: bool = False
    """A restore: ``reverses`` (the seq of the record it undoes), ``approval`` {requested_by,
    approved_by} and ``findings`` (entitlements for review) are recorded."""


def _error(step: Step) -> dict[str, str | None] | None:
    if step.error is None or step.status is not StepStatus.FAILED:
        return None
    return {"class": step.error.error_class, "code": step.error.code}


def _action(step: Step, options: RecordOptions) -> dict[str, Any]:
    result = step.result
    action: dict[str, Any] = {
        "system": step.system,
        "account_id": step.account_id,
        "op": step.action,
        "requested_at": iso_z(step.started_at),
        "completed_at": iso_z(step.finished_at),
        "outcome": (result.outcome if result else step.status.value)
        if step.status is StepStatus.DONE
        else step.status.value,
        "attempts": step.attempts,
        "error": _error(step),
        "vendor_request_id": result.vendor_request_id if result else None,
        "response_sha256": result.response_sha256 if result else None,
        "removed": list(result.removed) if result else [],
        "skipped": list(result.skipped) if result else [],
        "detail": dict(result.detail) if result else {},
        "readback": dict(step.readback) if step.readback is not None else None,
    }
    if options.added:
        action["added"] = list(result.added) if result else []
    return action


def build_record(
    *,
    seq: int,
    record_id: str,
    run: Run,
    steps: Sequence[Step],
    worker: Worker | None,
    status: RunStatus,
    time_to_revoke_ms: int | None,
    sla_seconds: int,
    options: RecordOptions,
) -> dict[str, Any]:
    """The record for a finished run (``status`` is the run's final status)."""
    plan = run.plan
    playbook: dict[str, Any] | None = None
    if plan.playbook is not None:
        playbook = {"name": plan.playbook.name, "version_sha256": plan.playbook.sha256}
        if plan.previous_playbook is not None:
            # A mover's record names the role it moved from as well (its file's SHA-256 too).
            playbook["from"] = {
                "name": plan.previous_playbook.name,
                "version_sha256": plan.previous_playbook.sha256,
            }
    policy = (
        {"name": plan.policy.name, "version_sha256": plan.policy.sha256} if plan.policy else None
    )
    record: dict[str, Any] = {
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
            "effective_at": iso_z(run.effective_at),
            "received_at": iso_z(run.received_at),
            "reason": run.reason,
            "payload_sha256": run.payload_sha256,
        },
        "playbook": playbook,
        "policy": policy,
        "actions": [
            _action(step, options) for step in sorted(steps, key=lambda s: (s.system, s.position))
        ],
        "computed": {
            "time_to_revoke_ms": time_to_revoke_ms,
            "sla_seconds": sla_seconds,
            # Joiners, movers and policy runs have no revocation SLA.
            "sla_met": (time_to_revoke_ms is not None and time_to_revoke_ms <= sla_seconds * 1000)
            if options.sla
            else None,
        },
        "actor": run.actor,
    }
    if options.reversal:
        record["reverses"] = plan.reverses_seq if isinstance(plan, RestorePlan) else None
        record["approval"] = {
            "requested_by": run.actor,
            "approved_by": run.approved.by if run.approved else None,
        }
        record["findings"] = [f.as_json() for f in findings(plan, steps)]
    return record


_INT_LIMIT = 2**53 - 1
"""RFC 8785 numbers are IEEE 754 doubles: integers beyond this are not safe (``rfc8785`` refuses
them)."""


def _plain(value: Any) -> bool:
    """True when ``value`` holds only what ``json.dumps`` writes exactly as RFC 8785 does: dicts
    with ASCII keys (UTF-16 and code point order agree), lists and tuples, strings, safe
    integers, booleans and None; no floats (ECMAScript number formatting differs)."""
    stack = [value]
    pop, push = stack.pop, stack.append
    while stack:
        item = pop()
        kind = type(item)
        if kind is dict:
            for key, inner in item.items():
                if type(key) is not str or not key.isascii():
                    return False
                push(inner)
        elif kind is list or kind is tuple:
            stack.extend(item)
        elif kind is int:
            if not -_INT_LIMIT <= item <= _INT_LIMIT:
                return False
        elif not (item is None or kind is bool or isinstance(item, str)):
            return False
    return True


def canonical(record: dict[str, Any]) -> bytes:
    """RFC 8785 (JCS) bytes: the exact bytes that are hashed into the log.

    A record of plain values (``_plain``: every record the engine builds) is written by the
    standard library's C encoder, whose output for such values is byte for byte RFC 8785 (the
    verifier relies on the same equivalence, ``verify._parse_canonical``); the ``rfc8785``
    package, pure Python and about twenty times slower, writes anything else.
    """
    if _plain(record):
        try:
            text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            return text.encode()
        except UnicodeEncodeError:
            pass  # a lone surrogate: the package refuses it with its own error
    return rfc8785.dumps(record)


def canonical_with_seq(record: dict[str, Any]) -> Callable[[int], bytes]:
    """``canonical(record)`` for any ``seq``, the record's other fields canonicalised now.

    The log assigns a record's seq in the transaction that appends it, which holds the
    database's write lock: only splicing the number in is left for then. Top-level keys are
    ASCII (``build_record``), so the fields before and after ``"seq"`` in RFC 8785 order are
    those that sort before and after it.
    """
    fields = {key: value for key, value in record.items() if key != "seq"}
    before = {key: value for key, value in fields.items() if key < "seq"}
    after = {key: value for key, value in fields.items() if key > "seq"}
    if not all(isinstance(key, str) and key.isascii() for key in fields):
        return lambda seq: canonical({**fields, "seq": seq})
    head = canonical(before)[:-1] + b"," if before else b"{"
    tail = b"," + canonical(after)[1:] if after else b"}"

    def body(seq: int) -> bytes:
        if type(seq) is not int or not 0 <= seq <= _INT_LIMIT:
            return canonical({**fields, "seq": seq})
        return b"".join((head, b'"seq":', str(seq).encode(), tail))

    return body
