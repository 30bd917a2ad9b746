"""The workforce roster from a CSV export: the list reconciliation compares accounts against.

Columns (header row required, any order): ``worker_id`` (required), ``name``, ``email``,
``job_code``, ``engagement`` (employee | contractor), ``vendor``, ``status`` (active | terminated
| leave; default active). Good rows are loaded or refreshed; bad rows are rejected with their
line number and reason, and nothing about them is changed.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from lifecycle.domain import RosterEntry
from lifecycle.exceptions import ConfigError
from lifecycle.hr.event import WORKER_ID
from lifecycle.store.ports import Roster
from lifecycle.validation import summary

COLUMNS = ("worker_id", "name", "email", "job_code", "engagement", "vendor", "status")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class RosterRow(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    worker_id: str
    name: str | None = None
    email: str | None = None
    job_code: str | None = None
    engagement: Literal["employee", "contractor"] | None = None
    vendor: str | None = None
    status: Literal["active", "terminated", "leave"] | None = None
    """Absent or empty: a new worker is active, a known worker keeps their status (a file
    without a status column must never bring a terminated worker back)."""

    @field_validator("worker_id")
    @classmethod
    def _worker_id(cls, value: str) -> str:
        if not WORKER_ID.match(value):
            raise ValueError("must be 1-64 letters, digits and . _ @ - (starting alphanumeric)")
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not EMAIL.match(value):
            raise ValueError("is not an email address")
        return value

    def entry(self) -> RosterEntry:
        return RosterEntry(**self.model_dump())


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    reason: str


@dataclass
class RosterImport:
    added: int = 0
    updated: int = 0
    absent: int = 0
    rejected: list[Rejected] = field(default_factory=list)


BATCH = 2000
"""Rows per transaction of an import (and per progress report)."""
Progress = Callable[[int, "RosterImport"], None]
"""Called after each batch with the rows read so far and the counts so far."""


def parse_roster(text: str) -> tuple[list[RosterRow], list[Rejected]]:
    """The whole file at once (small files, tests); ``iter_roster`` streams."""
    rows: list[RosterRow] = []
    rejected: list[Rejected] = []
    for item in iter_roster(io.StringIO(text, newline="")):
        if isinstance(item, Rejected):
            rejected.append(item)
        else:
            rows.append(item)
    return rows, rejected


def iter_roster(lines: Iterable[str]) -> Iterator[RosterRow | Rejected]:
    """The rows of a roster CSV one at a time, each good or rejected (with its line number):
    only the worker ids seen so far are remembered (to reject a repeated id)."""
    reader = csv.DictReader(lines)
    header = [h.strip() for h in reader.fieldnames or []]
    if "worker_id" not in header:
        raise ConfigError("roster: the header row must name a worker_id column")
    unknown = sorted(set(header) - set(COLUMNS))
    if unknown:
        raise ConfigError(
            f"roster line 1: unknown column(s) {', '.join(unknown)}; known: {', '.join(COLUMNS)}"
        )
    reader.fieldnames = header
    seen: dict[str, int] = {}
    for raw in reader:
        line = reader.line_num
        if None in raw:
            yield Rejected(line, f"{len(raw[None])} value(s) more than the header")
            continue
        values = {k: (v.strip() or None) if v is not None else None for k, v in raw.items()}
        if not any(values.values()):
            continue  # blank line
        try:
            row = RosterRow.model_validate({k: v for k, v in values.items() if v is not None})
        except ValidationError as exc:
            yield Rejected(line, summary(exc))
            continue
        if row.worker_id in seen:
            yield Rejected(line, f"worker_id {row.worker_id} already on line {seen[row.worker_id]}")
            continue
        seen[row.worker_id] = line
        yield row


def import_roster(
    store: Roster,
    path: Path,
    now: datetime,
    *,
    complete: bool,
    progress: Progress | None = None,
    batch: int = BATCH,
) -> RosterImport:
    """Load or refresh the roster from ``path``. With ``complete`` the file is the whole
    workforce: active workers it does not list become ``absent`` (their accounts are then
    orphans for reconciliation). A file with rejected rows is never treated as complete.

    The file is streamed and written in batches of ``batch`` rows (one transaction each), so
    memory stays bounded whatever its size; what is kept whole is the set of worker ids listed
    (to reject repeats and, with ``complete``, to find the unlisted)."""
    result = RosterImport()
    listed: set[str] = set()
    pending: list[RosterEntry] = []
    read = 0

    def flush() -> None:
        counts = store.import_workers(pending, complete=False, now=now)
        result.added += counts.added
        result.updated += counts.updated
        pending.clear()
        if progress is not None:
            progress(read, result)

    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for item in iter_roster(handle):
                read += 1
                if isinstance(item, Rejected):
                    result.rejected.append(item)
                    continue
                listed.add(item.worker_id)
                pending.append(item.entry())
                if len(pending) >= batch:
                    flush()
    except OSError as exc:
        raise ConfigError(f"cannot read roster {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"roster {path} is not UTF-8: {exc.reason}") from exc
    if pending or progress is not None:
        flush()
    if complete and not result.rejected:
        result.absent = store.mark_absent(listed, now)
    return result
