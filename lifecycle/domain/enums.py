"""The words of a run: its kind, its status, its steps' actions and statuses."""

from __future__ import annotations

from enum import StrEnum


class RunKind(StrEnum):
    """The built-in kinds (DESIGN.md "Runs"); ``engine.kinds`` says how each one runs."""

    OFFBOARD = "offboard"
    ONBOARD = "onboard"
    TRANSFER = "transfer"
    POLICY = "policy"
    REVERIFY = "reverify"
    DISABLE = "disable"
    SUSPEND = "suspend"
    RESTORE = "restore"


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    VERIFIED = "verified"
    INCOMPLETE = "incomplete"
    FAILED = "failed"
    NO_ACCOUNTS = "no_accounts"
    CANCELLED = "cancelled"
    """Cancelled by an admin before it started (or a rejected restore, or a re-verification
    suppressed by the restore of its termination): nothing was done."""
    AWAITING_APPROVAL = "awaiting_approval"
    """A restore waiting for a second admin's approval; not executed until approved."""

    @property
    def finished(self) -> bool:
        return self not in (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.AWAITING_APPROVAL)


class StepStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    NOT_APPLICABLE = "not_applicable"
    NO_ACCOUNT = "no_account"
    FAILED = "failed"

    @property
    def settled(self) -> bool:
        """Settled steps are never executed again (a resumed run skips them)."""
        return self is not StepStatus.PENDING


class StepAction(StrEnum):
    """What a step does in one system. The stored name is also the evidence record's ``op``;
    ``verify`` is the read-back of whatever the run's kind set out to achieve."""

    DISABLE = "disable"
    ENABLE = "enable"
    REVOKE_SESSIONS = "revoke_sessions"
    REMOVE_ACCESS = "remove_access"
    RESTORE_ACCESS = "restore_access"
    CREATE_ACCOUNT = "create_account"
    REMOVE_ENTITLEMENTS = "remove_entitlements"
    ADD_ENTITLEMENTS = "add_entitlements"
    APPLY_POLICY = "apply_policy"
    VERIFY = "verify"


class WorkerStatus(StrEnum):
    ACTIVE = "active"
    TERMINATED = "terminated"
    LEAVE = "leave"
    SUSPENDED = "suspended"
    """Accounts disabled and sessions revoked for an incident, access kept, until a restore
    (or a termination)."""
    ABSENT = "absent"
    """Not in the last complete roster import."""


class ErrorCode(StrEnum):
    """Why a step failed, as evidence records it (with the error's class, never its text)."""

    PERMANENT = "permanent"
    """The system refused the call."""
    UNSUPPORTED = "unsupported"
    EXHAUSTED = "exhausted"
    """Transient errors until the retries (and the retry horizon) ran out."""
    TIMEOUT = "timeout"
    READBACK_MISMATCH = "readback_mismatch"
    """The read-back never showed the intended state."""
    ACCOUNT_VANISHED = "account_vanished"
    """The worker's linked account is gone from the system."""
    CONNECTOR_MISSING = "connector_missing"
    NOT_ATTEMPTED = "not_attempted"
    """An earlier step of the same system failed and this one depends on it."""
    CONNECTOR_BUG = "connector_bug"
    """The connector raised something outside the connector error tree."""


class InboxOutcome(StrEnum):
    """What became of an HR event (one inbox row each)."""

    RUN = "run"
    """It started a run (``run_id``)."""
    IGNORED = "ignored"
    """Authentic, and it matters to nothing (``detail`` says why)."""
    UNMAPPED = "unmapped"
    """A termination-looking event not resolvable to a worker or a decision: alerted at once."""
    PENDING = "pending"
    """Awaiting a vendor look-up; retried from the store until it resolves or is escalated."""
    CONFLICT = "conflict"
    """Its event id was delivered before with another payload: refused with 409 and alerted."""
