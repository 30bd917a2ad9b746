"""What the console's pages show, shaped from domain values without I/O: a run's per-system
timeline, the termination times per system against the SLA, how a status is told (a word and a
symbol, never colour alone)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from lifecycle.domain import RunDetail, Step, StepAction, StepStatus

DASH = "\N{EN DASH}"

# status -> (symbol, word). The symbol differs by shape, so a status reads without colour.
STATUS: dict[str, tuple[str, str]] = {
    "verified": ("✓", "verified"),
    "done": ("✓", "done"),
    "running": ("↻", "running"),
    "pending": ("○", "pending"),
    "incomplete": ("!", "incomplete"),
    "failed": ("✕", "failed"),
    "no_accounts": (DASH, "no accounts"),
    "no_account": (DASH, "no account"),
    "not_applicable": (DASH, "not applicable"),
    "cancelled": ("⊘", "cancelled"),
    "awaiting_approval": ("‖", "awaiting approval"),
    "run": ("→", "run started"),
    "ignored": (DASH, "ignored"),
    "unmapped": ("?", "unmapped"),
    "conflict": ("!", "conflict"),
    "active": ("●", "active"),
    "terminated": ("✕", "terminated"),
    "leave": ("‖", "on leave"),
    "suspended": ("‖", "suspended"),
    "absent": ("?", "absent"),
    "enabled": ("●", "enabled"),
    "disabled": ("○", "disabled"),
    "compliant": ("✓", "compliant"),
    "not_compliant": ("✕", "not compliant"),
    "unknown": ("?", "unknown"),
    "within_sla": ("●", "within SLA"),
    "over_sla": ("▲", "over SLA"),
    "not_granted": ("!", "not in the playbook"),
    "token_active": ("●", "active"),
    "token_expired": ("○", "expired"),
    "token_revoked": ("✕", "revoked"),
}

FINISHED_RUN = frozenset({"verified", "incomplete", "failed", "no_accounts", "cancelled"})
ATTENTION = ("incomplete", "failed", "awaiting_approval")
IN_FLIGHT = ("running", "pending")


def status_label(status: str | None) -> tuple[str, str]:
    return STATUS.get(status or "unknown", ("?", (status or "unknown").replace("_", " ")))


def duration_ms(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, round((end - start).total_seconds() * 1000))


def human_ms(ms: float | None) -> str:
    """A duration for people: ``330 ms``, ``4.2 s``, ``12 min``, ``1.5 h``."""
    if ms is None:
        return DASH
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(frozen=True, slots=True)
class SystemTimeline:
    """One system's steps in a run, in order."""

    system: str
    steps: tuple[Step, ...]

    @property
    def status(self) -> str:
        statuses = {s.status for s in self.steps}
        if StepStatus.FAILED in statuses:
            return "failed"
        if StepStatus.PENDING in statuses:
            return "pending"
        if statuses <= {StepStatus.NO_ACCOUNT, StepStatus.NOT_APPLICABLE}:
            return "no_account"
        return "done"

    @property
    def account_id(self) -> str | None:
        return next((s.account_id for s in self.steps if s.account_id), None)

    @property
    def started_at(self) -> datetime | None:
        return min((s.started_at for s in self.steps if s.started_at), default=None)

    @property
    def finished_at(self) -> datetime | None:
        if any(s.status is StepStatus.PENDING for s in self.steps):
            return None
        return max((s.finished_at for s in self.steps if s.finished_at), default=None)


def timeline(detail: RunDetail) -> list[SystemTimeline]:
    """The run's steps per system (systems by name, steps by position)."""
    by_system: dict[str, list[Step]] = defaultdict(list)
    for step in detail.steps:
        by_system[step.system].append(step)
    return [
        SystemTimeline(system, tuple(sorted(steps, key=lambda s: s.position)))
        for system, steps in sorted(by_system.items())
    ]


@dataclass(frozen=True, slots=True)
class RevokeSample:
    """One system's time to revoke in one termination: from the run's due time to that
    system's verified read-back."""

    run_id: str
    day: date
    ms: int


@dataclass(frozen=True, slots=True)
class SystemRevokeTimes:
    system: str
    samples: tuple[RevokeSample, ...]
    sla_ms: int
    not_verified: int = 0
    """Terminations in the period where this system's read-back never confirmed."""
    by_day: dict[date, int] = field(default_factory=dict)
    """The worst time to revoke of each day with terminations."""

    @property
    def count(self) -> int:
        return len(self.samples)

    @property
    def median_ms(self) -> float | None:
        return statistics.median(s.ms for s in self.samples) if self.samples else None

    @property
    def worst_ms(self) -> int | None:
        return max((s.ms for s in self.samples), default=None)

    @property
    def over_sla(self) -> int:
        return sum(1 for s in self.samples if s.ms > self.sla_ms)


def revoke_times(
    details: Iterable[RunDetail], sla_seconds: int, systems: Sequence[str]
) -> list[SystemRevokeTimes]:
    """Per system, the time to revoke of each termination that reached it (``offboard``
    runs): due time to the ``verify`` step that confirmed the account off."""
    samples: dict[str, list[RevokeSample]] = {s: [] for s in systems}
    unverified: dict[str, int] = dict.fromkeys(systems, 0)
    for detail in details:
        run = detail.run
        for step in detail.steps:
            if step.action != StepAction.VERIFY:
                continue
            samples.setdefault(step.system, [])
            unverified.setdefault(step.system, 0)
            if step.status is StepStatus.DONE and step.finished_at is not None:
                ms = duration_ms(run.due_at, step.finished_at) or 0
                samples[step.system].append(RevokeSample(run.id, run.due_at.date(), ms))
            elif step.status is StepStatus.FAILED:
                unverified[step.system] += 1
    out = []
    for system in sorted(samples):
        got = tuple(sorted(samples[system], key=lambda s: (s.day, s.ms)))
        by_day: dict[date, int] = {}
        for sample in got:
            by_day[sample.day] = max(by_day.get(sample.day, 0), sample.ms)
        out.append(SystemRevokeTimes(system, got, sla_seconds * 1000, unverified[system], by_day))
    return out
