"""HR intake: from a verified delivery to inbox rows, and the durable retry of deliveries that
await a vendor look-up. Nothing acknowledged is dropped: every item ends as a run, ``ignored``
(with the reason), ``unmapped`` (alerted at once) or ``pending`` (retried from the store, also
after a restart, until it resolves; escalated through the alert sink when overdue).

Mapping a person to the roster: the vendor's id as worker id, then its other ids (aliases),
then a link remembered from an earlier event of the same source, then the work email.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import anyio
import anyio.abc
import anyio.to_thread
import httpx

from connectors.base import utcnow
from lifecycle.alerts import Alert, AlertSink
from lifecycle.domain import InboxEntry, InboxEvent, InboxOutcome, Intake
from lifecycle.engine.kinds import Kinds, default_kinds
from lifecycle.exceptions import ConflictingDeliveryError, LifecycleError, UnknownWorkerError
from lifecycle.hr import (
    KINDS,
    Context,
    Handshake,
    HrEvent,
    HrEventType,
    Ignored,
    Item,
    Lookup,
    check_body,
    context_for,
)
from lifecycle.hr.errors import (
    VendorRecordMissingError,
    VendorRefusedError,
    VendorUnavailableError,
)
from lifecycle.hr.event import WORKER_ID
from lifecycle.services.group_commit import GroupCommit
from lifecycle.services.hr_decisions import accept, acceptance, inbox_entry
from lifecycle.services.playbooks import PlaybookLibrary
from lifecycle.settings import HrSourceSettings, Settings
from lifecycle.store.ports import Intakes

log = logging.getLogger("lifecycle.intake")
CLAIM_BATCH = 50
HOLD_SECONDS = 300.0
"""A claimed pending row is left alone this long by other replicas while it is retried."""


@dataclass(frozen=True, slots=True)
class Receipt:
    """What one item of a delivery became (one inbox row)."""

    inbox_id: str
    source_event_id: str
    type: str
    worker_id: str
    outcome: str
    run_id: str | None
    detail: str | None
    duplicate: bool
    due: datetime | None = None
    """When the run is due, if later than its receipt (a future-dated event)."""

    def as_json(self) -> dict[str, Any]:
        return {
            "event_id": self.inbox_id,
            "source_event_id": self.source_event_id,
            "type": self.type,
            "outcome": self.outcome,
            "run_id": self.run_id,
            "detail": self.detail,
            "duplicate": self.duplicate,
        }


@dataclass(frozen=True, slots=True)
class Reply:
    status_code: int
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Failure:
    error: LifecycleError


class HrIntake:
    def __init__(
        self,
        *,
        settings: Settings,
        store: Intakes,
        alerts: AlertSink,
        http: httpx.AsyncClient,
        connectors: Sequence[str],
        playbooks: PlaybookLibrary | None,
        wake: Callable[[datetime | None], None],
        clock: Callable[[], datetime] = utcnow,
        kinds: Kinds | None = None,
    ) -> None:
        """``playbooks`` None: hires and transfers update the roster and start no run."""
        self.settings = settings
        self.store = store
        self.alerts = alerts
        self.http = http
        self.connectors = list(connectors)
        self.playbooks = playbooks
        self.kinds = kinds or default_kinds()
        self.wake = wake
        self.clock = clock
        self.writer = GroupCommit(store, bulk=self._store_events)
        """Every store write of a delivery goes through here: concurrent deliveries share
        transactions (group commit) instead of each taking the write lock and a pool thread."""

    def close(self) -> None:
        """Stop the intake's writer thread (after the deliveries already queued)."""
        self.writer.close()

    # ------------------------------------------------------------------ deliveries

    async def receive(self, source: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        """Verify, parse and store one delivery. Raises IntakeError subclasses (4xx) for bad
        input; once verified, every item is stored before the answer."""
        ctx = self._context(source, self.clock())
        check_body(ctx.source.kind, body, headers)
        delivery = KINDS[ctx.source.kind].parse(ctx, body, headers)
        if delivery.handshake is not None:
            await self._handshake(ctx, delivery.handshake)
            return Reply(delivery.handshake.status_code, dict(delivery.handshake.body))
        receipts = [await self.settle(ctx, item) for item in delivery.items]
        started = [r for r in receipts if r.run_id and not r.duplicate]
        if started:
            dues = [r.due for r in started if r.due is not None]
            self.wake(min(dues) if len(dues) == len(started) else None)
        for receipt in receipts:
            log.info(
                "hr event accepted",
                extra={
                    "source": source,
                    "type": receipt.type,
                    "worker_id": receipt.worker_id,
                    "outcome": str(receipt.outcome),
                    "run_id": receipt.run_id,
                    "duplicate": receipt.duplicate,
                },
            )
        conflicts = [r for r in receipts if r.outcome == InboxOutcome.CONFLICT]
        for conflict in conflicts:
            if not conflict.duplicate:
                await self.alerts.send(
                    Alert(
                        "hr_event_conflict",
                        f"HR source {source!r} reused event id {conflict.source_event_id!r} "
                        f"with a different payload ({conflict.type} for "
                        f"{conflict.worker_id!r}); it was NOT acted on. Check the sender; "
                        "offboard by hand if it is a termination.",
                        worker_id=conflict.worker_id,
                    )
                )
        if conflicts:
            raise ConflictingDeliveryError(
                f"{conflicts[0].detail}; refused and recorded as inbox event "
                f"{conflicts[0].inbox_id} (send a new event id for a new event)"
            )
        unmapped = [r for r in receipts if r.outcome == InboxOutcome.UNMAPPED]
        if unmapped:
            # Stored and alerted above, never dropped; still a 4xx, so the sender's own
            # delivery log shows that this termination did not reach anyone's accounts.
            raise UnknownWorkerError(
                f"{unmapped[0].detail}; recorded as inbox event {unmapped[0].inbox_id} "
                "(unmapped) and alerted"
            )
        body_json: dict[str, Any] = {"events": [r.as_json() for r in receipts]}
        if len(receipts) == 1:
            body_json.update(receipts[0].as_json())
        return Reply(202, body_json)

    def _context(self, source: str, now: datetime) -> Context:
        return context_for(
            self.settings.hr,
            source,
            now,
            allow_inline_secrets=self.settings.service.demo,
            zone=self.settings.service.zone(),
        )

    async def settle(
        self, ctx: Context, item: Item, *, pending: InboxEvent | None = None
    ) -> Receipt:
        """Turn one item into its inbox row (with ``pending``: replace that pending row)."""
        if isinstance(item, Lookup):
            decided = await self._decide(ctx, item)
            if isinstance(decided, _Failure):
                return await self._pend(ctx, item, decided.error, pending)
            item = decided
        replace_id = pending.id if pending is not None else None
        if isinstance(item, Ignored):
            intake = await self._record(
                ctx,
                _entry(
                    ctx,
                    item,
                    outcome=InboxOutcome.IGNORED,
                    detail=_labelled(item.label, item.reason),
                ),
                replace_id,
            )
            return _receipt(intake, item.event_id, str(item.type), item.person_id)
        return await self._event(ctx, item, replace_id)

    async def _decide(self, ctx: Context, lookup: Lookup) -> HrEvent | Ignored | _Failure:
        resolver = KINDS[ctx.source.kind].resolve
        if resolver is None:
            return _Failure(VendorRefusedError(f"{ctx.source.kind} sources make no look-ups"))
        try:
            return await resolver(ctx, lookup, self.http)
        except VendorRecordMissingError as exc:
            reason = f"{exc.message}; the change cannot be decided"
            if lookup.termination_looking:
                return HrEvent(
                    source=ctx.name,
                    event_id=lookup.event_id,
                    type=HrEventType.TERMINATION,
                    worker_id=lookup.person_id,
                    payload_sha256=lookup.payload_sha256,
                    reason=reason,
                    label=lookup.label,
                    person_id=lookup.person_id,
                )
            return Ignored(
                ctx.name,
                lookup.event_id,
                lookup.payload_sha256,
                lookup.person_id,
                reason,
                label=lookup.label,
            )
        except LifecycleError as exc:
            return _Failure(exc)

    async def _event(self, ctx: Context, event: HrEvent, replace_id: str | None) -> Receipt:
        now = self.clock()
        stored = await self.writer.run(_StoreEvent(self, ctx, event, now, replace_id))
        if stored is None:
            return await self._not_in_roster(ctx, event, replace_id)
        worker, intake = stored
        receipt = _receipt(intake, event.event_id, str(event.type), worker)
        if event.effective_at is not None and event.effective_at > now:
            return replace(receipt, due=event.effective_at)
        return receipt

    def _store_event(
        self, ctx: Context, event: HrEvent, now: datetime, replace_id: str | None
    ) -> tuple[str, Intake] | None:
        """Map the person to the roster, store the event with its roster change and run, and
        remember the vendor link: one job of the writer (one savepoint). None: not in the
        roster."""
        worker = self._map_worker(event)
        if worker is None and event.type is HrEventType.HIRE and WORKER_ID.match(event.worker_id):
            worker = event.worker_id  # a new worker joins the roster under the vendor's id
        if worker is None:
            return None
        mapped = replace(event, worker_id=worker)
        try:
            intake = accept(
                self.store,
                self.kinds,
                self.playbooks,
                self.connectors,
                mapped,
                now,
                replace_pending=replace_id,
            )
        except UnknownWorkerError:  # removed from the roster meanwhile
            return None
        if (
            not intake.duplicate
            and intake.outcome != InboxOutcome.CONFLICT
            # A person whose vendor id is their worker id maps by that id before any link.
            and event.vendor_person != worker
        ):
            self.store.link_person(ctx.name, event.vendor_person, worker, now)
        return worker, intake

    def _store_events(self, jobs: Sequence[Callable[[], Any]]) -> list[Any] | None:
        """The writer's fast path for a batch of plain deliveries about roster workers: what
        ``_store_event`` does for each, with one read and one write per table for them all
        (``Intakes.accept_hr_events``) in one transaction without savepoints. None (nothing
        stored) when the batch holds anything else (a pending row's retry, a person not found
        in the roster by id, who may be known by a link or an email, or a new hire, whom later
        events of the batch may name) or a write failed: the writer then runs each job alone
        in its savepoint."""
        events: list[_StoreEvent] = []
        for job in jobs:
            if not isinstance(job, _StoreEvent) or job.replace_id is not None:
                return None
            events.append(job)
        try:
            return cast(list[Any], self.store.together(lambda: self._accept_all(events)))
        except _NotPlain:
            return None
        except Exception as exc:  # the per-job path stores what can be stored
            # The driver's error, not SQLAlchemy's text (which lists the rows' values).
            cause = getattr(exc, "orig", None) or exc
            log.warning(
                "intake batch of %d stored one by one: %s: %s",
                len(jobs),
                type(cause).__name__,
                cause,
            )
            return None

    def _accept_all(self, jobs: Sequence[_StoreEvent]) -> list[Any]:
        ids = {c for job in jobs for c in (job.event.worker_id, *job.event.aliases) if c}
        known = self.store.workers_by_id(ids)
        items, workers = [], []
        for job in jobs:
            event = job.event
            worker = next((c for c in (event.worker_id, *event.aliases) if c in known), None)
            if worker is None:
                raise _NotPlain
            mapped = replace(event, worker_id=worker)
            workers.append(worker)
            items.append(acceptance(self.kinds, self.playbooks, self.connectors, mapped, job.now))
        results: list[Any] = []
        intakes = self.store.accept_hr_events(items, known)
        for job, worker, intake in zip(jobs, workers, intakes, strict=True):
            if isinstance(intake, UnknownWorkerError):
                results.append(None)
                continue
            if isinstance(intake, Exception):
                results.append(intake)
                continue
            if (
                not intake.duplicate
                and intake.outcome != InboxOutcome.CONFLICT
                and job.event.vendor_person != worker
            ):
                self.store.link_person(job.ctx.name, job.event.vendor_person, worker, job.now)
            results.append((worker, intake))
        return results

    def _map_worker(self, event: HrEvent) -> str | None:
        for candidate in (event.worker_id, *event.aliases):
            if candidate and self.store.get_worker(candidate) is not None:
                return candidate
        linked = self.store.linked_worker(event.source, event.vendor_person)
        if linked is not None and self.store.get_worker(linked) is not None:
            return linked
        if event.email:
            known = self.store.worker_by_email(event.email)
            if known is not None:
                return known.worker_id
        return None

    async def _not_in_roster(self, ctx: Context, event: HrEvent, replace_id: str | None) -> Receipt:
        ids = ", ".join(dict.fromkeys((event.worker_id, *event.aliases)))
        termination = event.type is HrEventType.TERMINATION
        detail = _labelled(
            event.label,
            f"{ids} is not in the roster (by worker id, a remembered link or work email)"
            + ("; nothing was revoked" if termination else ""),
        )
        intake = await self._record(
            ctx,
            inbox_entry(
                event,
                outcome=InboxOutcome.UNMAPPED if termination else InboxOutcome.IGNORED,
                detail=detail,
            ),
            replace_id,
        )
        if termination and not intake.duplicate and intake.outcome == InboxOutcome.UNMAPPED:
            await self.alerts.send(
                Alert(
                    "unknown_worker_termination",
                    f"HR source {ctx.name!r} sent a termination for {ids}, who is not in the "
                    "roster; nothing was revoked (import the roster, then offboard). Inbox "
                    f"event {intake.event_id}",
                    worker_id=event.worker_id,
                )
            )
        return _receipt(intake, event.event_id, str(event.type), event.worker_id)

    async def _record(self, ctx: Context, entry: InboxEntry, replace_id: str | None) -> Intake:
        now = self.clock()
        return await self.writer.run(
            lambda: self.store.record_inbox(entry, now, replace_pending=replace_id)
        )

    # ------------------------------------------------------------------ pending look-ups

    async def _pend(
        self, ctx: Context, lookup: Lookup, error: LifecycleError, pending: InboxEvent | None
    ) -> Receipt:
        now = self.clock()
        source = ctx.source
        detail = f"awaiting {source.kind} look-up: {error.message}"
        if pending is None:
            intake = await self._record(
                ctx,
                _entry(
                    ctx,
                    lookup,
                    outcome=InboxOutcome.PENDING,
                    detail=detail,
                    pending_json=lookup.to_json(),
                    next_attempt_at=now + timedelta(seconds=_backoff(source, 1)),
                ),
                None,
            )
            if (
                not intake.duplicate
                and intake.outcome == InboxOutcome.PENDING
                and not _transient(error)
            ):
                await self._alert_lookup(ctx, lookup.event_id, intake.event_id, error)
            return _receipt(intake, lookup.event_id, str(lookup.type), lookup.person_id)
        attempts = (pending.attempts or 1) + 1
        overdue = now - pending.received_at >= timedelta(seconds=source.escalate_after_seconds)
        escalate = overdue and pending.escalated_at is None
        await anyio.to_thread.run_sync(
            lambda: self.store.reschedule_pending(
                pending.id,
                attempts=attempts,
                next_attempt_at=now + timedelta(seconds=_backoff(source, attempts)),
                detail=detail,
                escalated_at=now if escalate else None,
            )
        )
        if escalate:
            await self.alerts.send(
                Alert(
                    "hr_lookup_overdue",
                    f"HR source {ctx.name!r}: inbox event {pending.id} has awaited its "
                    f"{source.kind} look-up since {pending.received_at.isoformat()} "
                    f"({attempts} attempts; last: {error.message}); still retrying. If it is "
                    "a termination, offboard the worker by hand now",
                )
            )
        return Receipt(
            pending.id,
            lookup.event_id,
            str(lookup.type),
            lookup.person_id,
            InboxOutcome.PENDING,
            None,
            detail,
            False,
        )

    async def _alert_lookup(
        self, ctx: Context, source_event_id: str, inbox_id: str, error: LifecycleError
    ) -> None:
        await self.alerts.send(
            Alert(
                "hr_lookup_refused",
                f"HR source {ctx.name!r}: the look-up for inbox event {inbox_id} failed: "
                f"{error.message}. The delivery is stored and retried; fix the configuration",
            )
        )

    async def resolve_due(self) -> int:
        """Retry every pending delivery whose time has come; returns how many were tried."""
        now = self.clock()
        rows = await anyio.to_thread.run_sync(
            lambda: self.store.claim_pending(
                now, now + timedelta(seconds=HOLD_SECONDS), CLAIM_BATCH
            )
        )
        started = False
        for row in rows:
            try:
                receipt = await self._retry(row, now)
            except LifecycleError as exc:
                log.error("retry of pending HR event %s failed: %s", row.id, exc.message)
                continue
            started = started or bool(receipt and receipt.run_id)
        if started:
            self.wake(None)
        return len(rows)

    async def _retry(self, row: InboxEvent, now: datetime) -> Receipt | None:
        source = self.settings.hr.sources.get(row.source)
        if source is None or row.pending_json is None:
            await anyio.to_thread.run_sync(
                lambda: self.store.reschedule_pending(
                    row.id,
                    attempts=(row.attempts or 1) + 1,
                    next_attempt_at=now + timedelta(seconds=HOLD_SECONDS),
                    detail=f"HR source {row.source!r} is no longer configured",
                    escalated_at=now if row.escalated_at is None else None,
                )
            )
            if row.escalated_at is None:
                await self.alerts.send(
                    Alert(
                        "hr_lookup_overdue",
                        f"inbox event {row.id} awaits a look-up, but HR source {row.source!r} "
                        "is no longer configured",
                    )
                )
            return None
        ctx = self._context(row.source, now)
        lookup = Lookup.from_json(
            row.pending_json,
            source=row.source,
            event_id=row.source_event_id,
            payload_sha256=row.payload_sha256,
            person_id=row.worker_id,
        )
        receipt = await self.settle(ctx, lookup, pending=row)
        if receipt.outcome != InboxOutcome.PENDING:
            log.info(
                "pending hr event resolved",
                extra={"source": row.source, "outcome": receipt.outcome, "run_id": receipt.run_id},
            )
        return receipt

    async def run_forever(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Retry due pending deliveries every ``[hr] retry_poll_seconds`` (every replica may;
        a claimed row is held by its claimer)."""
        task_status.started()
        while True:
            try:
                await self.resolve_due()
            except LifecycleError as exc:
                log.error("pending HR events could not be retried: %s", exc.message)
            await anyio.sleep(self.settings.hr.retry_poll_seconds)

    # ------------------------------------------------------------------ handshakes

    async def _handshake(self, ctx: Context, handshake: Handshake) -> None:
        log.info("%s (source %s)", handshake.note, ctx.name)
        if handshake.token is None:
            return
        message = await anyio.to_thread.run_sync(_keep_token, ctx.source, handshake)
        await self.alerts.send(
            Alert("hr_source_verification", f"HR source {ctx.name!r}: {message}")
        )


@dataclass(frozen=True, slots=True)
class _StoreEvent:
    """A writer job: ``HrIntake._store_event`` of one delivery (the writer may instead store
    a batch of them at once through ``HrIntake._store_events``)."""

    intake: HrIntake
    ctx: Context
    event: HrEvent
    now: datetime
    replace_id: str | None

    def __call__(self) -> tuple[str, Intake] | None:
        return self.intake._store_event(self.ctx, self.event, self.now, self.replace_id)


class _NotPlain(Exception):
    """A batch the writer's fast path does not take."""


def _keep_token(source: HrSourceSettings, handshake: Handshake) -> str:
    """Write a verification token to the source's ``file:`` secret if that file does not exist
    yet (created exclusively, mode 0600: the first token wins and is never overwritten)."""
    assert handshake.token is not None
    ref = source.secret.get_secret_value()
    token = handshake.token.get_secret_value()
    if not ref.startswith("file:"):
        return (
            f"{handshake.note}, but the source's secret is not a file: reference, so it was not "
            'kept; set secret = "file:/path" and ask Gusto to send the token again'
        )
    path = Path(ref[5:])
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        kept = path.read_text(encoding="utf-8").strip()
        if kept == token:
            return f"{handshake.note} again (the same token is already kept in {path})"
        return (
            f"{handshake.note}, different from the one kept in {path}; the kept one stays. "
            "Delete the file and request the token again to replace it"
        )
    except OSError as exc:
        return f"{handshake.note}, but {path} could not be written: {exc.strerror}"
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    return (
        f"{handshake.note}; kept in {path}. Complete the subscription now "
        "(PUT /v1/webhook_subscriptions/{uuid}/verify with the token from that file); if Gusto "
        "refuses it, the token did not come from Gusto: delete the file and request a new one"
    )


def _backoff(source: HrSourceSettings, attempt: int) -> float:
    """Seconds until retry number ``attempt`` (1-based) of a stored delivery, with jitter."""
    base = min(source.retry_initial_seconds * 2.0 ** max(attempt - 1, 0), source.retry_max_seconds)
    return base * (1 + random.uniform(0, 0.2))  # noqa: S311 - jitter, not crypto


def _transient(error: LifecycleError) -> bool:
    return isinstance(error, VendorUnavailableError)


def _entry(ctx: Context, item: Lookup | Ignored, **fields: Any) -> InboxEntry:
    """The inbox row of an item not (yet) decided to be a worker's event: the vendor's person id
    stands for the worker (``hr_decisions.inbox_entry`` builds it from an ``HrEvent``)."""
    return InboxEntry(
        source=ctx.name,
        source_event_id=item.event_id,
        type=str(item.type),
        worker_id=item.person_id,
        payload_sha256=item.payload_sha256,
        **fields,
    )


def _labelled(label: str | None, text: str) -> str:
    return f"{label}: {text}" if label else text


def _receipt(intake: Intake, source_event_id: str, type_: str, worker_id: str) -> Receipt:
    return Receipt(
        intake.event_id,
        source_event_id,
        type_,
        worker_id,
        intake.outcome,
        intake.run_id,
        intake.detail,
        intake.duplicate,
    )
