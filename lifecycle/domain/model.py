"""Frozen value objects that carry runs, steps, workers and results between the layers.

Rows of the database become these at the store's boundary (``store/sql/mapping.py``) and never
travel further; the engine and services make new values (``dataclasses.replace``) instead of
changing old ones, and hand them back to the store to persist.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from connectors import base
from lifecycle.domain.enums import InboxOutcome, RunStatus, StepStatus, WorkerStatus
from lifecycle.domain.plans import Plan
from lifecycle.domain.timestamps import iso_z


@dataclass(frozen=True, slots=True)
class Worker:
    """A member of the workforce as the roster knows them."""

    worker_id: str
    updated_at: datetime
    name: str | None = None
    email: str | None = None
    upn: str | None = None
    job_code: str | None = None
    engagement: str | None = None
    vendor: str | None = None
    status: str = WorkerStatus.ACTIVE

    def identity(self) -> base.Worker:
        """What a connector needs to find the worker's account."""
        return base.Worker(
            worker_id=self.worker_id,
            email=self.email,
            name=self.name,
            upn=self.upn,
            engagement=self.engagement,
            vendor=self.vendor,
            job_code=self.job_code,
        )


def identity_of(worker: Worker | None, worker_id: str) -> base.Worker:
    """The connector-facing worker, also for a worker the roster does not know (sweeps)."""
    return worker.identity() if worker is not None else base.Worker(worker_id=worker_id)


@dataclass(frozen=True, slots=True)
class Link:
    """A worker's known account in one system (found during a run, or created by a joiner)."""

    worker_id: str
    system: str
    account_id: str
    login: str | None
    linked_at: datetime


@dataclass(frozen=True, slots=True)
class Lease:
    """Who executes a run, and the fencing token they claimed it with: every progress write
    carries it, and the store refuses writes whose epoch is no longer the run's."""

    run_id: str
    owner: str
    epoch: int


@dataclass(frozen=True, slots=True)
class StepError:
    """Why a step failed: ``error_class`` and ``code`` go into evidence; ``message`` (which may
    quote a vendor) is for operators only, in the API and the console."""

    message: str
    error_class: str | None = None
    code: str | None = None


@dataclass(frozen=True, slots=True)
class StepResult:
    """What a connector reported for a change (``ActionResult``), as stored with the step."""

    action: str
    account_id: str
    started_at: str
    finished_at: str
    outcome: str
    vendor_request_id: str | None = None
    response_sha256: str | None = None
    removed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    """``"item: reason"`` for what the system would not change."""
    detail: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, result: base.ActionResult) -> StepResult:
        return cls(
            action=result.action,
            account_id=result.account_id,
            started_at=result.started_at.isoformat(),
            finished_at=result.finished_at.isoformat(),
            outcome=result.outcome.value,
            vendor_request_id=result.vendor_request_id,
            response_sha256=result.response_sha256,
            removed=tuple(result.removed),
            added=tuple(result.added),
            skipped=tuple(f"{s.item}: {s.reason}" for s in result.skipped),
            detail=dict(result.detail),
        )

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("removed", "added", "skipped"):
            data[key] = list(data[key])
        data["detail"] = dict(self.detail)
        return data

    def dumps(self) -> str:
        return json.dumps(self.as_json(), sort_keys=True)

    @classmethod
    def loads(cls, text: str) -> StepResult:
        data: dict[str, Any] = json.loads(text)
        return cls(
            action=data.get("action", ""),
            account_id=data.get("account_id", ""),
            started_at=data.get("started_at", ""),
            finished_at=data.get("finished_at", ""),
            outcome=data.get("outcome", ""),
            vendor_request_id=data.get("vendor_request_id"),
            response_sha256=data.get("response_sha256"),
            removed=tuple(data.get("removed", ())),
            added=tuple(data.get("added", ())),
            skipped=tuple(data.get("skipped", ())),
            detail=dict(data.get("detail", {})),
        )


def readback_of(state: base.AccountState) -> dict[str, Any]:
    """What evidence keeps of an account read-back."""
    return {
        "enabled": state.enabled,
        "locked": state.locked,
        "sessions_valid_from": iso_z(state.sessions_valid_from),
        "entitlements_left": sorted(state.entitlements),
        "read_at": iso_z(state.read_at),
    }


@dataclass(frozen=True, slots=True)
class Step:
    """One (system, action) of a run."""

    id: int
    run_id: str
    system: str
    action: str
    position: int
    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    account_id: str | None = None
    account_login: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: StepError | None = None
    result: StepResult | None = None
    readback: Mapping[str, Any] | None = None
    next_attempt_at: datetime | None = None
    """Set while the step waits, durably, for its next attempt (the system was unreachable)."""
    first_failed_at: datetime | None = None
    """When the step first failed transiently; the retry horizon counts from the run's start."""


