"""Database tables (SQLModel). Timestamps are stored and returned as timezone-aware UTC.

Rows never leave ``lifecycle.store.sql``: ``mapping.py`` turns them into domain values. The
schema itself is owned by the alembic revisions in ``lifecycle/store/migrations``; these models
must match it (a test compares them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    LargeBinary,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite (naive storage) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def ts_column(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


class WorkerRow(SQLModel, table=True):
    __tablename__ = "workers"

    worker_id: str = Field(primary_key=True)
    name: str | None = None
    email: str | None = None
    upn: str | None = None
    job_code: str | None = None
    engagement: str | None = None
    vendor: str | None = None
    status: str = "active"
    updated_at: datetime = ts_column(nullable=False)


class InboxRow(SQLModel, table=True):
    """Every accepted HR event, stored before it is acknowledged.

    One row per (source, event id, payload): a re-delivery of the same payload is the same row;
    the same event id with another payload is a second row with outcome ``conflict``."""

    __tablename__ = "inbox"
    __table_args__ = (
        UniqueConstraint("source", "source_event_id", "payload_sha256", name="uq_inbox_delivery"),
    )

    id: str = Field(primary_key=True)
    source: str
    source_event_id: str
    type: str
    worker_id: str = Field(index=True)
    received_at: datetime = ts_column(nullable=False)
    effective_at: datetime | None = ts_column()
    reason: str | None = None
    payload_sha256: str
    run_id: str | None = None
    outcome: str | None = Field(default=None, index=True)
    """An ``InboxOutcome`` (``lifecycle.domain``); null only on rows stored before outcomes
    were kept."""
    detail: str | None = Field(default=None, sa_column=Column(Text))
    """Why it was ignored or unmapped, or what a pending look-up is waiting for."""
    pending_json: str | None = Field(default=None, sa_column=Column(Text))
    """A pending row's look-up request (vendor ids and field names; no secrets)."""
    attempts: int | None = None
    next_attempt_at: datetime | None = ts_column(index=True)
    escalated_at: datetime | None = ts_column()


class HrPersonLinkRow(SQLModel, table=True):
    """A vendor's own id for a person, once resolved to a roster worker (a deleted record can
    no longer be read from the vendor; its id still maps to the worker)."""

    __tablename__ = "hr_person_links"

    source: str = Field(primary_key=True)
    person_id: str = Field(primary_key=True)
    worker_id: str = Field(index=True)
    linked_at: datetime = ts_column(nullable=False)


class RunRow(SQLModel, table=True):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_claim", "status", "not_before"),
        Index("uq_runs_source_event", "source", "source_event_id", unique=True),
    )

    id: str = Field(primary_key=True)
    kind: str
    worker_id: str = Field(index=True)
    status: str = "pending"
    reason: str | None = None
    actor: str
    source: str | None = None
    source_event_id: str | None = None
    payload_sha256: str | None = None
    received_at: datetime = ts_column(nullable=False, index=True)
    effective_at: datetime | None = ts_column()
    not_before: datetime = ts_column(nullable=False)
    started_at: datetime | None = ts_column()
    finished_at: datetime | None = ts_column()
    time_to_revoke_ms: int | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = ts_column()
    lease_epoch: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    """Fencing token: raised by every claim; writes carrying an older epoch are refused."""
    sla_alerted_at: datetime | None = ts_column()
    evidence_seq: int | None = None
    playbook_name: str | None = None
    playbook_sha256: str | None = None
    plan_json: str | None = Field(default=None, sa_column=Column(Text))
    """The run's typed plan (``lifecycle.domain.plans``) as JSON."""
    decision: str | None = None
    """A restore's approval: ``approved`` or ``rejected`` (by a second admin)."""
    decided_by: str | None = None
    decided_at: datetime | None = ts_column()
    decision_reason: str | None = Field(default=None, sa_column=Column(Text))
    cancelled_by: str | None = None
    cancelled_at: datetime | None = ts_column()
    cancel_reason: str | None = Field(default=None, sa_column=Column(Text))
    retry_of: str | None = None
    """The incomplete or failed run this run retries."""
    retried_as: str | None = None


class StepRow(SQLModel, table=True):
    __tablename__ = "steps"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(index=True, foreign_key="runs.id")
    connector: str
    action: str
    position: int
    status: str = "pending"
    attempts: int = 0
    account_id: str | None = None
    account_login: str | None = None
    started_at: datetime | None = ts_column()
    finished_at: datetime | None = ts_column()
    error: str | None = Field(default=None, sa_column=Column(Text))
    error_class: str | None = None
    error_code: str | None = None
    next_attempt_at: datetime | None = ts_column()
    first_failed_at: datetime | None = ts_column()
    result_json: str | None = Field(default=None, sa_column=Column(Text))
    readback_json: str | None = Field(default=None, sa_column=Column(Text))


class LinkRow(SQLModel, table=True):
    """A worker's known account in one system (found during a run, or created by a joiner)."""

    __tablename__ = "account_links"

    worker_id: str = Field(primary_key=True)
    connector: str = Field(primary_key=True)
    account_id: str
    login: str | None = None
    linked_at: datetime = ts_column(nullable=False)


class EvidenceRow(SQLModel, table=True):
    """One ``dpe/1`` record: a leaf of the append-only Merkle log. Never updated or deleted."""

    __tablename__ = "evidence"

    seq: int = Field(primary_key=True)
    record_id: str = Field(unique=True)
    run_id: str = Field(unique=True)
    worker_id: str = Field(index=True)
    created_at: datetime = ts_column(nullable=False, index=True)
    leaf_hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class CheckpointRow(SQLModel, table=True):
    __tablename__ = "checkpoints"

    tree_size: int = Field(primary_key=True)
    root_hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))
    note: str = Field(sa_column=Column(Text, nullable=False))
    signed_at: datetime = ts_column(nullable=False)


class ApiTokenRow(SQLModel, table=True):
    """Bearer tokens: only the SHA-256 of the token is stored. A name is unique among the
    tokens not revoked (a rotated token's row keeps it)."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        Index(
            "ix_api_tokens_live_name",
            "name",
            unique=True,
            sqlite_where=text("revoked_at IS NULL"),
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str
    role: str
    token_sha256: str = Field(unique=True)
    created_at: datetime = ts_column(nullable=False)
    revoked_at: datetime | None = ts_column()
    expires_at: datetime | None = ts_column()
    last_used_at: datetime | None = ts_column()


class SchedulerJobRow(SQLModel, table=True):
    """When each scheduled job last ran, so missed runs after downtime run once on start."""

    __tablename__ = "scheduler_jobs"

    name: str = Field(primary_key=True)
    last_run_at: datetime = ts_column(nullable=False)


class ConsoleSessionRow(SQLModel, table=True):
    """Signed-in console users: the SHA-256 of the cookie's session id, never the id itself,
    and the SHA-256 of the API token it was exchanged for."""

    __tablename__ = "console_sessions"

    id_sha256: str = Field(primary_key=True)
    token_sha256: str = Field(index=True)
    csrf_token: str
    created_at: datetime = ts_column(nullable=False)
    last_seen_at: datetime = ts_column(nullable=False)
