"""Fixtures for the evidence tests: a log key and a small log of dpe/1 records."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from lifecycle.evidence.checkpoint import SigningKey, init_key, load_signing_key, sign_checkpoint
from lifecycle.evidence.merkle import MerkleTree, leaf_hash

ORIGIN = "lifecycle.example.org/evidence"
SYSTEMS = ("idp", "ehr", "phone")
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def make_record(
    seq: int,
    *,
    worker: str | None = None,
    ttr_ms: int | None = 42_000,
    kind: str = "offboard",
    systems: tuple[str, ...] = SYSTEMS,
    sla_seconds: int = 3600,
    status: str | None = None,
) -> dict[str, Any]:
    """A dpe/1 record shaped like the lead's, with deterministic content per seq."""
    worker = worker or f"W{seq % 50 + 1:04d}"
    received = T0 + timedelta(minutes=7 * seq)
    actions = []
    for i, system in enumerate(systems):
        requested = received + timedelta(seconds=1)
        done = received + timedelta(milliseconds=(ttr_ms or 5_000) - 1000 * (len(systems) - i))
        for op in ("disable", "revoke_sessions", "remove_access", "verify"):
            actions.append(
                {
                    "system": system,
                    "account_id": f"{system}-{worker}",
                    "op": op,
                    "requested_at": iso(requested),
                    "completed_at": iso(
                        done if op != "verify" else done + timedelta(milliseconds=500)
                    ),
                    "outcome": "ok",
                    "vendor_request_id": f"req-{seq}-{system}-{op}",
                    "response_sha256": "0" * 64,
                    "removed": ["grp-scheduling"] if op == "remove_access" else [],
                    "readback": {
                        "enabled": False,
                        "sessions_valid_from": iso(done),
                        "entitlements_left": [],
                    }
                    if op == "verify"
                    else None,
                }
            )
    met = ttr_ms is not None and ttr_ms <= sla_seconds * 1000
    return {
        "schema": "dpe/1",
        "record_id": f"rec-{seq:06d}",
        "seq": seq,
        "run_id": f"run-{seq:06d}",
        "kind": kind,
        "status": status or ("verified" if ttr_ms is not None else "incomplete"),
        "subject": {"worker_id": worker, "engagement": "contractor", "vendor": "Acme Staffing"},
        "trigger": {
            "source": "workday",
            "event_id": f"evt-{seq}",
            "effective_at": iso(received),
            "received_at": iso(received),
            "reason": "contract_end",
            "payload_sha256": "1" * 64,
        },
        "playbook": None,
        "policy": None,
        "actions": actions,
        "computed": {"time_to_revoke_ms": ttr_ms, "sla_seconds": sla_seconds, "sla_met": met},
        "actor": "workday",
    }


@dataclass
class Log:
    """An in-memory evidence log: what the lead's store holds, for feeding write_bundle."""

    key: SigningKey
    records: list[bytes] = field(default_factory=list)
    leaves: list[bytes] = field(default_factory=list)
    tree: MerkleTree = field(default_factory=MerkleTree)

    def append(self, record: dict[str, Any]) -> None:
        assert record["seq"] == len(self.records)
        data = rfc8785.dumps(record)
        self.records.append(data)
        self.leaves.append(leaf_hash(data))
        self.tree.append(self.leaves[-1])

    def checkpoint(self) -> str:
        return sign_checkpoint(self.key, ORIGIN, self.tree.size, self.tree.root())

    def items(self, seqs: range | list[int] | None = None) -> Iterator[tuple[int, bytes]]:
        for seq in seqs if seqs is not None else range(len(self.records)):
            yield seq, self.records[seq]


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "evidence.ed25519"
    init_key(path, ORIGIN)
    return path


@pytest.fixture
def signing_key(key_path: Path) -> SigningKey:
    return load_signing_key(key_path, ORIGIN)


@pytest.fixture
def log(signing_key: SigningKey) -> Log:
    log = Log(signing_key)
    for seq in range(12):
        ttr = None if seq == 7 else (90 * 60_000 if seq == 4 else 30_000 + 1000 * seq)
        log.append(make_record(seq, ttr_ms=ttr, kind="policy" if seq == 9 else "offboard"))
    return log