@dataclass(frozen=True, slots=True)
class NewStep:
    """A step to create with its run."""

    system: str
    action: str
    position: int
    account_id: str | None = None
    account_login: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """Something an admin did to a run by hand: who, when, and why."""

    by: str
    at: datetime
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Run:
    id: str
    kind: str
    worker_id: str
    status: RunStatus
    plan: Plan
    actor: str
    received_at: datetime
    not_before: datetime
    reason: str | None = None
    source: str | None = None
    source_event_id: str | None = None
    payload_sha256: str | None = None
    effective_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    time_to_revoke_ms: int | None = None
    evidence_seq: int | None = None
    lease: Lease | None = None
    """Set while a replica holds the run (also after its lease lapsed, until someone claims)."""
    sla_alerted_at: datetime | None = None
    approved: Decision | None = None
    """A restore's approval by a second admin (the requester is ``actor``)."""
    rejected: Decision | None = None
    """A restore's rejection (the run is then ``cancelled``)."""
    cancelled: Decision | None = None
    retry_of: str | None = None
    """The incomplete or failed run this run retries."""
    retried_as: str | None = None
    """The run that retries this one."""

    @property
    def due_at(self) -> datetime:
        """When the run was meant to start: receipt, or its effective date if later. Time to
        revoke and the retry horizon count from here."""
        if self.effective_at is not None and self.effective_at > self.received_at:
            return self.effective_at
        return self.received_at

    @property
    def playbook_name(self) -> str | None:
        return self.plan.playbook.name if self.plan.playbook else None

    @property
    def playbook_sha256(self) -> str | None:
        return self.plan.playbook.sha256 if self.plan.playbook else None

    @property
    def next_attempt_at(self) -> datetime | None:
        """A running run with no live lease is waiting for its next attempt (not before)."""
        return self.not_before if self.status is RunStatus.RUNNING and self.lease is None else None


@dataclass(frozen=True, slots=True)
class NewRun:
    """A run to create, with its steps (services decide; the store persists)."""

    kind: str
    worker_id: str
    plan: Plan
    steps: tuple[NewStep, ...]
    actor: str
    source: str
    source_event_id: str
    payload_sha256: str
    reason: str | None = None
    effective_at: datetime | None = None
    lease_owner: str | None = None
    """Created already claimed by this owner (scheduled jobs execute their runs at once)."""
    lease_until: datetime | None = None
    awaiting_approval: bool = False
    """Created ``awaiting_approval``: it runs once a second admin approves it."""
    approved: Decision | None = None
    """Approved already (a retry of an approved restore keeps its approval)."""
    retry_of: str | None = None


@dataclass(frozen=True, slots=True)
class RunDetail:
    run: Run
    steps: tuple[Step, ...]
    worker: Worker | None
    links: Mapping[str, Link] = field(default_factory=dict)
    """The worker's known accounts, by system."""


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """An authenticated HR event to record in the inbox (stored before it is acknowledged).

    ``outcome`` and ``detail`` are set for rows that start no run (ignored, unmapped, pending);
    an event handed to ``accept_hr_event`` gets its outcome from the decision."""

    source: str
    source_event_id: str
    type: str
    worker_id: str
    payload_sha256: str
    effective_at: datetime | None = None
    reason: str | None = None
    outcome: InboxOutcome | None = None
    detail: str | None = None
    pending_json: str | None = None
    """A pending row's look-up request (vendor ids and field names; no secrets)."""
    next_attempt_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class InboxEvent:
    """A stored inbox row: an HR event and what became of it. Its fields repeat
    ``InboxEntry``'s (what is to be stored) and add what storing it gave: id, receipt time,
    run, attempts."""

    id: str
    source: str
    source_event_id: str
    type: str
    worker_id: str
    received_at: datetime
    payload_sha256: str
    effective_at: datetime | None = None
    reason: str | None = None
    run_id: str | None = None
    outcome: str | None = None
    """An ``InboxOutcome``; None only on rows stored before outcomes were kept."""
    detail: str | None = None
    pending_json: str | None = None
    attempts: int | None = None
    next_attempt_at: datetime | None = None
    escalated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RosterEntry:
    """One row of a roster import; ``None`` means the file does not say (keep what is known)."""

    worker_id: str
    name: str | None = None
    email: str | None = None
    job_code: str | None = None
    engagement: str | None = None
    vendor: str | None = None
    status: str | None = None


@dataclass(frozen=True, slots=True)
class Intake:
    """What an accepted HR event became (its inbox row)."""

    event_id: str
    run_id: str | None
    duplicate: bool
    outcome: InboxOutcome = InboxOutcome.RUN
    detail: str | None = None
    first_event_id: str | None = None
    """For a conflict: the inbox row of the first delivery of this event id."""


@dataclass(frozen=True, slots=True)
class IntakeDecision:
    """What services decided for an HR event: the roster row to store and the run to start
    (or, with none, why it starts nothing)."""

    worker: Worker
    run: NewRun | None = None
    ignored: str | None = None


@dataclass(frozen=True, slots=True)
class ApiToken:
    name: str
    role: str
    token_sha256: str
    created_at: datetime
    revoked_at: datetime | None = None
    id: int | None = None
    expires_at: datetime | None = None
    """None: the token does not expire."""
    last_used_at: datetime | None = None
    """When the token last authenticated a request (None: never)."""

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


@dataclass(frozen=True, slots=True)
class Checkpoint:
    tree_size: int
    root_hash: bytes
    note: str
    signed_at: datetime


@dataclass(frozen=True, slots=True)
class RosterCounts:
    added: int
    updated: int
    absent: int


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """A signed-in console user: the cookie holds a random session id, the store only its
    SHA-256 and the SHA-256 of the API token it was exchanged for (looked up on every request,
    so a revoked or expired token ends the session)."""

    id_sha256: str
    token_sha256: str
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime
