"""The service's side of the evidence log: append records, keep the Merkle tree, sign checkpoints.

Appends are serialised by the store (advisory lock on PostgreSQL), so several replicas write one
gap-free sequence; each replica catches its in-memory tree up from the database before signing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime

import anyio
import anyio.to_thread

from lifecycle.domain import Checkpoint, RunDetail, RunStatus
from lifecycle.evidence.checkpoint import SigningKey, sign_checkpoint, signed_by
from lifecycle.evidence.merkle import MerkleTree, leaf_hash
from lifecycle.evidence.records import RecordOptions, build_record, canonical_with_seq
from lifecycle.store.ports import EvidenceStore, RecordBuilder

log = logging.getLogger("lifecycle.evidence")


class EvidenceLog:
    def __init__(
        self,
        store: EvidenceStore,
        key: SigningKey | None,
        origin: str,
        *,
        sla_seconds: int,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.key = key
        self.origin = origin
        self.sla_seconds = sla_seconds
        self.clock = clock
        self.tree = MerkleTree()
        self._lock = anyio.Lock()
        self._dirty = anyio.Event()
        self._signed: Checkpoint | None = None
        """The newest checkpoint this process knows of (saves a query per signing)."""

    async def _catch_up(self) -> None:
        async with self._lock:
            fresh = await anyio.to_thread.run_sync(self.store.leaf_hashes, self.tree.size)
            for leaf in fresh:
                self.tree.append(leaf)

    def builder(
        self,
        detail: RunDetail,
        status: RunStatus,
        time_to_revoke_ms: int | None,
        options: RecordOptions,
    ) -> RecordBuilder:
        """How to build the run's record once its sequence number is known (in the store's
        transaction): returns (record id, canonical bytes, leaf hash). The record is built and
        canonicalised here, before that transaction: only its seq is spliced in then."""
        record_id = str(uuid.uuid4())
        body = canonical_with_seq(
            build_record(
                seq=0,
                record_id=record_id,
                run=detail.run,
                steps=detail.steps,
                worker=detail.worker,
                status=status,
                time_to_revoke_ms=time_to_revoke_ms,
                sla_seconds=self.sla_seconds,
                options=options,
            )
        )

        def build(seq: int) -> tuple[str, bytes, bytes]:
            data = body(seq)
            return record_id, data, leaf_hash(data)

        return build

    def appended(self) -> None:
        """Records were appended (by the store): sign a checkpoint after this batch."""
        self._dirty.set()

    async def append(
        self,
        detail: RunDetail,
        status: RunStatus,
        time_to_revoke_ms: int | None,
        options: RecordOptions,
    ) -> int:
        """Append the run's record (exactly once per run); returns its sequence number."""
        seq, _ = await anyio.to_thread.run_sync(
            self.store.append_evidence,
            detail.run.id,
            detail.run.worker_id,
            self.builder(detail, status, time_to_revoke_ms, options),
            self.clock(),
        )
        self.appended()
        return seq

    async def sign(self) -> Checkpoint | None:
        """Sign a checkpoint of the current log if it grew since the last one."""
        await self._catch_up()
        async with self._lock:
            size, root = self.tree.size, self.tree.root()
        if self._signed is not None and self._signed.tree_size >= size:
            return self._signed
        latest = await anyio.to_thread.run_sync(self.store.latest_checkpoint)
        if latest is not None and latest.tree_size >= size and self._current(latest):
            self._signed = latest
            return latest
        if self.key is None:
            return latest  # no key loaded: /readyz says so; records are still appended
        note = sign_checkpoint(self.key, self.origin, size, root)
        now = self.clock()
        await anyio.to_thread.run_sync(self.store.save_checkpoint, size, root, note, now)
        stored = await anyio.to_thread.run_sync(self.store.latest_checkpoint)
        # The store keeps the first checkpoint of a tree size (append-only): after a key
        # rotation at an unchanged size it still holds the retired key's, so this process
        # hands out its own until the log grows.
        self._signed = (
            stored
            if stored is not None and stored.tree_size >= size and self._current(stored)
            else Checkpoint(size, root, note, now)
        )
        return self._signed

    def _current(self, checkpoint: Checkpoint) -> bool:
        """Signed by the key loaded now (not by one replaced with ``keys init --force``)."""
        return self.key is None or signed_by(checkpoint.note, self.key)

    async def run_signer(self, *, batch_seconds: float = 0.5) -> None:
        """Sign after each batch of appends (appends within ``batch_seconds`` share one
        checkpoint, so a burst of terminations is not slowed by signing after every record;
        checkpoints are off the revocation path)."""
        while True:
            try:
                await self.sign()
            except Exception:  # never stop signing for one failed attempt
                log.exception("checkpoint signing failed; retrying")
                await anyio.sleep(max(batch_seconds, 1.0))
                continue
            await self._dirty.wait()
            self._dirty = anyio.Event()
            await anyio.sleep(batch_seconds)
