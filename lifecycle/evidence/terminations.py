"""``terminations.csv``: the auditor's first question answered, one row per termination.

Auditors sample the HR termination list and ask, per worker, when HR told us, when each system
was disabled and whether that was inside the policy window. The table is wide (one
``<system>_disabled_at`` / ``<system>_verified_at`` pair per system) because that is the shape
auditors paste into their workpapers.

A wide table needs the set of systems before the first row, but the bundle streams its records
once. So rows are spooled to a temporary file (one compact JSON line each, a few hundred bytes)
while the system names, a handful, are collected; the CSV is written after the last record.
Memory stays flat; disk holds at most one line per termination.

The table is a pure function of the record bytes in seq order, so the offline verifier rebuilds
it from the signed records and compares: the report is proven complete and accurate, not just
hashed.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Iterator, Mapping
from typing import IO, Any

FIXED_HEAD = [
    "seq",
    "record_id",
    "worker_id",
    "engagement",
    "vendor",
    "hr_received_at",
    "effective_at",
]
FIXED_TAIL = ["time_to_revoke_ms", "sla_seconds", "sla_met", "status"]


def _latest(values: list[str]) -> str:
    # ISO 8601 UTC strings in one format order lexically; the system is only off once the
    # last of its accounts is.
    return max(values) if values else ""


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def termination_row(seq: int, record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The compact row of one offboard record, or None for records of other kinds.

    An auditor's table has one row per termination. Re-verifications are ``reverify`` records;
    records written before that kind existed called them ``offboard`` runs triggered by the
    scheduler (only re-verifications ever were), so those stay out of the table too.
    """
    trigger = record.get("trigger") or {}
    if record.get("kind") != "offboard" or trigger.get("source") == "scheduler":
        return None
    subject = record.get("subject") or {}
    computed = record.get("computed") or {}
    disabled: dict[str, list[str]] = {}
    verified: dict[str, list[str]] = {}
    for action in record.get("actions") or []:
        system = str(action.get("system", ""))
        when = action.get("completed_at")
        op = action.get("op")
        if op == "disable":
            disabled.setdefault(system, [])
            if when:
                disabled[system].append(str(when))
        elif op == "verify":
            verified.setdefault(system, [])
            if when:
                verified[system].append(str(when))
    systems = sorted(set(disabled) | set(verified))
    return {
        "seq": seq,
        "record_id": record.get("record_id"),
        "worker_id": subject.get("worker_id"),
        "engagement": subject.get("engagement"),
        "vendor": subject.get("vendor"),
        "hr_received_at": trigger.get("received_at"),
        "effective_at": trigger.get("effective_at"),
        "systems": {
            s: [_latest(disabled.get(s, [])), _latest(verified.get(s, []))] for s in systems
        },
        "time_to_revoke_ms": computed.get("time_to_revoke_ms"),
        "sla_seconds": computed.get("sla_seconds"),
        "sla_met": computed.get("sla_met"),
        "status": record.get("status"),
    }


class TerminationsTable:
    """Collects termination rows while records stream past, then writes the wide CSV."""

    def __init__(self) -> None:
        self._spool: IO[str] = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115
        self.systems: set[str] = set()
        self.rows = 0

    def add(self, seq: int, record: Mapping[str, Any]) -> dict[str, Any] | None:
        row = termination_row(seq, record)
        if row is not None:
            self.systems.update(row["systems"])
            self._spool.write(json.dumps(row, separators=(",", ":")) + "\n")
            self.rows += 1
        return row

    def header(self) -> list[str]:
        per_system = [
            f"{s}_{what}" for s in sorted(self.systems) for what in ("disabled_at", "verified_at")
        ]
        return FIXED_HEAD + per_system + FIXED_TAIL

    def _rows(self) -> Iterator[list[str]]:
        systems = sorted(self.systems)
        self._spool.seek(0)
        for line in self._spool:
            row = json.loads(line)
            cells = [_text(row[c]) for c in FIXED_HEAD]
            for s in systems:
                cells.extend(row["systems"].get(s, ["", ""]))
            cells.extend(_text(row[c]) for c in FIXED_TAIL)
            yield cells

    def iter_csv(self) -> Iterator[bytes]:
        """The CSV as UTF-8 chunks, one per row (CRLF line ends, as RFC 4180 says)."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\r\n")
        writer.writerow(self.header())
        yield buf.getvalue().encode()
        for cells in self._rows():
            buf.seek(0)
            buf.truncate()
            writer.writerow(cells)
            yield buf.getvalue().encode()

    def close(self) -> None:
        self._spool.close()

    def __enter__(self) -> TerminationsTable:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
