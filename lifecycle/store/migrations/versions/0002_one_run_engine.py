"""HR inbox outcomes and conflicts; fenced leases; durable step retries; typed plans and the
``reverify`` and ``disable`` run kinds.

Schema: inbox rows get their outcome, detail and pending look-up columns and are keyed on
(source, event id, payload hash); ``hr_person_links``; runs get a lease epoch (the fencing
token), the time an SLA-at-risk alert went out, and a unique key on (source, source event id);
steps get an error class and code, and their next attempt time.

Data: every run's plan becomes a typed plan (``lifecycle.domain.plans``, written here as the
JSON it serialises to, so this revision does not change when the models do), and runs are
re-kinded by what they were: scheduler-triggered ``offboard`` runs are ``reverify`` runs;
inactivity (``policy`` runs of disable steps) and orphan (``reconcile``) runs are ``disable``
runs. Evidence records are not touched: they stay exactly as signed.

Also applies to databases that a development build between 0.1.0 and this revision upgraded by
hand (``create_all``): every step checks what is already there.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _ts(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=True)


def _add(table: str, *columns: sa.Column) -> None:  # type: ignore[type-arg]
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}
    for column in columns:
        if column.name not in present:
            op.add_column(table, column)


def _index(name: str, table: str, columns: list[str], *, unique: bool = False) -> None:
    present = {i["name"] for i in sa.inspect(op.get_bind()).get_indexes(table)}
    if name not in present:
        op.create_index(name, table, columns, unique=unique)


def upgrade() -> None:
    _inbox()
    _add(
        "runs",
        sa.Column("lease_epoch", sa.Integer(), nullable=False, server_default="0"),
        _ts("sla_alerted_at"),
    )
    _index("uq_runs_source_event", "runs", ["source", "source_event_id"], unique=True)
    _add(
        "steps",
        sa.Column("error_class", sa.String()),
        sa.Column("error_code", sa.String()),
        _ts("next_attempt_at"),
        _ts("first_failed_at"),
    )
    _typed_plans()


def _inbox() -> None:
    _add(
        "inbox",
        sa.Column("outcome", sa.String()),
        sa.Column("detail", sa.Text()),
        sa.Column("pending_json", sa.Text()),
        sa.Column("attempts", sa.Integer()),
        _ts("next_attempt_at"),
        _ts("escalated_at"),
    )
    _index("ix_inbox_outcome", "inbox", ["outcome"])
    _index("ix_inbox_next_attempt_at", "inbox", ["next_attempt_at"])
    # (source, event id) alone leaves no room to store a conflicting delivery: re-key.
    inspector = sa.inspect(op.get_bind())
    names = {c["name"] for c in inspector.get_unique_constraints("inbox")}
    if "uq_inbox_source_event" in names or "uq_inbox_delivery" not in names:
        with op.batch_alter_table("inbox", recreate="auto") as batch:
            if "uq_inbox_source_event" in names:
                batch.drop_constraint("uq_inbox_source_event", type_="unique")
            batch.create_unique_constraint(
                "uq_inbox_delivery", ["source", "source_event_id", "payload_sha256"]
            )
    op.execute(
        "UPDATE inbox SET outcome = CASE WHEN run_id IS NULL THEN 'ignored' ELSE 'run' END "
        "WHERE outcome IS NULL"
    )
    if "hr_person_links" not in inspector.get_table_names():
        op.create_table(
            "hr_person_links",
            sa.Column("source", sa.String(), primary_key=True),
            sa.Column("person_id", sa.String(), primary_key=True),
            sa.Column("worker_id", sa.String(), nullable=False),
            sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        )
    _index("ix_hr_person_links_worker_id", "hr_person_links", ["worker_id"])


# ---------------------------------------------------------------------- runs' plans and kinds


def _typed_plans() -> None:
    bind = op.get_bind()
    steps: dict[str, list[Any]] = defaultdict(list)
    for row in bind.execute(
        sa.text(
            "SELECT run_id, connector, action, account_id, account_login FROM steps "
            "ORDER BY run_id, connector, position"
        )
    ):
        steps[row.run_id].append(row)
    runs = list(bind.execute(sa.text("SELECT id, kind, source, plan_json FROM runs")))
    for run in runs:
        kind, plan = _plan(run.kind, run.source, run.plan_json, steps[run.id])
        bind.execute(
            sa.text("UPDATE runs SET kind = :kind, plan_json = :plan WHERE id = :id"),
            {"kind": kind, "plan": json.dumps(plan, sort_keys=True), "id": run.id},
        )


def _plan(
    kind: str, source: str | None, plan_json: str | None, steps: list[Any]
) -> tuple[str, dict[str, Any]]:
    """A 0.1.0 run's (kind, typed plan)."""
    if plan_json:
        try:
            legacy: dict[str, Any] = json.loads(plan_json)
        except ValueError:
            legacy = {}
        if "kind" in legacy:  # already typed (the revision ran before, in part)
            return kind, legacy
    else:
        legacy = {}
    systems = sorted({s.connector for s in steps})
    actions = {s.action for s in steps}
    if kind == "offboard" and source == "scheduler":
        of = legacy.get("reverify", {})
        return "reverify", {
            "kind": "reverify",
            "targets": systems,
            "of_run": str(of.get("of", "")),
            "after_minutes": int(of.get("after_minutes", 0)),
        }
    if kind == "offboard":
        return "offboard", {"kind": "offboard", "targets": systems}
    if kind in ("onboard", "transfer"):
        plan = {
            "kind": kind,
            "playbook": legacy.get("playbook") or {"name": "", "sha256": ""},
            "systems": {
                s: {
                    "entitlements": sorted(t.get("entitlements", [])),
                    "account": bool(t.get("account", False)),
                    "managed": sorted(t.get("managed", [])),
                }
                for s, t in legacy.get("systems", {}).items()
            },
        }
        if kind == "transfer":
            plan["from"] = legacy.get("from")
        return kind, plan
    policy = legacy.get("policy") or {"name": kind, "sha256": ""}
    if kind == "policy" and "apply_policy" in actions:
        return "policy", {"kind": "policy", "policy": policy, "baselines": legacy["baselines"]}
    # inactivity (a "policy" run of disable steps) and orphans ("reconcile"): disable runs
    accounts: dict[str, dict[str, Any]] = {}
    for s in steps:
        if s.account_id and s.connector not in accounts:
            accounts[s.connector] = {"account_id": s.account_id, "login": s.account_login}
    why: dict[str, Any] = dict(legacy.get("inactivity", {}))
    for system, reason in legacy.get("orphans", {}).items():
        why[system] = {"orphan": reason}
    return "disable", {"kind": "disable", "policy": policy, "accounts": accounts, "why": why}


def downgrade() -> None:
    raise NotImplementedError("the schema only moves forward (evidence is append-only)")
