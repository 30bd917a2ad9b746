"""The normalised HR event every source is mapped to."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from lifecycle.exceptions import PayloadError

WORKER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class HrEventType(StrEnum):
    TERMINATION = "termination"
    HIRE = "hire"
    TRANSFER = "transfer"
    UPDATE = "update"


@dataclass(frozen=True, slots=True)
class HrEvent:
    source: str
    event_id: str
    type: HrEventType
    worker_id: str
    payload_sha256: str
    occurred_at: datetime | None = None
    effective_at: datetime | None = None
    reason: str | None = None
    job_code: str | None = None
    engagement: str | None = None
    vendor: str | None = None
    email: str | None = None
    name: str | None = None


def payload_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def check_worker_id(value: str) -> str:
    """Worker ids are plain identifiers; anything else is refused at the door."""
    if not WORKER_ID.match(value):
        raise PayloadError(
            "worker id must be 1-64 characters of letters, digits and . _ @ - "
            "(starting with a letter or digit)"
        )
    return value
