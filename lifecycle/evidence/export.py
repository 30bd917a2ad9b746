"""Export an auditor's bundle from the store: one consistent snapshot of the log, a checkpoint
covering it (signed now if the latest one is behind), and the records the query matched."""

from __future__ import annotations

import os
from datetime import datetime
from importlib.metadata import version
from typing import IO

from lifecycle.domain import iso_z
from lifecycle.evidence.bundle import BundleSummary, write_bundle
from lifecycle.evidence.checkpoint import SigningKey, sign_checkpoint, signed_by
from lifecycle.evidence.merkle import root_hash
from lifecycle.store.ports import EvidenceStore


def export_bundle(
    store: EvidenceStore,
    key: SigningKey,
    origin: str,
    out: str | os.PathLike[str] | IO[bytes],
    *,
    now: datetime,
    since: datetime | None = None,
    until: datetime | None = None,
    worker: str | None = None,
    previous_tree_size: int | None = None,
) -> BundleSummary:
    """Write the bundle of records appended in [since, until) (and of ``worker``, if given).

    The period filters on when each record was appended to the log (the run's end).
    """
    leaves = store.leaf_hashes()
    size = len(leaves)
    latest = store.latest_checkpoint()
    if latest is not None and latest.tree_size == size and signed_by(latest.note, key):
        checkpoint = latest.note
    else:
        # Behind the log, or signed by a key since replaced (`keys init --force`): sign the
        # same tree head with the current key. The store keeps the first checkpoint of a size
        # (checkpoints are append-only), so one signed by a retired key stays as it was.
        root = root_hash(leaves)
        checkpoint = sign_checkpoint(key, origin, size, root)
        store.save_checkpoint(size, root, checkpoint, now)
    records = (
        (seq, body)
        for seq, body in store.evidence_records(since=since, until=until, worker_id=worker)
        if seq < size
    )
    return write_bundle(
        out,
        records=records,
        leaf_hashes=leaves,
        checkpoint=checkpoint,
        signing_key=key,
        query={"since": iso_z(since), "until": iso_z(until), "worker": worker},
        generator_version=f"lifecycle {version('lifecycle')}",
        previous_tree_size=previous_tree_size,
        generated_at=now,
    )
