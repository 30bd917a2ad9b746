"""What an HR source's adapter turns one delivery into.

A delivery holds one or more items, each of which becomes one inbox row:

- ``HrEvent``: a decided event (termination, hire, transfer, update) about a person, named by
  the vendor's own id (``worker_id``, then ``aliases``) and, where known, the work email; the
  intake maps it to a roster worker (by worker id, then by a link remembered from an earlier
  event, then by work email).
- ``Ignored``: authentic, and it matters to nothing (with the reason).
- ``Lookup``: the adapter must read the vendor's API before it can decide (BambooHR's
  event-based webhooks carry no field values); stored ``pending`` if the vendor cannot be read.

A ``Handshake`` (a subscription verification or connectivity ping) is answered, not stored.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import SecretStr

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
    aliases: tuple[str, ...] = ()
    """Other ids the vendor knows the person by (e.g. BambooHR's employee number), tried after
    ``worker_id`` when mapping to the roster."""
    person_id: str | None = None
    """The vendor's own id for the person, remembered once mapped (default ``worker_id``)."""
    label: str | None = None
    """The vendor's event type, for the inbox (e.g. ``contract.terminated``)."""

    @property
    def vendor_person(self) -> str:
        return self.person_id or self.worker_id


@dataclass(frozen=True, slots=True)
class Ignored:
    """An authentic event that starts nothing."""

    source: str
    event_id: str
    payload_sha256: str
    person_id: str
    reason: str
    type: HrEventType = HrEventType.UPDATE
    label: str | None = None


@dataclass(frozen=True, slots=True)
class Lookup:
    """A decision that needs the vendor's API first; ``params`` is JSON-safe and holds no
    secrets (it is stored while the vendor cannot be read)."""

    source: str
    event_id: str
    payload_sha256: str
    person_id: str
    params: Mapping[str, Any]
    type: HrEventType = HrEventType.UPDATE
    """The best guess until decided (what an inbox reader sees while it is pending)."""
    termination_looking: bool = False
    """If the look-up finds no such person, the event is ``unmapped`` (alerted), not ignored."""
    label: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "params": dict(self.params),
                "type": str(self.type),
                "termination_looking": self.termination_looking,
                "label": self.label,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(
        cls, text: str, *, source: str, event_id: str, payload_sha256: str, person_id: str
    ) -> Lookup:
        data = json.loads(text)
        return cls(
            source=source,
            event_id=event_id,
            payload_sha256=payload_sha256,
            person_id=person_id,
            params=data["params"],
            type=HrEventType(data["type"]),
            termination_looking=bool(data["termination_looking"]),
            label=data.get("label"),
        )


Item = HrEvent | Ignored | Lookup


@dataclass(frozen=True, slots=True)
class Handshake:
    """A subscription verification or ping: answered at once, nothing stored."""

    status_code: int
    body: Mapping[str, Any]
    note: str
    """What happened, for the log and the alert (never a secret)."""
    token: SecretStr | None = None
    """Gusto's verification token, to be kept as the source's secret."""


@dataclass(frozen=True, slots=True)
class Delivery:
    items: tuple[Item, ...] = ()
    handshake: Handshake | None = None


def payload_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def canonical_digest(value: Any) -> str:
    """SHA-256 of a JSON value in a canonical form (sorted keys, no spaces)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def derived_id(*parts: object) -> str:
    """A stable source event id for vendors that send none: SHA-256 of the parts."""
    return canonical_digest(list(parts))


def check_worker_id(value: str) -> str:
    """Worker ids are plain identifiers; anything else is refused at the door."""
    if not WORKER_ID.match(value):
        raise PayloadError(
            "worker id must be 1-64 characters of letters, digits and . _ @ - "
            "(starting with a letter or digit)"
        )
    return value
